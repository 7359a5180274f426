"""Poison upstream output (issue 13, defect 1): a NUL byte, an over-long finish_reason,
bytes that are not UTF-8, content that is not a string and a 200 carrying an error each
end the reply (stored cleaned, or failed with the upstream's message) within its
attempts, and the upstream is never called more often than they allow."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conversations.models import Message
from conversations.upstream.simulated_text import INVALID_UTF8_BYTES

from .harness import (
    Expect,
    Row,
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

MAX_ATTEMPTS = 3
FINISH_REASON_LENGTH = Message._meta.get_field("finish_reason").max_length
OVERLOADED = "The engine is overloaded today"
PARTS = [{"type": "text", "text": "one "}, {"type": "text", "text": "two"}]
REPLACED = INVALID_UTF8_BYTES.decode("utf-8", "replace")

# Per fault, its messages: the simulator's faults for the message's calls, and how the
# reply to `/echo <text>` must end.
CASES: dict[str, list[tuple[list[dict], Callable[[str], Expect]]]] = {
    "poison: NUL byte in content": [
        ([{"kind": "content", "content": "before\u0000after"}], lambda _: Expect("beforeafter")),
    ],
    "poison: finish_reason of 100 characters": [
        (
            [{"kind": "finish_reason", "finish_reason": "x" * 100}],
            lambda text: Expect(text, finish_reason="x" * FINISH_REASON_LENGTH),
        ),
    ],
    "poison: invalid UTF-8 in an SSE line": [
        ([{"kind": "invalid_utf8"}], lambda text: Expect(f"{text} {REPLACED} end.")),
    ],
    "poison: content that is not a string (number, object, parts)": [
        ([{"kind": "content", "content": 42}], lambda _: Expect("42")),
        (
            [{"kind": "content", "content": {"answer": "yes"}}],
            lambda _: Expect('{"answer": "yes"}'),
        ),
        ([{"kind": "content", "content": PARTS}], lambda _: Expect("one two")),
    ],
    "poison: a 200 carrying an error object": [
        (
            # More errors than attempts: only the cap ends it.
            [{"kind": "error_body", "message": OVERLOADED, "times": MAX_ATTEMPTS + 2}],
            lambda _: Expect(error=OVERLOADED),
        ),
    ],
}


@pytest.fixture
def stack_setup() -> StackSetup:
    return StackSetup(env={"COMPLETION_MAX_ATTEMPTS": str(MAX_ATTEMPTS)})


def test_poison_upstream_output_ends_every_reply_within_its_attempts(stack: Stack):
    web_a, web_b = stack.webs
    person = logged_in(web_a)
    conversation = person.open_conversation(web_a)
    rows: list[Row] = []
    for fault, messages in CASES.items():
        replies = []
        # One message at a time: the simulator's faults go to the next calls in order.
        for faults, expect in messages:
            text = unique("poison")
            stack.simulator.control(faults=faults)
            reply = send_and_follow(conversation, web_a, [web_b, web_a], text, expect=expect(text))
            replies.append(reply)
            if reply.reader is not None:
                reply.reader.join(timeout=30)
        row = tally(fault, replies, stack)
        slowest = max((r.ended_at or 0) - r.sent_at for r in replies)
        row.notes.append(
            f"upstream calls per message: {sorted(row.calls.values())} (cap {MAX_ATTEMPTS}); "
            f"ended {slowest:.1f} s after the send"
        )
        rows.append(row)
        stack.simulator.reset()
    for row in rows:
        assert_held(row, stack)
        assert all(calls <= MAX_ATTEMPTS for calls in row.calls.values()), row
    *cleaned, failed = rows
    assert all(calls == 1 for row in cleaned for calls in row.calls.values()), cleaned
    assert list(failed.calls.values()) == [MAX_ATTEMPTS], failed  # every attempt, no more
    assert list(failed.attempts.values()) == [MAX_ATTEMPTS], failed
    assert_no_tracebacks(stack)
