"""The views of a reply being written: its event stream for a URL without a token (an
async view; live.py has the events and serves the URLs with one), and Stop."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from . import channel, selectors
from .live import events
from .models import Completion
from .services import conversations as services

logger = logging.getLogger(__name__)


async def completion_events(request: HttpRequest, pk: int, cid: int) -> HttpResponse:
    """The reply's event stream for a URL without a valid token (live.py serves those that
    have one, ahead of Django): the session says who is asking."""
    user = await request.auser()
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    live = channel.reply_channel()
    completion = await sync_to_async(_completion_for)(user, pk, cid, live)
    stream = events(
        completion,
        live,
        language=request.LANGUAGE_CODE,
        resume=request.headers.get("Last-Event-ID"),
    )
    response = StreamingHttpResponse(
        _closing(stream, completion.pk), content_type="text/event-stream"
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


async def _closing(stream: AsyncIterator[str], completion_id: int) -> AsyncIterator[str]:
    try:
        async for text in stream:
            yield text
    except DatabaseError:
        # The stream ends cleanly; the page connects again (or polls) once it is back.
        logger.warning("Reply %s: the database is unavailable; stream closed", completion_id)


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
