"""A real `celery worker` process saves replies, and recovers work from a killed one."""

import pytest

from conversations.chat.services import conversations as chat_services
from conversations.models import Completion, Message
from tests.support import WorkerProcess, subprocess_env, wait_for

pytestmark = pytest.mark.worker


def finished(completion: Completion):
    completion.refresh_from_db()
    return completion.status in (Completion.Status.SUCCEEDED, Completion.Status.FAILED)


def test_a_real_worker_saves_the_reply_through_the_simulator(alice, worker, simulator, send):
    conversation = chat_services.conversation_create(owner=alice, n=2, max_tokens=30)
    _, completion = send(conversation, "Hello from a real worker")
    wait_for(lambda: finished(completion), timeout=30, what="the worker to finish")
    assert completion.status == Completion.Status.SUCCEEDED, worker.log()[-2000:]
    assert Message.objects.filter(completion=completion).count() == 2
    assert completion.total_tokens > 0
    assert simulator.bodies()[0]["messages"][-1] == {
        "role": "user",
        "content": "Hello from a real worker",
    }


def test_a_worker_killed_mid_call_is_recovered_with_one_reply(
    alice, transactional_db, simulator, send, tmp_path
):
    # Short leases and a fast sweep so recovery happens within the test's deadline.
    env = subprocess_env(simulator, COMPLETION_LEASE_SECONDS="3", COMPLETION_SWEEP_INTERVAL="0.5")
    first = WorkerProcess(env, tmp_path / "first.log").start()
    try:
        simulator.control(faults=[{"delay": 30}])  # the first call hangs
        conversation = chat_services.conversation_create(owner=alice)
        _, completion = send(conversation, "Will the worker survive?")
        wait_for(lambda: len(simulator.requests()) == 1, timeout=30, what="the call to start")
        first.kill()
    finally:
        first.stop()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.RUNNING

    second = WorkerProcess(env, tmp_path / "second.log", beat=True).start()
    try:
        wait_for(lambda: finished(completion), timeout=40, what="recovery by the sweep")
        assert completion.status == Completion.Status.SUCCEEDED, second.log()[-3000:]
        assert Message.objects.filter(completion=completion).count() == 1
        assert completion.attempts == 2
        assert len(simulator.requests()) == 2
    finally:
        second.stop()
