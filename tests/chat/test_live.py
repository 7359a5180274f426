"""The reply's event stream served ahead of Django (chat.live, issue 15): a URL with a
valid token is answered without middleware, session or user lookup; anything else goes on
to Django, which checks the session."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.chat import channel, live
from conversations.chat.services import conversations as chat_services
from tests.http import split_events

pytestmark = pytest.mark.django_db(transaction=True)

SESSION = "a-session-key"


class Fallback:
    """Stands for Django's handler: records what it was handed."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def call(app, path: str, *, query: str = "", cookie: str = "", headers=()) -> tuple[int, str]:
    """One GET through the ASGI app: its status and body."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query.encode(),
        "headers": [(b"cookie", cookie.encode()), *headers],
    }
    sent = []

    async def receive():
        await asyncio.Event().wait()  # the reader stays until the stream ends

    async def send(message):
        sent.append(message)

    async def run():
        await asyncio.wait_for(app(scope, receive, send), 10)

    # In a thread of its own: the browser tests' Playwright loop may run in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, run()).result()
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body.decode()


@pytest.fixture
def ended(alice, send, enqueued, simulator):
    """A reply of alice's that the worker has saved."""
    conversation = chat_services.conversation_create(owner=alice)
    _, completion = send(conversation, "Hello there")
    enqueued.drain()
    return completion


def url_of(completion) -> str:
    return f"/c/{completion.conversation_id}/completions/{completion.pk}/events/"


def token(completion, *, user=None, session=SESSION, language="en") -> str:
    return live.token_for(
        user_id=(user or completion.user).pk,
        completion_id=completion.pk,
        session_key=session,
        language=language,
    )


def cookie(session=SESSION) -> str:
    return f"{settings.SESSION_COOKIE_NAME}={session}"


def test_a_valid_token_is_served_without_django_in_one_query(ended):
    fallback = Fallback()
    app = live.application(fallback=fallback)
    with CaptureQueriesContext(connection) as queries:
        status, body = call(app, url_of(ended), query=f"t={token(ended)}", cookie=cookie())
    assert status == 200 and fallback.paths == []
    [(event, html, _)] = split_events(body)
    assert event == "done" and 'data-role="assistant"' in html
    # The reply, and (the database channel carries no ended HTML) the ended reply to render.
    queries_by_reader = [q for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(queries_by_reader) <= (1 if channel.reply_channel().carries_ended_html else 4)


def test_the_token_speaks_the_readers_language(ended):
    app = live.application(fallback=Fallback())
    query = f"t={token(ended, language='zh-hans')}"
    _, body = call(app, url_of(ended), query=query, cookie=cookie())
    assert "助手回复" in body  # "Assistant's reply", for screen readers
    _, english = call(app, url_of(ended), query=f"t={token(ended)}", cookie=cookie())
    assert "Assistant" in english and "助手" not in english


@pytest.mark.parametrize(
    "how",
    ["no token", "bad signature", "other session", "no cookie", "other reply", "expired"],
)
def test_anything_but_a_valid_token_goes_on_to_django(ended, how, settings):
    fallback = Fallback()
    app = live.application(fallback=fallback)
    query, jar = f"t={token(ended)}", cookie()
    path = url_of(ended)
    if how == "no token":
        query = ""
    elif how == "bad signature":
        query = query[:-2] + ("AA" if not query.endswith("AA") else "BB")
    elif how == "other session":
        jar = cookie("someone-elses-session")
    elif how == "no cookie":
        jar = ""
    elif how == "other reply":
        path = f"/c/{ended.conversation_id}/completions/{ended.pk + 1}/events/"
    else:
        settings.LIVE_TOKEN_SECONDS = -1
    status, _ = call(app, path, query=query, cookie=jar)
    assert status == 418 and fallback.paths == [path]


def test_a_token_for_someone_elses_reply_is_404(ended, bob):
    """A token made (say, by a bug) for bob and alice's reply opens nothing."""
    app = live.application(fallback=Fallback())
    status, body = call(app, url_of(ended), query=f"t={token(ended, user=bob)}", cookie=cookie())
    assert status == 404 and body == ""


def test_other_paths_and_methods_go_on_to_django(ended):
    fallback = Fallback()
    app = live.application(fallback=fallback)
    assert call(app, "/healthz")[0] == 418
    assert call(app, f"{url_of(ended)}x", query=f"t={token(ended)}", cookie=cookie())[0] == 418
    assert fallback.paths == ["/healthz", f"{url_of(ended)}x"]


def test_the_ended_html_the_worker_sent_along_is_sent_on_without_a_query(ended):
    class Ending(channel.DatabaseChannel):
        async def follow(self, completion, pacer, *, resume=None):
            yield channel.Texts({0: "Hel"}, frozenset({0}), "1-0.1")
            yield channel.Texts({0: "lo"}, frozenset(), "2-0.1")
            yield channel.Ended({"en": "<li>ended</li>", "zh-hans": "<li>结束</li>"})

    async def read() -> str:
        stream = live.events(ended, Ending(), language="zh-hans", resume=None)
        return "".join([text async for text in stream])

    with CaptureQueriesContext(connection) as queries, ThreadPoolExecutor(1) as pool:
        body = pool.submit(asyncio.run, read()).result()
    assert queries.captured_queries == []
    assert split_events(body) == [
        ("reset-0", "Hel", "1-0.1"),
        ("text-0", "lo", "2-0.1"),
        ("done", "<li>结束</li>", None),
    ]


def test_text_with_line_breaks_and_carriage_returns_survives_the_stream():
    body = live.sse("text-0", "one\r\ntwo\rthree\n\nfour", "5-0.1")
    assert split_events(body) == [("text-0", "one\ntwo\nthree\n\nfour", "5-0.1")]
