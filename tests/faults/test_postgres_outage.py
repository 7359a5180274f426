"""PostgreSQL unreachable for 5 s while replies are being written and sent (held before
issue 13): every app process reaches it through a TcpProxy, whose outage resets every
connection and refuses new ones. Replies in flight, and messages sent during and right
after it, end once each; a send refused meanwhile says so and stores nothing."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conversations.models import Completion

from .harness import (
    Reply,
    Stack,
    assert_held,
    conversation_paths,
    logged_in,
    send_and_follow,
    tally,
    unique,
    wait_for_text,
)

pytestmark = [pytest.mark.faults, pytest.mark.worker]

OUTAGE = 5  # seconds
IN_FLIGHT, DURING, AFTER = 4, 2, 4


def test_replies_in_flight_and_sent_around_a_postgresql_outage_end_once(stack: Stack):
    webs = stack.webs
    person = logged_in(webs[0])
    paths = conversation_paths(person, IN_FLIGHT + DURING + AFTER)
    conversations = [person.open(webs[0], path, tab=True) for path in paths]
    stack.simulator.control(token_delay=0.1)  # 31 pieces: about 3 s a reply

    def go(index: int, label: str) -> Reply:
        sender, reader = webs[index % 2], webs[(index + 1) % 2]
        return send_and_follow(conversations[index], sender, [reader, sender], unique(label, 30))

    in_flight = [go(i, "in-flight") for i in range(IN_FLIGHT)]
    wait_for_text(in_flight, words=3)
    with ThreadPoolExecutor(max_workers=DURING + AFTER) as pool:
        with stack.database.outage(OUTAGE):
            # Sent while PostgreSQL is gone: each waits, fails or gets through after.
            during = [pool.submit(go, IN_FLIGHT + i, "during") for i in range(DURING)]
        back_at = time.time()
        after = [pool.submit(go, IN_FLIGHT + DURING + i, "after") for i in range(AFTER)]
        replies = in_flight + [f.result() for f in during + after]
    row = tally(
        f"PostgreSQL unreachable {OUTAGE} s (TcpProxy outage)",
        replies,
        stack,
        fault_ended_at=back_at,
        notes=[f"{IN_FLIGHT} in flight, {DURING} sent during, {AFTER} right after"],
    )
    retried = Completion.objects.filter(
        pk__in=[r.completion_id for r in in_flight], attempts__gt=1
    ).count()
    row.notes.append(f"{retried} of the {IN_FLIGHT} in flight taken over after their lease")
    assert_held(row, stack)
    after_refused = [r.refusal for r in replies[IN_FLIGHT + DURING :] if not r.accepted]
    assert not after_refused, f"sends right after the outage were refused: {after_refused}"
