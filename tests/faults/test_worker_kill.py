"""A worker SIGKILLed mid-call, and mid-stream while a reader follows the reply on
another web process (issue 13, defect 3): the other worker (with beat) takes the call
over once the dead one's lease runs out and saves one reply, and the reader is never
shown the dead attempt's text doubled with the retry's."""

from __future__ import annotations

import itertools
import time

import pytest

from conversations.models import Completion
from tests.support import wait_for

from .harness import (
    Person,
    Stack,
    StackSetup,
    assert_held,
    logged_in,
    send_and_follow,
    tally,
    unique,
    wait_for_text,
)

pytestmark = [pytest.mark.faults, pytest.mark.worker]


@pytest.fixture
def stack_setup() -> StackSetup:
    # workers[1] alone takes the first call; workers[0] (with beat) starts once it died.
    return StackSetup(beat_worker_started=False)


def kill_and_take_over(stack: Stack) -> float:
    """SIGKILL the worker on the call, start the other one; when the fault ended."""
    stack.workers[1].kill()
    killed_at = time.time()
    stack.workers[0].start()
    return killed_at


@pytest.fixture
def person(stack: Stack) -> Person:
    return logged_in(stack.webs[0])


def test_a_worker_killed_mid_call_is_finished_by_the_other_with_one_reply(
    stack: Stack, person: Person
):
    web_a, web_b = stack.webs
    conversation = person.open_conversation(web_a)
    stack.simulator.control(faults=[{"delay": 10}])  # the first call hangs before any text
    reply = send_and_follow(conversation, web_a, [web_b, web_a], unique("mid-call"))
    wait_for(stack.simulator.requests, timeout=20, what="the first call to start")
    killed_at = kill_and_take_over(stack)
    row = tally("worker SIGKILL mid-call", [reply], stack, fault_ended_at=killed_at)
    completion = Completion.objects.get(pk=reply.completion_id)
    row.notes.append(
        f"attempts {completion.attempts}, upstream calls {sum(row.calls.values())} "
        "(the cut one and the other worker's)"
    )
    assert_held(row, stack)
    assert completion.attempts == 2 and list(row.calls.values()) == [2]
    assert f"Completion {completion.pk}: succeeded" in stack.workers[0].log(), stack.logs()


def test_a_worker_killed_mid_stream_shows_the_retry_once_to_a_live_reader(
    stack: Stack, person: Person
):
    web_a, web_b = stack.webs
    conversation = person.open_conversation(web_a)
    stack.simulator.control(token_delay=0.1)  # 31 pieces: about 3 s per attempt
    # Sent on web A, followed live on web B (through Redis) from the first word on.
    reply = send_and_follow(conversation, web_a, [web_b, web_a], unique("mid-stream", 30))
    wait_for_text([reply], words=5)
    before = reply.live[-1]
    killed_at = kill_and_take_over(stack)
    fault = "worker SIGKILL mid-stream, reader on the other web"
    row = tally(fault, [reply], stack, fault_ended_at=killed_at)
    completion = Completion.objects.get(pk=reply.completion_id)
    row.notes.append(
        f"the dead attempt had shown {len(before.split())} words; attempts "
        f"{completion.attempts}, upstream calls {sum(row.calls.values())}; "
        f"{len(reply.live)} live events"
    )
    assert_held(row, stack)
    assert completion.attempts == 2 and list(row.calls.values()) == [2]
    assert reply.text.startswith(before)
    # The reader was shown the dead attempt's words, then the retry's from the start.
    assert any(len(b) < len(a) for a, b in itertools.pairwise(reply.live)), reply.live
