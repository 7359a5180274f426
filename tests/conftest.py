"""Shared fixtures: users, a simulator over real HTTP, captured or real task delivery."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User

from conversations import simulator as simulator_module
from conversations import tasks

from .support import Simulator, WorkerProcess, subprocess_env, wait_for


@pytest.fixture
def alice(db) -> User:
    return User.objects.create_user("alice", password="alice-password-1")


@pytest.fixture
def bob(db) -> User:
    return User.objects.create_user("bob", password="bob-password-1")


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_user("sam", password="sam-password-1", is_staff=True)


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[simulator_module.SimulatorServer]:
    server = simulator_module.start_in_thread()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def simulator(simulator_server, settings) -> Simulator:
    """A fresh simulator state, with the app's settings pointing at it."""
    handle = Simulator(simulator_server.base_url)
    handle.reset()
    settings.OPENAI_BASE_URL = simulator_server.base_url
    settings.OPENAI_API_KEY = "sk-test-key"
    settings.UPSTREAM_SIMULATED = True
    settings.COMPLETION_RETRY_BASE_DELAY = 0.02
    settings.COMPLETION_RETRY_MAX_DELAY = 2.0
    return handle


class Enqueued:
    """Task deliveries captured instead of sent to a broker; `drain` runs them here."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float | None]] = []

    @property
    def ids(self) -> list[int]:
        return [completion_id for completion_id, _ in self.calls]

    def drain(self, *, timeout: float = 10.0) -> None:
        """Run every captured delivery in order (retries included), honouring countdowns."""
        deadline = time.monotonic() + timeout
        while self.calls:
            completion_id, countdown = self.calls.pop(0)
            if countdown:
                due = time.monotonic() + countdown
                wait_for(lambda due=due: time.monotonic() >= due, timeout=countdown + 1)
            tasks.run_completion(completion_id)
            if time.monotonic() > deadline:
                raise AssertionError("deliveries did not settle in time")


@pytest.fixture(autouse=True)
def enqueued(request, monkeypatch) -> Enqueued | None:
    """Capture task sends, unless the test runs a real worker process."""
    if "worker" in request.fixturenames or "live_stack" in request.fixturenames:
        return None
    captured = Enqueued()

    def apply_async(args=None, countdown=None, **options):
        captured.calls.append((args[0], countdown))

    monkeypatch.setattr(tasks.run_completion, "apply_async", apply_async)
    return captured


@pytest.fixture
def worker(transactional_db, simulator, tmp_path) -> Iterator[WorkerProcess]:
    """A real Celery worker process on the test database, broker and simulator."""
    process = WorkerProcess(subprocess_env(simulator), tmp_path / "worker.log")
    process.start()
    yield process
    process.stop()


@pytest.fixture
def send(django_capture_on_commit_callbacks):
    """message_send with its after-commit work (enqueueing) run, as in production."""
    from conversations import services

    def send_message(conversation, content: str):
        with django_capture_on_commit_callbacks(execute=True):
            return services.message_send(conversation=conversation, content=content)

    return send_message
