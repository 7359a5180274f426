"""Fixtures of the providers' tests: more simulators (each a provider of its own) and the
model-list refreshes the admin queues, captured."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from chatsite.celery import app as celery_app
from conversations.providers import tasks
from conversations.upstream.simulator import SimulatorServer, start_in_thread
from tests.support import Simulator


@dataclass
class Refreshes:
    """Model-list refreshes sent to the worker, captured; `run` does them here."""

    ids: list[int] = field(default_factory=list)

    def run(self) -> None:
        while self.ids:
            tasks.provider_refresh(self.ids.pop(0))


@pytest.fixture(autouse=True)
def refreshes(enqueued, monkeypatch) -> Refreshes | None:
    """Capture provider refreshes beside the completions `enqueued` captures (None when a
    real worker takes them)."""
    if enqueued is None:
        return None
    captured = Refreshes()
    other = celery_app.send_task

    def send_task(name, args=None, kwargs=None, **options):
        if name == tasks.provider_refresh.name:
            captured.ids.append(args[0])
            return None
        return other(name, args=args, **options)

    monkeypatch.setattr(celery_app, "send_task", send_task)
    return captured


@dataclass
class Provided:
    """A simulator serving as a provider: its address and what it saw."""

    server: SimulatorServer
    handle: Simulator
    stopped: bool = False

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def simulators() -> Iterator[Callable[..., Provided]]:
    """Start simulators of their own (`api_key`: the only key they answer), stopped after."""
    started: list[Provided] = []

    def start(api_key: str = "") -> Provided:
        server = start_in_thread(api_key=api_key)
        started.append(Provided(server, Simulator(server.base_url)))
        return started[-1]

    yield start
    for provided in started:
        provided.stop()
