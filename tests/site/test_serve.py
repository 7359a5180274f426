"""`make run` (manage.py serve): a busy port is named before anything starts, and the
terminal shows a line per process rather than Celery's banner (issue 17, defect 12)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
import requests
from django.conf import settings

from tests.support import free_port, wait_for
from tests.support import test_database_url as database_url


def serve_env(tmp_path, **extra) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "OPENAI_API_KEY": "",  # the simulator, as on a fresh machine
        "CHATSITE_VAR_DIR": str(tmp_path / "var"),
        "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def serve(env, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "serve", *args],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("busy", ["web", "simulator"])
def test_a_busy_port_is_named_with_how_to_pick_another_and_nothing_starts(tmp_path, busy):
    web, simulator = free_port(), free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", web if busy == "web" else simulator))
        taken.listen()
        process = serve(serve_env(tmp_path, SIMULATOR_PORT=str(simulator)), "--port", str(web))
        out, err = process.communicate(timeout=60)

    assert process.returncode != 0
    variable, port = ("PORT", web) if busy == "web" else ("SIMULATOR_PORT", simulator)
    assert f"Port {port} on 127.0.0.1" in err and "is in use" in err
    assert f"make run {variable}=" in err
    assert "started" not in out and "is running on" not in out
    assert "Traceback" not in err


def test_the_start_is_one_line_per_process_and_the_url(transactional_db, tmp_path):
    web, simulator = free_port(), free_port()
    env = serve_env(tmp_path, SIMULATOR_PORT=str(simulator))
    process = serve(env, "--port", str(web))
    worker_log = tmp_path / "var" / "log" / "worker.log"
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{web}/healthz"), timeout=60, what="web")
        wait_for(lambda: "ready" in _read(worker_log), timeout=60, what="the worker")
        # Started first, but a busy machine can bring it up after the others.
        wait_for(
            lambda: _answers(f"http://127.0.0.1:{simulator}/_health"),
            timeout=60,
            what="the simulator",
        )
        # The simulator a new user gets writes Markdown (the bench asks for --plain).
        answer = requests.post(
            f"http://127.0.0.1:{simulator}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
            headers={"Authorization": "Bearer any"},
            timeout=10,
        ).json()
        assert "\n\n" in answer["choices"][0]["message"]["content"]
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)

    lines = [line for line in out.splitlines() if line.startswith("started ")]
    assert [line.split()[1] for line in lines] == ["simulator", "worker", "web"]
    assert f"chatsite is running on http://127.0.0.1:{web}/" in out
    # Celery's banner and warnings are in the worker's log, not on the terminal.
    assert "celery@" not in out + err
    assert "celery@" in _read(worker_log)
    assert process.returncode == 0


def _read(path) -> str:
    return path.read_text() if path.exists() else ""


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False
