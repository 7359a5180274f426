"""A Redis broker restarted under a real worker: the worker stays up and no reply is lost."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from chatsite.celery import app as celery_app
from conversations.chat.services import conversations as chat_services
from conversations.models import Completion, Message
from tests.services import REDIS_SERVER, RedisServer
from tests.support import WorkerProcess, subprocess_env, wait_for

pytestmark = pytest.mark.worker


@pytest.fixture
def private_redis(tmp_path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing; the broker restart test must run in CI")
        pytest.skip("redis-server is missing: install Redis to restart a broker under a worker")
    server = RedisServer(tmp_path / "redis.log")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def sends_to(private_redis, settings, monkeypatch) -> Iterator[str]:
    """This process's task sends go to the private Redis; everything is put back after."""
    url = private_redis.url(0)
    # Celery takes the URL from the environment first (CI sets it), then from its own
    # changes or the Django settings (which wins depends on the version): set them all.
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    monkeypatch.delenv("CELERY_BROKER_WRITE_URL", raising=False)
    settings.CELERY_BROKER_URL = url
    settings.CELERY_BROKER_TRANSPORT = None
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    conf = celery_app.conf
    names = ("broker_url", "broker_transport", "broker_transport_options")
    saved_changes = {name: conf.changes[name] for name in names if name in conf.changes}
    conf.update(broker_url=url, broker_transport=None, broker_transport_options={})
    # Celery caches the connection pool and the producer pool built from the old URL.
    saved_pools = (celery_app._pool, celery_app.amqp._producer_pool)
    celery_app._pool = celery_app.amqp._producer_pool = None
    try:
        with celery_app.connection_for_write() as connection:
            assert (connection.transport_cls, connection.port) == ("redis", private_redis.port)
        yield url
    finally:
        for pool in (celery_app._pool, celery_app.amqp._producer_pool):
            if pool is not None:
                pool.force_close_all()
        celery_app._pool, celery_app.amqp._producer_pool = saved_pools
        for name in names:
            conf.changes.pop(name, None)
        conf.changes.update(saved_changes)


def replied(completion: Completion, worker: WorkerProcess) -> bool:
    """The reply is saved, and by this worker: its log says so (after the commit)."""
    completion.refresh_from_db()
    return (
        completion.status == Completion.Status.SUCCEEDED
        and f"Completion {completion.pk}: succeeded" in worker.log()
    )


def test_a_worker_survives_a_broker_restart_and_every_reply_is_saved(
    alice, transactional_db, simulator, send, private_redis, sends_to, tmp_path, caplog
):
    env = subprocess_env(
        simulator,
        CELERY_BROKER_URL=sends_to,
        REDIS_URL=private_redis.url(1),
        COMPLETION_SWEEP_INTERVAL="1",
        COMPLETION_STALE_QUEUED_SECONDS="2",
    )
    worker = WorkerProcess(env, tmp_path / "worker.log", beat=True)
    # One conversation per message: a conversation takes no message while a reply is due.
    first, busy, second, third = (chat_services.conversation_create(owner=alice) for _ in range(4))
    try:
        worker.start()
        _, before = send(first, "Before the restart")
        wait_for(lambda: replied(before, worker), timeout=20, what="the reply before the restart")

        # A reply being written when Redis dies: its task is not yet acknowledged (acks
        # late), which is what made the worker's reconnect crash.
        simulator.control(faults=[{"delay": 2}])
        _, in_flight = send(busy, "Being answered when Redis dies")
        wait_for(lambda: len(simulator.requests()) == 2, timeout=20, what="the call to start")

        private_redis.kill()
        down_since = time.monotonic()
        # The web side's enqueue fails while the broker is down; the sweep sends it later.
        _, during = send(second, "Sent while Redis is down")
        wait_for(lambda: time.monotonic() - down_since >= 4, timeout=10, what="a 4 s outage")
        assert worker.process.poll() is None, f"the worker exited:\n{worker.log()[-3000:]}"
        private_redis.start()

        _, after = send(third, "Sent after the restart")
        for completion, when in [(after, "after"), (during, "during"), (in_flight, "across")]:
            wait_for(
                lambda completion=completion: (
                    replied(completion, worker) or worker.process.poll() is not None
                ),
                timeout=30,
                what=f"the reply to the message sent {when} the outage",
            )
            assert worker.process.poll() is None, f"the worker exited:\n{worker.log()[-3000:]}"
        for completion in (before, in_flight, during, after):
            assert replied(completion, worker)
            assert Message.objects.filter(completion=completion).count() == 1
        unsent = [r.getMessage() for r in caplog.records if "Could not enqueue" in r.getMessage()]
        assert unsent == [f"Could not enqueue completion {during.pk}; the sweep will retry"]
    finally:
        worker.stop()
