"""Server-Sent Events for a reply being written: an async view served under ASGI.

Every event carries the whole reply so far, rendered and sanitized, so a reader that
joins late (a reload, another tab, another web process) shows it exactly once, with
nothing missing. The text comes from the reply's Redis Stream when REDIS_URL is set,
replayed from its start, else from the database rows the worker keeps up to date.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.db import connection
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.views.decorators.http import require_POST

from . import selectors, services, streams
from .models import Completion, Message
from .rendering import render_markdown
from .views import render_ended

logger = logging.getLogger(__name__)

# A reader gives up after this long; the page's fallback poll takes over.
MAX_STREAM_SECONDS = 600.0


def sse(event: str, data: str = "") -> str:
    """One SSE event; each line of `data` gets its own `data:` field."""
    lines = data.split("\n") if data else [""]
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


class TextEvents:
    """Text events of one reader, rendered off the event loop (Markdown is CPU work), at
    most one round per STREAM_EVENT_MIN_INTERVAL and rarer as renders grow dearer with the
    reply's length, so one reader of a huge reply takes a bounded share of a core."""

    def __init__(self) -> None:
        self.last = 0.0
        self.cost = 0.0

    @property
    def interval(self) -> float:
        return max(settings.STREAM_EVENT_MIN_INTERVAL, 4 * self.cost)

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.interval

    async def render(self, texts: dict[int, str]) -> list[str]:
        """One round: an event per choice, each with that choice's whole text so far."""
        started = time.monotonic()
        events = [sse(f"text-{index}", str(await _render(text))) for index, text in texts.items()]
        self.last = time.monotonic()
        self.cost = self.last - started
        return events


_render = sync_to_async(render_markdown, thread_sensitive=False)


@dataclass
class LiveText:
    """A reply's text as its Redis Stream tells it, for the attempt in force: entries of an
    earlier attempt (a worker that died mid-reply) are dropped, and a newer attempt starts
    the text again, so a retry never shows the text twice."""

    attempt: int = 0
    contents: dict[int, str] = field(default_factory=dict)
    unsent: set[int] = field(default_factory=set)

    def _current(self, fields: dict[str, str]) -> bool:
        attempt = int(fields.get("a") or 0)
        if attempt < self.attempt:
            return False
        if attempt > self.attempt:
            self.attempt = attempt
            for index in self.contents:
                self.contents[index] = ""
                self.unsent.add(index)
        return True

    def add(self, fields: dict[str, str]) -> str | None:
        """Take one entry in; returns the state it announces ("running"...), if any."""
        if not self._current(fields):
            return None
        if "s" in fields:
            return fields["s"]
        index = int(fields["i"])
        self.contents[index] = self.contents.get(index, "") + fields["d"]
        self.unsent.add(index)
        return None

    def take_unsent(self) -> dict[int, str]:
        texts = {index: self.contents[index] for index in sorted(self.unsent)}
        self.unsent.clear()
        return texts


async def completion_events(request: HttpRequest, pk: int, cid: int) -> HttpResponse:
    user = await request.auser()
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    completion = await sync_to_async(_completion_for)(user, pk, cid)
    source = _redis_events if streams.redis_client() is not None else _database_events
    response = StreamingHttpResponse(source(request, completion), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not hold events back
    return response


def _close_connection() -> None:
    # `connection` is per thread: it must be looked up in the thread that closes it, not
    # where sync_to_async is called (the event loop's), or Django refuses the close.
    connection.close()


def _completion_for(user, pk: int, cid: int) -> Completion:
    completion = selectors.get_completion_for_user(user, pk, cid)
    if streams.redis_client() is not None:
        # The stream may stay open for minutes: hold no database connection meanwhile.
        connection.close()
    return completion


@login_required
@require_POST
def completion_stop(request: HttpRequest, pk: int, cid: int) -> HttpResponse:
    """Stop the reply: the worker cuts the upstream call and keeps the partial text."""
    completion = selectors.get_completion_for_user(request.user, pk, cid)
    services.completion_stop(completion=completion)
    if request.htmx:
        # The open event stream (or the poll) shows the stopped reply when it is saved.
        return HttpResponse(status=204)
    return redirect("conversation_detail", pk=pk)


@dataclass
class Snapshot:
    """A completion as the database has it now."""

    status: str  # a Completion status, or "stopped"
    live_state: str  # "queued", "retrying" or "running" while active
    contents: dict[int, str]

    @property
    def active(self) -> bool:
        return self.status in Completion.ACTIVE


async def _snapshot(completion_id: int) -> Snapshot:
    row = (
        await Completion.objects.filter(pk=completion_id)
        .only("status", "stop_requested", "attempts")
        .afirst()
    )
    contents = {
        index: content
        async for index, content in Message.objects.filter(completion_id=completion_id)
        .order_by("choice_index")
        .values_list("choice_index", "content")
    }
    if row is None:  # deleted with its conversation
        return Snapshot(Completion.Status.FAILED, "running", contents)
    status = row.status
    if status == Completion.Status.SUCCEEDED and row.stop_requested:
        status = "stopped"
    return Snapshot(status, row.live_state, contents)


def _status_event(state: str) -> str:
    html = render_to_string("conversations/chat.html#working", {"state": state})
    return sse("status", html.strip())


async def _done_event(request: HttpRequest, completion_id: int) -> str:
    """The last event: the ended reply's HTML, which the page swaps in for the live one."""
    html = await sync_to_async(_render_ended)(request, completion_id)
    return sse("done", html)


def _render_ended(request: HttpRequest, completion_id: int) -> str:
    completion = Completion.objects.select_related("conversation", "request_message").get(
        pk=completion_id
    )
    try:
        return render_ended(request, completion)
    finally:
        if streams.redis_client() is not None:
            connection.close()


async def _database_events(request: HttpRequest, completion: Completion) -> AsyncIterator[str]:
    sent: dict[int, str] = {}
    sent_state = None  # the page may show an older state than the one at connection time
    started = last_beat = time.monotonic()
    text_events = TextEvents()
    pooled = connection.vendor != "sqlite"
    while True:
        now = await _snapshot(completion.pk)
        if pooled:
            # Give the connection back between looks: many streams share a small pool.
            await sync_to_async(_close_connection)()
        if now.active and now.live_state != sent_state:
            sent_state = now.live_state
            yield _status_event(now.live_state)
        # Each event re-renders the whole reply: at most one round per interval (the
        # first at once). A retry starts the text again: then it is sent shorter, or empty.
        changed = {i: t for i, t in now.contents.items() if sent.get(i, "") != t}
        if now.active and changed and text_events.due():
            sent |= changed
            for event in await text_events.render(changed):
                yield event
        moment = time.monotonic()
        if not now.active:
            yield await _done_event(request, completion.pk)
            return
        if moment - started > MAX_STREAM_SECONDS:
            return
        if moment - last_beat > settings.STREAM_HEARTBEAT_SECONDS:
            last_beat = moment
            yield ": keep-alive\n\n"
        await asyncio.sleep(settings.STREAM_POLL_INTERVAL)


_async_redis = None


def _redis():
    global _async_redis
    if _async_redis is None:
        import redis.asyncio

        # A blocking XREAD waits up to a heartbeat: the socket must wait longer than that.
        _async_redis = redis.asyncio.Redis.from_url(
            settings.REDIS_URL,
            decode_responses=True,
            socket_timeout=settings.STREAM_HEARTBEAT_SECONDS + 10,
        )
    return _async_redis


async def _redis_events(request: HttpRequest, completion: Completion) -> AsyncIterator[str]:
    """Replay the reply's stream from its start, then follow it until its end entry."""
    redis = _redis()
    key = streams.stream_key(completion.pk)
    live = LiveText()
    last_id = "0-0"
    if completion.is_active:
        yield _status_event(completion.live_state)
    started = time.monotonic()
    text_events = TextEvents()
    while time.monotonic() - started < MAX_STREAM_SECONDS:
        if live.unsent:
            # Text is waiting for its turn: wake at the end of the interval at the latest,
            # or at once for the end entry (one render per interval, however fast tokens come).
            gap = text_events.interval - (time.monotonic() - text_events.last)
            block = max(1, int(gap * 1000))
        else:
            block = int(settings.STREAM_HEARTBEAT_SECONDS * 1000)
        try:
            batches = await redis.xread({key: last_id}, block=block)
        except Exception:  # Redis gone: the database still has the text
            logger.warning(
                "Redis unavailable for reply %s; reading the database", completion.pk, exc_info=True
            )
            async for event in _database_events(request, completion):
                yield event
            return
        if not batches and not live.unsent:
            # Nothing for a while: the reply may have ended before its stream began
            # (or the stream expired); the database knows.
            now = await _snapshot(completion.pk)
            await sync_to_async(_close_connection)()
            if not now.active:
                yield await _done_event(request, completion.pk)
                return
            yield ": keep-alive\n\n"
            continue
        ended = state = None
        for _key, entries in batches:
            for entry_id, fields in entries:
                last_id = entry_id
                if "end" in fields:
                    ended = fields["end"]
                else:
                    state = live.add(fields) or state
        if ended is not None:
            yield await _done_event(request, completion.pk)
            return
        if state is not None:
            yield _status_event(state)
        if live.unsent and text_events.due():
            for event in await text_events.render(live.take_unsent()):
                yield event
