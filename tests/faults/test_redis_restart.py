"""Redis restarted under the workers (issue 13, defect 5): a private redis-server, the
stack's broker and REDIS_URL, is SIGKILLed, stays down at least 4 s and comes back on the
same port. The workers survive, and messages sent before, during and after are all
answered: what could not be enqueued meanwhile is sent again by the sweep."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from .harness import (
    Stack,
    StackSetup,
    assert_held,
    conversation_paths,
    logged_in,
    send_and_follow,
    tally,
    unique,
    wait_for_text,
)

pytestmark = [pytest.mark.faults, pytest.mark.worker]

DOWN = 4  # seconds


@pytest.fixture
def stack_setup() -> StackSetup:
    return StackSetup(
        private_redis=True,
        env={"COMPLETION_STALE_QUEUED_SECONDS": "2", "COMPLETION_SWEEP_INTERVAL": "1"},
    )


def test_messages_before_during_and_after_a_redis_restart_are_all_answered(stack: Stack):
    web_a, web_b = stack.webs
    person = logged_in(web_a)
    conversations = [person.open(web_a, path) for path in conversation_paths(person, 4)]
    before, in_flight, during, after = conversations
    stack.simulator.control(token_delay=0.05)  # 31 pieces: about 1.5 s a reply

    replies = [send_and_follow(before, web_a, [web_b, web_a], unique("before", 30))]
    replies[0].reader.join(timeout=30)
    # Being written when Redis dies: its task is not yet acknowledged (acks late).
    replies.append(send_and_follow(in_flight, web_b, [web_a, web_b], unique("across", 30)))
    wait_for_text(replies[1:], words=3)

    stack.redis.kill()
    down_since = time.monotonic()
    # The composer still takes it (the message is in PostgreSQL); its task is sent by the
    # sweep once Redis is back.
    with ThreadPoolExecutor(max_workers=1) as pool:
        sending = pool.submit(send_and_follow, during, web_a, [web_b, web_a], unique("during", 30))
        # The outage itself, however long the send took.
        time.sleep(max(0.0, DOWN - (time.monotonic() - down_since)))
        for worker in stack.workers:
            assert worker.process.poll() is None, f"a worker exited:\n{stack.logs()}"
        down = time.monotonic() - down_since
        stack.redis.start()
        back_at = time.time()
        replies.append(sending.result())
    replies.append(send_and_follow(after, web_b, [web_a, web_b], unique("after", 30)))

    row = tally(
        f"Redis SIGKILL, down {down:.1f} s, restarted on its port",
        replies,
        stack,
        fault_ended_at=back_at,
        notes=["messages before / across / during / after the outage"],
    )
    unsent = sum(web.log_path.read_text().count("Could not enqueue") for web in stack.webs)
    row.notes.append(f"{unsent} send(s) not enqueued while it was down, sent by the sweep after")
    assert_held(row, stack)
    assert row.refused == 0, [r.refusal for r in replies]
    for worker in stack.workers:
        assert worker.process.poll() is None, f"a worker exited:\n{stack.logs()}"
