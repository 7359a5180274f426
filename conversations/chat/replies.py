"""What an ended completion shows, in the page and in the last event of its stream: its
reply (partial text too, when a stream broke) and, for a failure, the error and Retry."""

from __future__ import annotations

from django.http import HttpRequest
from django.template.loader import render_to_string

from . import selectors
from .models import Completion

TEMPLATE = "conversations/chat.html"


def ended_context(completion: Completion) -> dict:
    """What an ended completion shows: its reply (partial text too, when a stream broke),
    and for a failure the error with its Retry button."""
    reply = selectors.completion_reply(completion)
    return {
        "conversation": completion.conversation,
        "reply": reply if reply.choices else None,
        "failed": completion if completion.status == Completion.Status.FAILED else None,
    }


def render_ended(request: HttpRequest, completion: Completion) -> str:
    """The ended completion's HTML, for the `done` event of its reply stream."""
    return render_to_string(f"{TEMPLATE}#ended", ended_context(completion), request=request)
