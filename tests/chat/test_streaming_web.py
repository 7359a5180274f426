"""The reply's Server-Sent Events, from uvicorn (ASGI), the real worker and the simulator."""

from __future__ import annotations

import html
import re
import time

import pytest
import requests
from django.conf import settings
from django.contrib.auth.models import User

from conversations.chat.services import conversations as chat_services
from conversations.models import Completion, Message
from tests.http import Shown, events, events_with_ids, logged_in_session, post, visible_text
from tests.support import wait_for

pytestmark = pytest.mark.worker


@pytest.fixture
def chat(live_stack):
    User.objects.create_user("alice", password="alice-password-1")
    session = logged_in_session(live_stack.url, "alice", "alice-password-1")
    conversation = chat_services.conversation_create(owner=User.objects.get(username="alice"))
    return live_stack, session, conversation


class Started:
    """A reply the page asked for, with the event stream URL the page was given."""

    def __init__(self, completion: Completion, url: str) -> None:
        self.completion, self.url = completion, url
        self.pk = completion.pk


def start_reply(chat, text: str) -> Started:
    stack, session, conversation = chat
    response = post(session, stack.url, f"/c/{conversation.pk}/messages/", content=text)
    assert response.status_code == 200, response.text[:500]
    completion = wait_for(
        lambda: Completion.objects.filter(conversation=conversation).order_by("-pk").first(),
        what="the completion row",
    )
    [url] = re.findall(r'sse-connect="([^"]+)"', response.text)
    return Started(completion, html.unescape(url))


def open_events(chat, url: str, **headers) -> requests.Response:
    stack, session, _ = chat
    response = session.get(f"{stack.url}{url}", stream=True, timeout=30, headers=headers)
    assert response.status_code == 200, response.status_code
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return response


def without_token(started: Started) -> str:
    return started.url.partition("?")[0]


def test_the_first_words_arrive_before_the_reply_is_complete(chat):
    stack = chat[0]
    stack.simulator.control(token_delay=0.08)
    started = start_reply(chat, "Stream this to me")
    assert "?t=" in started.url  # served ahead of Django, for this session
    shown, kinds, seen, done = Shown(), [], [], None
    for event, data in events(open_events(chat, started.url)):
        now = shown.apply(event, data)
        if now is not None and not seen:
            started.completion.refresh_from_db()
            assert started.completion.status == Completion.Status.RUNNING  # still being written
        if now is not None:
            kinds.append(event)
            seen.append(now)
        if event == "done":
            done = data
            break
    reply = Message.objects.get(completion=started.completion)
    assert len(seen) > 3
    assert all(reply.content.startswith(part) for part in seen)
    # The whole text once, then only what was added: the stream grows with the reply.
    assert kinds[0] == "reset-0" and set(kinds[1:]) == {"text-0"}, kinds
    # The last event is the ended reply as the page shows it: the whole text, once.
    assert 'data-role="assistant"' in done
    assert visible_text(done).count(reply.content) == 1


def test_a_reader_that_comes_back_mid_reply_gets_all_of_it_exactly_once(chat):
    stack = chat[0]
    stack.simulator.control(token_delay=0.08)
    started = start_reply(chat, "Survive a reload")
    before = Shown()
    for event, data in events(open_events(chat, started.url)):
        before.apply(event, data)
        if len(before.texts.get(0, "")) > 10:
            break  # the page is reloaded
    second = list(events(open_events(chat, started.url)))
    kinds = [event for event, _ in second if event.endswith("-0")]
    after = Shown()
    for event, data in second:
        after.apply(event, data)
    done = next(d for e, d in second if e == "done")
    reply = Message.objects.get(completion=started.completion)
    assert kinds[0] == "reset-0"  # a page loaded again is sent everything so far
    assert after.texts[0].startswith(before.texts[0])
    assert reply.content.startswith(after.texts[0])
    assert visible_text(done).count(reply.content) == 1
    assert reply.content.count("Survive a reload") == 1


@pytest.mark.skipif(not settings.REDIS_URL, reason="event ids come from the Redis stream")
def test_a_reconnecting_stream_goes_on_from_its_last_event_id(chat):
    """What the browser's EventSource does when a connection drops: it sends the last id it
    had, and is sent only what came after (no text twice, none missing)."""
    stack = chat[0]
    stack.simulator.control(token_delay=0.08)
    started = start_reply(chat, "Reconnect please")
    shown, last_id = Shown(), None
    for event, data, event_id in events_with_ids(open_events(chat, started.url)):
        if shown.apply(event, data) is not None:
            last_id = event_id
        if len(shown.texts.get(0, "")) > 10:
            break  # the connection drops
    assert last_id
    resumed = list(events_with_ids(open_events(chat, started.url, **{"Last-Event-ID": last_id})))
    kinds = [event for event, _, _ in resumed if event.endswith("-0")]
    for event, data, _ in resumed:
        shown.apply(event, data)
    reply = Message.objects.get(completion=started.completion)
    assert kinds and set(kinds) == {"text-0"}, kinds  # pieces only: the page has the rest
    assert reply.content.startswith(shown.texts[0])
    assert len(shown.texts[0]) > len(reply.content) // 2


def test_a_url_without_a_valid_token_is_served_by_django_with_the_session(chat):
    """A token is good only with the session it was made for, for its own reply; else
    Django's view answers (the session says who is asking), with the same events."""
    stack = chat[0]
    stack.simulator.control(token_delay=0.02)
    started = start_reply(chat, "Either way")
    plain = list(events(open_events(chat, without_token(started))))
    assert plain[-1][0] == "done"
    # Another browser with the token but its own (anonymous) session: sent to log in.
    stranger = requests.Session()
    answer = stranger.get(f"{stack.url}{started.url}", timeout=10, allow_redirects=False)
    assert answer.status_code == 302 and "/accounts/login/" in answer.headers["Location"]
    # The token of one reply does not open another.
    other = start_reply(chat, "Another")
    token = started.url.partition("?")[2]
    swapped = f"{without_token(other)}?{token}"
    assert list(events(open_events(chat, swapped)))[-1][0] == "done"  # Django's view, own user
    User.objects.create_user("bob", password="bob-password-1")
    bob = logged_in_session(stack.url, "bob", "bob-password-1")
    assert bob.get(f"{stack.url}{started.url}", timeout=10).status_code == 404


@pytest.mark.parametrize("live_stack_env", [{"STREAM_HEARTBEAT_SECONDS": "0.3"}])
def test_a_quiet_stream_keeps_alive_until_the_reply_comes(chat):
    """Nothing to send for a while (a slow first token): comments keep the stream open,
    and it gives its database connection back each time it looks (#9's production path)."""
    stack = chat[0]
    stack.simulator.control(latency=1.5)
    started = start_reply(chat, "/echo after a pause")
    lines = []
    for raw in open_events(chat, started.url).iter_lines(chunk_size=1, decode_unicode=True):
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
    started = start_reply(chat, "Stream this from the database")
    shown, texts, kinds, done = Shown(), [], [], None
    for event, data in events(open_events(chat, started.url)):
        if (now := shown.apply(event, data)) is not None:
            texts.append(now)
            kinds.append(event)
        if event == "done":
            done = data
            break
    reply = Message.objects.get(completion=started.completion)
    assert kinds[0] == "reset-0" and set(kinds[1:]) <= {"text-0"}, kinds
    assert texts and all(reply.content.startswith(text) for text in texts)
    assert visible_text(done).count(reply.content) == 1
    assert "Traceback" not in stack.web_log.read_text()


def test_events_of_another_users_reply_are_404(chat):
    stack, _, conversation = chat
    started = start_reply(chat, "mine")
    User.objects.create_user("bob", password="bob-password-1")
    bob = logged_in_session(stack.url, "bob", "bob-password-1")
    assert bob.get(f"{stack.url}{without_token(started)}", timeout=10).status_code == 404
    stop = f"/c/{conversation.pk}/completions/{started.pk}/stop/"
    assert post(bob, stack.url, stop).status_code == 404


def test_healthz_stays_fast_while_a_reader_follows_a_huge_reply(chat):
    """The process keeps answering while one reader follows a 100 KB reply full of links
    (issue 13, defect 7): live text is sent as it is, and the ended reply's Markdown is
    rendered by the worker, never on the event loop."""
    import threading

    stack = chat[0]
    links = "".join(f"See [page {i}](https://example.com/{i}) and **{i}**. " for i in range(2200))
    stack.simulator.control(faults=[{"kind": "content", "content": links}])
    started = start_reply(chat, "A long one please")
    stream = open_events(chat, started.url)
    seen = {"text": 0, "done": False}

    def read() -> None:
        # Whole chunks, not line by line: this process also runs the simulator.
        tail = ""
        for chunk in stream.iter_content(chunk_size=None, decode_unicode=True):
            tail = tail[-20:] + chunk
            seen["text"] += tail.count("event: text-0") + tail.count("event: reset-0")
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
