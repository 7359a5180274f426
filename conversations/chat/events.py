"""Server-Sent Events for a reply being written: an async view served under ASGI.

Every text event carries a choice's whole reply so far, rendered and sanitized, so a reader
that joins late (a reload, another tab, another web process) shows it exactly once, with
nothing missing. What the events say comes from the reply channel (chat.channel).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.views.decorators.http import require_POST

from conversations.shared.rendering import render_markdown

from . import channel, replies, selectors
from .models import Completion
from .services import conversations as services

logger = logging.getLogger(__name__)


def sse(event: str, data: str = "") -> str:
    """One SSE event; each line of `data` gets its own `data:` field."""
    lines = data.split("\n") if data else [""]
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


async def completion_events(request: HttpRequest, pk: int, cid: int) -> HttpResponse:
    user = await request.auser()
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    live = channel.reply_channel()
    completion = await sync_to_async(_completion_for)(user, pk, cid, live)
    response = StreamingHttpResponse(
        _events(request, completion, live), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not hold events back
    return response


def _completion_for(user, pk: int, cid: int, live: channel.DatabaseChannel) -> Completion:
    completion = selectors.get_completion_for_user(user, pk, cid)
    if live.reader_releases_connection:
        # The stream may stay open for minutes: hold no database connection meanwhile.
        connection.close()
    return completion


async def _events(
    request: HttpRequest, completion: Completion, live: channel.DatabaseChannel
) -> AsyncIterator[str]:
    pacer = channel.Pacer()
    try:
        async for update in live.follow(completion, pacer):
            if isinstance(update, channel.Texts):
                yield await _text_events(update.texts, pacer)
            elif isinstance(update, channel.Status):
                yield _status_event(update.state)
            elif isinstance(update, channel.KeepAlive):
                yield ": keep-alive\n\n"
            else:
                yield await _done_event(request, completion.pk, live)
                return
    except DatabaseError:
        # The stream ends cleanly; the page connects again (or polls) once it is back.
        logger.warning("Reply %s: the database is unavailable; stream closed", completion.pk)


# Markdown is CPU work: it is rendered off the event loop, which serves every other stream.
_render = sync_to_async(render_markdown, thread_sensitive=False)


async def _text_events(texts: dict[int, str], pacer: channel.Pacer) -> str:
    """One round: an event per choice, each with that choice's whole text so far."""
    started = time.monotonic()
    events = [sse(f"text-{index}", str(await _render(text))) for index, text in texts.items()]
    pacer.sent(cost=time.monotonic() - started)
    return "".join(events)


def _status_event(state: str) -> str:
    html = render_to_string("conversations/chat.html#working", {"state": state})
    return sse("status", html.strip())


async def _done_event(request: HttpRequest, completion_id: int, live) -> str:
    """The last event: the ended reply's HTML, which the page swaps in for the live one."""
    html = await sync_to_async(_render_ended)(request, completion_id, live)
    return sse("done", html)


def _render_ended(request: HttpRequest, completion_id: int, live) -> str:
    completion = Completion.objects.select_related("conversation", "request_message").get(
        pk=completion_id
    )
    try:
        return replies.render_ended(request, completion)
    finally:
        if live.reader_releases_connection:
            connection.close()


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
