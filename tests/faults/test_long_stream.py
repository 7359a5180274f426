"""A stream longer than the lease (issue 13, defect 2): the worker renews its claim while
text keeps coming, so the reply finishes once, in one attempt and one upstream call, and
the sweep never takes it over."""

from __future__ import annotations

import pytest

from conversations.models import Completion
from conversations.upstream.simulated_text import WORDS

from .harness import (
    Expect,
    Stack,
    StackSetup,
    assert_held,
    assert_no_tracebacks,
    logged_in,
    send_and_follow,
    tally,
    unique,
)

pytestmark = [pytest.mark.faults, pytest.mark.worker]

LEASE = 2
TOKENS = 120
TOKEN_DELAY = 0.05  # 121 pieces: a stream of about 6 s, three leases


@pytest.fixture
def stack_setup() -> StackSetup:
    return StackSetup(env={"COMPLETION_LEASE_SECONDS": str(LEASE)})


def test_a_stream_three_leases_long_finishes_once_in_one_attempt(stack: Stack):
    web_a, web_b = stack.webs
    person = logged_in(web_a)
    conversation = person.open_conversation(web_a)
    stack.simulator.control(token_delay=TOKEN_DELAY, faults=[{"kind": "tokens", "tokens": TOKENS}])
    # The simulator writes TOKENS of its own words, whatever the message.
    expected = " ".join(WORDS[k % len(WORDS)] for k in range(TOKENS)) + "."
    reply = send_and_follow(
        conversation, web_a, [web_b, web_a], unique("long"), expect=Expect(expected)
    )
    row = tally("stream longer than the lease (2 s lease, ~6 s stream)", [reply], stack)
    completion = Completion.objects.get(pk=reply.completion_id)
    took = (completion.finished_at - completion.started_at).total_seconds()
    row.notes.append(
        f"streamed {took:.1f} s; attempts {completion.attempts}; "
        f"upstream calls {sum(row.calls.values())}; live events {len(reply.live)}"
    )
    assert_held(row, stack)
    assert took > 2 * LEASE, f"the stream lasted {took:.1f}s, not longer than the lease"
    assert completion.attempts == 1
    assert list(row.calls.values()) == [1]
    logs = "\n".join(worker.log() for worker in stack.workers)
    assert "Sweep re-sends" not in logs and "claimed elsewhere" not in logs, stack.logs()
    assert_no_tracebacks(stack)
