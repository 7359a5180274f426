"""A web process SIGKILLed while a reader follows a reply over SSE (held before issue
13): the reader connects again, to the other web process, and is shown the whole reply
once."""

from __future__ import annotations

import time

import pytest

from .harness import Stack, assert_held, logged_in, send_and_follow, tally, unique, wait_for_text

pytestmark = [pytest.mark.faults, pytest.mark.worker]


def test_a_reader_whose_web_process_dies_gets_the_whole_reply_once_from_the_other(
    stack: Stack,
):
    web_a, web_b = stack.webs
    person = logged_in(web_b)
    conversation = person.open_conversation(web_b)
    stack.simulator.control(token_delay=0.1)  # 31 pieces: about 3 s
    # Sent on web B, read on web A; when A dies the reader's next connection goes to B.
    reply = send_and_follow(conversation, web_b, [web_a, web_b], unique("web-kill", 30))
    wait_for_text([reply], words=5)
    shown_before = len(reply.live[-1].split())
    web_a.kill()
    killed_at = time.time()
    row = tally("web SIGKILL mid-SSE", [reply], stack, fault_ended_at=killed_at)
    row.notes.append(f"{shown_before} words shown before the kill")
    assert_held(row, stack)
    assert reply.connections == [web_a.port, web_b.port], reply.connections
    # A reload on the killed process once it is back shows the reply too.
    web_a.start()
    page = conversation.session.get(f"{web_a.url}{conversation.path}", timeout=10)
    assert page.status_code == 200 and reply.text in page.text
