"""Run the whole embedded stack: uvicorn (ASGI), a Celery worker with its sweep, and the
simulated upstream when no OPENAI_API_KEY is set. Ctrl-C stops every process."""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

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
        processes = []
        for name, command in _commands(host, port, concurrency):
            self.stdout.write(f"starting {name}: {' '.join(command[1:])}")
            processes.append((name, subprocess.Popen(command, cwd=settings.BASE_DIR)))
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
            _stop(processes)

    def _supervise(self, processes: list[tuple[str, subprocess.Popen]]) -> None:
        """Until Ctrl-C (or SIGTERM), or until one of the processes exits."""
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping:
            for name, process in processes:
                if process.poll() is not None:
                    self.stderr.write(f"{name} exited with {process.returncode}; stopping")
                    stopping = True
            time.sleep(0.2)


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
