"""The stack a benchmark run measures, on loopback: database and broker, the simulated
upstream, the web server (uvicorn) and the Celery worker, each a process group that is
stopped at the end whatever happens.

PostgreSQL + Redis are used when they answer on 127.0.0.1 (a fresh `chatsite_bench`
database, Redis databases 12 and 13 flushed); otherwise the embedded default (SQLite
and the filesystem broker) in a temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

from chatsite.serving import uvicorn_command
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "chatsite_bench"
REDIS_BROKER_URL = "redis://127.0.0.1:6379/12"
REDIS_STREAMS_URL = "redis://127.0.0.1:6379/13"

# Settings the run must not inherit from the shell (or from `make test`).
SCRUBBED_ENV = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_QUEUE",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "UPSTREAM_SIMULATED",
    "UPSTREAM_STREAM",
    "BUDGET_MONTHLY_TOKENS",
    "BUDGET_MONTHLY_COST",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
    "DJANGO_DEBUG",
    "REDIS_KEY_PREFIX",
    "CHATSITE_VAR_DIR",
    "SIMULATOR_PORT",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def servers_available() -> bool:
    """PostgreSQL (user postgres, trust) and Redis answer on loopback."""
    if not (answers(5432) and answers(6379)):
        return False
    try:
        import psycopg
        import redis

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        redis.Redis.from_url(REDIS_BROKER_URL, socket_timeout=3).ping()
    except Exception:
        return False
    return True


@dataclass
class Process:
    name: str
    command: list[str]
    log_path: Path
    popen: subprocess.Popen | None = None

    def start(self, env: dict[str, str], cwd: Path = ROOT) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        # Its own session (process group), so stop() reaches every child it forks.
        self.popen = subprocess.Popen(
            self.command,
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        # Whatever is left of the group (children that ignored SIGTERM) goes now.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self._log.close()


@dataclass
class Stack:
    """Configuration and processes of one run."""

    workdir: Path
    kind: str = "auto"  # auto | server | embedded
    web_processes: int = 2
    worker_concurrency: int = 256
    latency: float = 0.5
    # One plain sentence per reply, as every run in the history measured (the screenshots
    # want the default, Markdown, replies).
    plain_replies: bool = True
    backend: str = ""  # "postgresql+redis" or "sqlite+filesystem", once prepared
    env: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    web_ports: list[int] = field(default_factory=list)
    simulator_port: int = 0

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.web_ports]

    @property
    def url(self) -> str:
        return self.urls[0]

    def url_for(self, index: int) -> str:
        """The web process person `index` talks to: pinned round-robin, as a balancer would."""
        return self.urls[index % len(self.urls)]

    @property
    def web_pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.name.startswith("web")]

    @property
    def simulator_root(self) -> str:
        return f"http://127.0.0.1:{self.simulator_port}"

    @property
    def on_servers(self) -> bool:
        return self.backend.startswith("postgresql")

    def prepare(self) -> dict[str, str]:
        """Choose the backend, make a fresh database and broker, and return the environment
        every process (and this one, before Django is set up) runs with."""
        var_dir = self.workdir / "var"
        var_dir.mkdir(parents=True, exist_ok=True)
        use_servers = self.kind == "server" or (self.kind == "auto" and servers_available())
        if self.kind == "server" and not servers_available():
            raise RuntimeError("--stack server: PostgreSQL or Redis does not answer on 127.0.0.1")
        self.web_ports = [free_port() for _ in range(self.web_processes)]
        self.simulator_port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        env |= {
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "CHATSITE_VAR_DIR": str(var_dir),
            "DJANGO_STATIC_ROOT": str(var_dir / "static"),
            "DJANGO_SECRET_KEY": f"bench-{uuid.uuid4().hex}",
            "OPENAI_BASE_URL": f"{self.simulator_root}/v1",
            "OPENAI_API_KEY": "sk-bench",
            "UPSTREAM_SIMULATED": "1",
            "UPSTREAM_STREAM": "1",
            "SIMULATOR_PORT": str(self.simulator_port),
            "CELERY_QUEUE": f"chatsite-bench-{os.getpid()}",
            # Simulated people send far more than a person would: the abuse limits are off.
            "MESSAGES_PER_MINUTE": "0",
            "MAX_REPLIES_IN_FLIGHT": "0",
            # The runs measure replies: no title call after each conversation's first one.
            "MODEL_TITLES": "0",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        if use_servers:
            import psycopg
            import redis

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {PG_BENCH_DB}")
            for url in (REDIS_BROKER_URL, REDIS_STREAMS_URL):
                redis.Redis.from_url(url).flushdb()
            env |= {
                "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}",
                "CELERY_BROKER_URL": REDIS_BROKER_URL,
                "REDIS_URL": REDIS_STREAMS_URL,
            }
            self.backend = "postgresql+redis"
        else:
            self.backend = "sqlite+filesystem"
        self.env = env
        return env

    def migrate(self) -> None:
        for command in (["migrate"], ["collectstatic"]):
            subprocess.run(
                [sys.executable, "manage.py", *command, "--noinput", "-v", "0"],
                cwd=ROOT,
                env=self.env,
                check=True,
            )

    def commands(self) -> dict[str, list[str]]:
        python = sys.executable
        commands = {
            "simulator": [
                python, "manage.py", "simulate_upstream", "--port", str(self.simulator_port),
                "--latency", str(self.latency), "--token-delay", "0",
                *(["--plain"] if self.plain_replies else []),
            ],
            "worker": [
                python, "-m", "celery", "-A", "chatsite", "worker",
                "--pool", "threads", "--concurrency", str(self.worker_concurrency),
                "--queues", self.env["CELERY_QUEUE"],
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--loglevel", "INFO",
            ],
        }  # fmt: skip
        # One single-process uvicorn per port, as `make run` starts it. Not `--workers N`:
        # its pre-bound socket loses TCP_NODELAY (uvicorn#3149), +40 ms per keep-alive reply.
        for index, port in enumerate(self.web_ports):
            commands[f"web-{index}"] = [
                *uvicorn_command(host="127.0.0.1", port=port, trusted_proxies=[], python=python),
                "--log-level", "warning",
            ]  # fmt: skip
        return commands

    def start(self) -> None:
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        # Its "ready." line says it listens. It runs in the work directory because the
        # filesystem broker writes its control files (`control/`) where it runs.
        worker_env = {**self.env, "LOG_LEVEL": "INFO", "PYTHONPATH": str(ROOT)}
        for name, command in self.commands().items():
            process = Process(name, command, logs / f"{name}.log")
            self.processes.append(process)
            if name == "worker":
                process.start(worker_env, cwd=self.workdir)
            else:
                process.start(self.env)
        self._wait_ready()

    def process(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)

    def _wait_ready(self) -> None:
        def up(name: str, check) -> bool:
            process = self.process(name)
            if not process.alive():
                raise RuntimeError(f"{name} exited early:\n{process.log_tail()}")
            try:
                return check()
            except requests.RequestException:
                return False

        wait_for(
            lambda: up(
                "simulator",
                lambda: requests.get(f"{self.simulator_root}/_health", timeout=2).ok,
            ),
            timeout=30,
            what="the simulator",
        )
        wait_for(
            lambda: up("worker", lambda: "ready." in self.process("worker").log_tail(100_000)),
            timeout=60,
            what="the Celery worker",
        )
        for index, url in enumerate(self.urls):
            wait_for(
                lambda index=index, url=url: up(
                    f"web-{index}",
                    lambda: requests.get(f"{url}/accounts/login/", timeout=5).status_code == 200,
                ),
                timeout=60,
                what=f"uvicorn on {url}",
            )

    def check_alive(self) -> None:
        for process in self.processes:
            if not process.alive():
                raise RuntimeError(f"{process.name} died:\n{process.log_tail()}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    # --- the simulator's control and timings ---

    def simulator_control(self, **payload) -> None:
        requests.post(f"{self.simulator_root}/_control", json=payload, timeout=5).raise_for_status()

    def simulator_timings(self) -> dict[str, dict]:
        stats = requests.get(f"{self.simulator_root}/_stats", timeout=30).json()
        return {t["id"]: t for t in stats["timings"]}


# --- memory ---
