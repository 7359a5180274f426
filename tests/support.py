"""Helpers for tests: waiting on conditions, a simulator handle, real worker processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import requests
from django.conf import settings
from django.db import connection

from chatsite.serving import uvicorn_command

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def wait_for(
    condition: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll `condition` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


class Simulator:
    """Talks to a running simulator over HTTP, as any client would."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.root = base_url.removesuffix("/v1")

    def control(self, **payload: Any) -> None:
        requests.post(f"{self.root}/_control", json=payload, timeout=5).raise_for_status()

    def reset(self) -> None:
        self.control(reset=True)

    def requests(self) -> list[dict[str, Any]]:
        return requests.get(f"{self.root}/_requests", timeout=5).json()

    def bodies(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests()]

    def stats(self) -> dict[str, Any]:
        return requests.get(f"{self.root}/_stats", timeout=5).json()


def test_database_url() -> str:
    """A DATABASE_URL for subprocesses that points at this test run's database."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{db['NAME']}"


def subprocess_env(simulator: Simulator, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "OPENAI_BASE_URL": simulator.base_url,
        "OPENAI_API_KEY": settings.OPENAI_API_KEY,
        "UPSTREAM_SIMULATED": "1",
        "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "COMPLETION_RETRY_BASE_DELAY": str(settings.COMPLETION_RETRY_BASE_DELAY),
        "COMPLETION_RETRY_MAX_DELAY": str(settings.COMPLETION_RETRY_MAX_DELAY),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


class WorkerProcess:
    """A real `celery worker` subprocess against the test database and broker. `prefix`
    goes before the command (e.g. `ip netns exec <name>` to run it on another host)."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        beat: bool = False,
        prefix: Sequence[str] = (),
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.beat = beat
        self.prefix = list(prefix)
        self.process: subprocess.Popen | None = None

    def start(self, *, timeout: float = 30.0) -> WorkerProcess:
        command = [
            *self.prefix, sys.executable, "-m", "celery", "-A", "chatsite", "worker",
            "--pool", "threads", "--concurrency", "4",
            "--queues", self.env["CELERY_QUEUE"],
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", "INFO",
        ]  # fmt: skip
        if self.beat:
            command += ["--beat", "--schedule", str(self.log_path.with_suffix(".schedule"))]
        self._log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        # Its own process group: with --beat the worker has a child (the beat service),
        # and killing the worker must not leave that running.
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(
            lambda: "ready." in self.log_path.read_text() or self.process.poll() is not None,
            timeout=timeout,
            what="celery worker to be ready",
        )
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited early:\n{self.log_path.read_text()[-3000:]}")
        return self

    def kill(self) -> None:
        """SIGKILL, as when a machine or container dies: no cleanup, no ack."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            # Celery takes seconds to shut down, even cold; a test's worker has nothing
            # left to finish, and a task it leaves unacknowledged finds no completion.
            os.killpg(self.process.pid, signal.SIGKILL)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if getattr(self, "_log", None):
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebProcess:
    """A real uvicorn subprocess serving the ASGI app on the test database. `prefix` goes
    before the command (e.g. `ip netns exec <name>`), `host` is the address it serves on."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        host: str = "127.0.0.1",
        prefix: Sequence[str] = (),
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.host = host
        self.prefix = list(prefix)
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, *, timeout: float = 30.0, ready_path: str = "/accounts/login/") -> WebProcess:
        import requests

        # As `manage.py serve` starts it, with the proxies the environment trusts.
        trusted = [p for p in self.env.get("DJANGO_TRUSTED_PROXIES", "").split(",") if p]
        command = [
            *self.prefix,
            *uvicorn_command(host=self.host, port=self.port, trusted_proxies=trusted),
        ]
        self._log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )

        def ready() -> bool:
            if self.process.poll() is not None:
                return True
            try:
                return requests.get(f"{self.url}{ready_path}", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(ready, timeout=timeout, interval=0.1, what="uvicorn to answer")
        if self.process.poll() is not None:
            raise AssertionError(f"uvicorn exited early:\n{self.log_path.read_text()[-3000:]}")
        return self

    def kill(self) -> None:
        """SIGKILL, as when a machine or container dies: open streams are cut, not closed.
        `start()` serves again on the same port."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)
        self._log.close()

    def stop(self) -> None:
        if self.process:
            process_stop(self.process)
        if getattr(self, "_log", None):
            self._log.close()


class Clock:
    """The abuse limits' clock (shared.ratelimits.clock), moved by a test instead of by
    sleeping: see the `clock` fixture."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def browser_login(page: Any, base_url: str, username: str, password: str) -> None:
    """Log in through the login form, as a person would, and wait for the chat page."""
    from playwright.sync_api import expect

    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible(timeout=10_000)


def process_stop(process: subprocess.Popen) -> None:
    """SIGTERM, and SIGKILL if it has not ended within 10 seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
