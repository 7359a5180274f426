"""A reply's Server-Sent Events: text deltas as they come, then the ended reply.

The page appends each `text-<i>` event's data to choice i as plain text and replaces the
text with a `reset-<i>` event's (a late reader's whole text so far, or a retry starting
again); a choice's text starts with its reasoning in a <think> block when it has some
(services/attempts.py), which the page shows apart, as "Thinking". Nothing is rendered
until the `done` event brings the ended reply's HTML, made once by the worker. With
Redis every text event carries an `id`, so a reader that reconnects (`Last-Event-ID`)
goes on from there and never shows text twice.

The stream is served by `application`, ahead of Django (chatsite/asgi.py): its URL carries
a signed token for that user, session, completion and language, so no middleware, session
or user lookup runs, and no thread hop per event. A URL without a valid token goes on to
Django's own view (events.py), which checks the session instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signing
from django.db import DatabaseError, connection
from django.template.loader import render_to_string
from django.utils import translation

from conversations.shared.asgi import disconnected, header

from . import channel, replies
from .models import Completion

logger = logging.getLogger(__name__)

PATH = re.compile(r"^/c/(\d+)/completions/(\d+)/events/$")
SALT = "conversations.chat.live"


def sse(event: str, data: str = "", event_id: str | None = None) -> str:
    """One SSE event; each line of `data` gets its own `data:` field (a CR would end a
    line for the browser: it is sent as a line break)."""
    data = data.replace("\r\n", "\n").replace("\r", "\n")
    head = f"id: {event_id}\n" if event_id else ""
    return (
        f"{head}event: {event}\n" + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n"
    )


# --- The URL's token ---


def _session_mark(session_key: str | None) -> str:
    return hashlib.sha256((session_key or "").encode()).hexdigest()[:24]


def token_for(*, user_id: int, completion_id: int, session_key: str | None, language: str) -> str:
    """What the page puts in the event stream's URL: who may read which reply, in which
    browser session (a copied URL is worth nothing without the session's cookie), in
    which language."""
    claims = {"u": user_id, "c": completion_id, "s": _session_mark(session_key), "l": language}
    return signing.dumps(claims, salt=SALT)


def _claims(scope: dict, completion_id: int) -> dict | None:
    token = (parse_qs(scope.get("query_string", b"").decode()).get("t") or [""])[0]
    if not token:
        return None
    try:
        claims = signing.loads(token, salt=SALT, max_age=settings.LIVE_TOKEN_SECONDS)
    except signing.BadSignature:
        return None
    cookie = SimpleCookie(header(scope, b"cookie"))
    session = cookie.get(settings.SESSION_COOKIE_NAME)
    if claims.get("c") != completion_id or claims.get("s") != _session_mark(
        session.value if session else None
    ):
        return None
    return claims


# --- Updates as events ---


async def events(
    completion: Completion, live: channel.DatabaseChannel, *, language: str, resume: str | None
) -> AsyncIterator[str]:
    """The reply's events until it ends (`resume`: the last event id the reader has)."""
    pacer = channel.Pacer()
    async for update in live.follow(completion, pacer, resume=resume):
        if isinstance(update, channel.Texts):
            yield "".join(_text_events(update))
            pacer.sent(cost=0.0)
        elif isinstance(update, channel.Status):
            yield sse("status", _working(update.state, language))
        elif isinstance(update, channel.KeepAlive):
            yield ": keep-alive\n\n"
        else:
            html = update.html.get(language) if update.html else None
            if html is None:
                html = await _ended_from_database(completion.pk, language, live)
            yield sse("done", html)
            return


def _text_events(update: channel.Texts) -> list[str]:
    return [
        sse(f"{'reset' if index in update.replaced else 'text'}-{index}", text, update.event_id)
        for index, text in update.texts.items()
    ]


@cache
def _working(state: str, language: str) -> str:
    """The "writing a reply…" line for each state and language: made once per process."""
    with translation.override(language):
        return render_to_string("conversations/chat.html#working", {"state": state}).strip()


async def _ended_from_database(completion_id: int, language: str, live) -> str:
    return await _in_thread(live, _render_ended)(completion_id, language, live)


def _render_ended(completion_id: int, language: str, live) -> str:
    try:
        completion = Completion.objects.select_related("conversation").get(pk=completion_id)
        with translation.override(language):
            return replies.render_ended(None, completion)
    finally:
        if live.reader_releases_connection:
            connection.close()


# --- The ASGI application ---


def application(*, fallback: Callable[..., Awaitable[None]]):
    """Serve event streams with a valid token; hand everything else to `fallback`."""
    live = channel.reply_channel()
    _warm_up(live)

    async def app(scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            found = PATH.match(scope["path"])
            claims = found and _claims(scope, int(found.group(2)))
            if claims and live.reader_releases_connection:
                await _serve(scope, receive, send, found, claims, live)
                return
            if claims:  # the database channel's looks run in the connection's own thread
                async with ThreadSensitiveContext():
                    await _serve(scope, receive, send, found, claims, live)
                return
        await fallback(scope, receive, send)

    return app


def _warm_up(live: channel.DatabaseChannel) -> None:
    """Load now what the first stream would otherwise load on the event loop, where every
    other request waits for it (the Redis client modules, about half a second)."""
    if isinstance(live, channel.RedisChannel):
        import redis.asyncio  # noqa: F401


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=settings.WEB_THREADS, thread_name_prefix="live")


def _in_thread(live: channel.DatabaseChannel, function: Callable) -> Callable[..., Awaitable]:
    """`function` on one of the stream's long-lived threads (with Redis: a stream holds no
    connection, so it needs no thread of its own, which costs one started per stream);
    on the connection's own thread for the database channel."""
    if live.reader_releases_connection:
        return sync_to_async(function, thread_sensitive=False, executor=_pool())
    return sync_to_async(function)


def _completion_for(conversation_id: int, completion_id: int, user_id: int, live):
    try:
        return (
            Completion.objects.filter(
                pk=completion_id, conversation_id=conversation_id, user_id=user_id
            )
            .only("pk", "status", "attempts", "conversation_id", "request_body")
            .first()
        )
    finally:
        if live.reader_releases_connection:
            connection.close()


HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store, private"),
    (b"x-accel-buffering", b"no"),  # proxies must not hold events back
    (b"x-content-type-options", b"nosniff"),
]


async def _serve(
    scope, receive, send, found: re.Match, claims: dict, live: channel.DatabaseChannel
) -> None:
    conversation_id, completion_id = int(found.group(1)), int(found.group(2))
    try:
        completion = await _in_thread(live, _completion_for)(
            conversation_id, completion_id, claims["u"], live
        )
    except DatabaseError:
        completion = None
    if completion is None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    stream = asyncio.ensure_future(_stream(send, completion, live, claims, scope))
    gone = asyncio.ensure_future(disconnected(receive))
    await asyncio.wait([stream, gone], return_when=asyncio.FIRST_COMPLETED)
    for task in (stream, gone):
        task.cancel()
    await asyncio.gather(stream, gone, return_exceptions=True)


async def _stream(send, completion, live, claims: dict, scope) -> None:
    started = time.monotonic()
    resume = header(scope, b"last-event-id") or None
    try:
        async for text in events(completion, live, language=claims["l"], resume=resume):
            await send({"type": "http.response.body", "body": text.encode(), "more_body": True})
    except DatabaseError:
        logger.warning("Reply %s: the database is unavailable; stream closed", completion.pk)
    except Exception:  # the page polls instead; the response still ends properly
        logger.exception("Reply %s: the event stream failed", completion.pk)
    finally:
        logger.debug("Reply %s stream: %.1fs", completion.pk, time.monotonic() - started)
    await send({"type": "http.response.body", "body": b""})
