"""Thirty parallel sends by one user across thirty conversations while the workers save
replies (issue 13, defect 4): no HTTP 500, every message stored once and answered once.
Budgets are on (the stack's BUDGET_MONTHLY_TOKENS), so their rows are locked too."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from conversations.models import Message

from .harness import (
    Conversation,
    Reply,
    Stack,
    assert_held,
    assert_no_tracebacks,
    conversation_paths,
    logged_in,
    send_and_follow,
    tally,
    unique,
)

pytestmark = [pytest.mark.faults, pytest.mark.worker]

SENDERS = 30
ROUNDS = 2


def test_thirty_parallel_sends_by_one_user_are_each_stored_and_answered_once(stack: Stack):
    person = logged_in(stack.webs[0])
    stack.simulator.control(token_delay=0.02)  # each reply takes a moment to save
    paths = conversation_paths(person, SENDERS)
    with ThreadPoolExecutor(max_workers=8) as pool:
        # One tab per conversation, half opened on each web process.
        conversations = list(
            pool.map(lambda i: person.open(stack.webs[i % 2], paths[i], tab=True), range(SENDERS))
        )
    barrier = threading.Barrier(SENDERS)
    replies: list[Reply] = []

    def sender(index: int, conversation: Conversation) -> None:
        barrier.wait(timeout=30)
        for number in range(ROUNDS):
            # The next send goes in as soon as this reply ended, while others are saved.
            sender_web, reader = (
                stack.webs[(index + number) % 2],
                stack.webs[(index + number + 1) % 2],
            )
            reply = send_and_follow(
                conversation, sender_web, [reader, sender_web], unique(f"c{index} m{number}")
            )
            replies.append(reply)
            if reply.reader is None:
                return
            reply.reader.join(timeout=60)

    with ThreadPoolExecutor(max_workers=SENDERS) as pool:
        list(pool.map(sender, range(SENDERS), conversations))
    statuses = Counter(reply.status for reply in replies)
    row = tally(
        f"{SENDERS} parallel sends by one user, {ROUNDS} rounds",
        replies,
        stack,
        notes=[f"composer answers {dict(statuses)}"],
    )
    assert_held(row, stack)
    assert statuses == Counter({200: SENDERS * ROUNDS}), [r.refusal for r in replies]
    assert row.refused == 0
    assert Message.objects.filter(role=Message.Role.USER).count() == SENDERS * ROUNDS
    assert "deadlock" not in stack.logs(chars=10**7)
    assert_no_tracebacks(stack)
