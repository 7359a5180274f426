"""The reply's Server-Sent Events, from uvicorn (ASGI), the real worker and the simulator."""

from __future__ import annotations

import time

import pytest
import requests
from django.contrib.auth.models import User

from conversations.chat.services import conversations as chat_services
from conversations.models import Completion, Message
from tests.http import events, logged_in_session, post, visible_text
from tests.support import wait_for

pytestmark = pytest.mark.worker


@pytest.fixture
def chat(live_stack):
    User.objects.create_user("alice", password="alice-password-1")
    session = logged_in_session(live_stack.url, "alice", "alice-password-1")
    conversation = chat_services.conversation_create(owner=User.objects.get(username="alice"))
    return live_stack, session, conversation


def start_reply(chat, text: str) -> Completion:
    stack, session, conversation = chat
    response = post(session, stack.url, f"/c/{conversation.pk}/messages/", content=text)
    assert response.status_code == 200, response.text[:500]
    return wait_for(
        lambda: Completion.objects.filter(conversation=conversation).order_by("-pk").first(),
        what="the completion row",
    )


def open_events(chat, completion: Completion) -> requests.Response:
    stack, session, conversation = chat
    response = session.get(
        f"{stack.url}/c/{conversation.pk}/completions/{completion.pk}/events/",
        stream=True,
        timeout=30,
    )
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return response


def test_the_first_words_arrive_before_the_reply_is_complete(chat):
    stack = chat[0]
    stack.simulator.control(token_delay=0.08)
    completion = start_reply(chat, "Stream this to me")
    stream = open_events(chat, completion)
    seen, done = [], None
    for event, data in events(stream):
        if event == "text-0" and not seen:
            completion.refresh_from_db()
            assert completion.status == Completion.Status.RUNNING  # still being written
        if event == "text-0":
            seen.append(visible_text(data))
        if event == "done":
            done = data
            break
    reply = Message.objects.get(completion=completion)
    assert len(seen) > 3
    assert all(reply.content.startswith(part) for part in seen)
    # The last event is the ended reply as the page shows it: the whole text, once.
    assert 'data-role="assistant"' in done
    assert visible_text(done).count(reply.content) == 1


def test_a_reader_that_comes_back_mid_reply_gets_all_of_it_exactly_once(chat):
    stack = chat[0]
    stack.simulator.control(token_delay=0.08)
    completion = start_reply(chat, "Survive a reload")
    first = open_events(chat, completion)
    before = []
    for event, data in events(first):
        if event == "text-0":
            before.append(visible_text(data))
        if len(before) == 3:
            break
    first.close()  # the page is reloaded
    second = list(events(open_events(chat, completion)))
    after = [visible_text(d) for e, d in second if e == "text-0"]
    done = next(d for e, d in second if e == "done")
    reply = Message.objects.get(completion=completion)
    assert after[0].startswith(before[-1])  # resumes with everything so far
    assert visible_text(done).count(reply.content) == 1
    assert reply.content.count("Survive a reload") == 1


def test_stop_ends_the_upstream_call_and_keeps_the_partial_text(chat):
    stack, session, conversation = chat
    stack.simulator.control(token_delay=0.2)
    completion = start_reply(chat, "A long story please")
    stream = events(open_events(chat, completion))
    for event, _ in stream:
        if event == "text-0":
            break
    response = post(session, stack.url, f"/c/{conversation.pk}/completions/{completion.pk}/stop/")
    assert response.status_code == 204
    wait_for(
        lambda: stack.simulator.stats()["streams_disconnected"] == 1,
        timeout=2,
        what="the upstream connection to close",
    )
    [done] = [d for e, d in stream if e == "done"]
    reply = Message.objects.get(completion=completion)
    assert reply.status == Message.Status.STOPPED and reply.content
    assert "Stopped before the end." in done
    assert reply.content in visible_text(done)


@pytest.mark.parametrize("live_stack_env", [{"STREAM_HEARTBEAT_SECONDS": "0.3"}])
def test_a_quiet_stream_keeps_alive_until_the_reply_comes(chat):
    """Nothing to send for a while (a slow first token): comments keep the stream open,
    and it gives its database connection back each time it looks (#9's production path)."""
    stack = chat[0]
    stack.simulator.control(latency=1.5)
    completion = start_reply(chat, "/echo after a pause")
    lines = []
    for raw in open_events(chat, completion).iter_lines(chunk_size=1, decode_unicode=True):
        lines.append(raw)
        if raw == "event: done":
            break
    assert ": keep-alive" in lines
    assert "event: done" in lines
    assert "Traceback" not in stack.web_log.read_text()


@pytest.mark.parametrize("live_stack_env", [{"REDIS_URL": ""}])
def test_replies_stream_from_the_database_without_redis(chat):
    """The embedded channel on whatever database this run uses (PostgreSQL in CI's second
    pass), which is also where a stream falls back to when Redis goes away."""
    stack = chat[0]
    stack.simulator.control(token_delay=0.05)
    completion = start_reply(chat, "Stream this from the database")
    texts, done = [], None
    for event, data in events(open_events(chat, completion)):
        if event == "text-0":
            texts.append(visible_text(data))
        if event == "done":
            done = data
            break
    reply = Message.objects.get(completion=completion)
    assert texts and all(reply.content.startswith(text) for text in texts)
    assert visible_text(done).count(reply.content) == 1
    assert "Traceback" not in stack.web_log.read_text()


def test_events_of_another_users_reply_are_404(chat):
    stack, _, conversation = chat
    completion = start_reply(chat, "mine")
    User.objects.create_user("bob", password="bob-password-1")
    bob = logged_in_session(stack.url, "bob", "bob-password-1")
    url = f"{stack.url}/c/{conversation.pk}/completions/{completion.pk}"
    assert bob.get(f"{url}/events/", timeout=10).status_code == 404
    assert (
        post(bob, stack.url, f"/c/{conversation.pk}/completions/{completion.pk}/stop/").status_code
        == 404
    )


def test_healthz_stays_fast_while_a_reader_follows_a_huge_reply(chat):
    """Markdown is rendered off the event loop: the process keeps answering while one
    reader follows a 100 KB reply full of links (issue 13, defect 7)."""
    import threading

    stack = chat[0]
    links = "".join(f"See [page {i}](https://example.com/{i}) and **{i}**. " for i in range(2200))
    stack.simulator.control(faults=[{"kind": "content", "content": links}])
    completion = start_reply(chat, "A long one please")
    stream = open_events(chat, completion)
    seen = {"text": 0, "done": False}

    def read() -> None:
        # Whole chunks, not line by line: this process also runs the simulator.
        tail = ""
        for chunk in stream.iter_content(chunk_size=None, decode_unicode=True):
            tail = tail[-20:] + chunk
            seen["text"] += tail.count("event: text-0")
            if "event: done" in tail:
                seen["done"] = True
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for(lambda: seen["text"], timeout=30, what="the reply to stream")
    slowest = 0.0
    deadline = time.monotonic() + 120
    while reader.is_alive() and time.monotonic() < deadline:
        started = time.monotonic()
        assert requests.get(f"{stack.url}/healthz", timeout=10).status_code == 200
        slowest = max(slowest, time.monotonic() - started)
    reader.join(timeout=5)
    assert seen["done"]
    # Rendered on the loop, one such reader held /healthz for seconds at a time.
    assert slowest < 0.5, f"/healthz took {slowest:.2f}s while the reply streamed"
