"""Run the whole embedded stack: uvicorn (ASGI), a Celery worker with its sweep, and the
simulated upstream when no OPENAI_API_KEY is set. Ctrl-C stops every process.

The ports are checked before anything starts: a busy one is named, with how to pick
another. The terminal shows a line per process and the web server's own log; the worker's
and the simulator's output (Celery's banner, its warnings) go to files under var/log/,
whose last lines are shown if the process stops.
"""

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chatsite.serving import uvicorn_command


class Command(BaseCommand):
    help = "Start web (uvicorn), worker (celery) and, without an API key, the simulator."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--concurrency",
            type=int,
            default=int(os.environ.get("WORKER_CONCURRENCY", "32")),
            help="worker threads (each waits on one upstream call)",
        )

    def handle(self, *args, host, port, concurrency, **options):
        ports = [("PORT", host, port, "the web server")]
        if settings.UPSTREAM_SIMULATED:
            ports.append(("SIMULATOR_PORT", "127.0.0.1", settings.SIMULATOR_PORT, "the simulator"))
        for variable, address, number, what in ports:
            if problem := _port_problem(address, number):
                raise CommandError(
                    f"Port {number} on {address} ({what}) {problem}. Nothing was started.\n"
                    f"Stop what uses it, or pick another port: make run {variable}={number + 10}"
                )
        logs = settings.VAR_DIR / "log"
        logs.mkdir(parents=True, exist_ok=True)
        processes = []
        for name, command in _commands(host, port, concurrency):
            log = None if name == "web" else logs / f"{name}.log"
            processes.append((name, _start(command, log), log))
            where = f"log in {_shown(log)}" if log else "log below"
            self.stdout.write(f"started {name:<9} ({where})")
        self.stdout.write(
            self.style.SUCCESS(f"\nchatsite is running on http://{host}:{port}/\n")
            + (
                "Upstream: SIMULATED (set OPENAI_API_KEY to use a real model)\n"
                if settings.UPSTREAM_SIMULATED
                else "Upstream: the OpenAI-compatible server at OPENAI_BASE_URL\n"
            )
            + "Create an admin with: .venv/bin/python manage.py createsuperuser\n"
            + "Press Ctrl-C to stop.\n"
        )
        try:
            self._supervise(processes)
        finally:
            _stop([(name, process) for name, process, _log in processes])

    def _supervise(self, processes: list[tuple[str, subprocess.Popen, Path | None]]) -> None:
        """Until Ctrl-C (or SIGTERM), or until one of the processes exits."""
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping:
            for name, process, log in processes:
                if process.poll() is not None:
                    self.stderr.write(f"{name} exited with {process.returncode}; stopping")
                    if log is not None:
                        self.stderr.write(f"--- the end of {_shown(log)} ---\n{_tail(log)}")
                    stopping = True
            time.sleep(0.2)


def _port_problem(host: str, port: int) -> str | None:
    """Why the web server could not listen on this port, or None when it can."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        return f"cannot be used: {host} is not an address of this machine ({error})"
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As uvicorn binds: a closed connection still in TIME_WAIT does not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return "is in use by another program (or another chatsite)"
            if error.errno == errno.EACCES:
                return "needs more privileges than this user has"
            return f"cannot be used: {error.strerror}"
    return None


def _start(command: list[str], log: Path | None) -> subprocess.Popen:
    if log is None:
        return subprocess.Popen(command, cwd=settings.BASE_DIR)
    with log.open("ab") as output:
        return subprocess.Popen(
            command, cwd=settings.BASE_DIR, stdout=output, stderr=subprocess.STDOUT
        )


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(settings.BASE_DIR))
    except ValueError:
        return str(path)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _commands(host: str, port: int, concurrency: int) -> list[tuple[str, list[str]]]:
    python = sys.executable
    commands = []
    if settings.UPSTREAM_SIMULATED:
        simulator = ["manage.py", "simulate_upstream", "--port", str(settings.SIMULATOR_PORT)]
        commands.append(("simulator", [python, *simulator]))
    commands.append(
        (
            "worker",
            [
                python, "-m", "celery", "-A", "chatsite", "worker", "--beat",
                "--pool", "threads", "--concurrency", str(concurrency),
                "--queues", settings.CELERY_TASK_DEFAULT_QUEUE,
                "--schedule", str(settings.VAR_DIR / "celerybeat-schedule"),
                "--without-gossip", "--without-mingle", "--loglevel", "INFO",
            ],
        )
    )  # fmt: skip
    web = uvicorn_command(host=host, port=port, trusted_proxies=settings.TRUSTED_PROXIES)
    commands.append(("web", web))
    return commands


def _stop(processes: list[tuple[str, subprocess.Popen]]) -> None:
    for _, process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for _, process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
