"""What an ended completion shows, in the page and in the last event of its stream: its
reply (partial text too, when a stream broke) and, for a failure, the error and Retry."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import translation

from conversations.accounts.selectors import site_settings

from . import selectors
from .models import Completion, Conversation, Message
from .selectors import Reply

TEMPLATE = "conversations/chat.html"


def title_coming(completion: Completion) -> bool:
    """Whether a title call follows this reply (a conversation's first, ended well, with
    titles made by the model on): the ended reply then asks for the new title
    (services/titles), and the worker sends the call."""
    if completion.purpose != Completion.Purpose.REPLY:
        return False
    if completion.status != Completion.Status.SUCCEEDED:
        return False
    asked = completion.request_body.get("messages") or []
    if sum(1 for m in asked if m.get("role") == "user") != 1:
        return False
    return settings.MODEL_TITLES and site_settings().model_titles


def _context(completion: Completion, conversation: Conversation, reply: Reply) -> dict:
    return {
        "conversation": conversation,
        "reply": reply if reply.choices else None,
        "failed": completion if completion.status == Completion.Status.FAILED else None,
        "title_coming": title_coming(completion),
    }


def ended_context(completion: Completion) -> dict:
    """What an ended completion shows: its reply (partial text too, when a stream broke),
    and for a failure the error with its Retry button."""
    return _context(completion, completion.conversation, selectors.completion_reply(completion))


def render_ended(request: HttpRequest | None, completion: Completion) -> str:
    """The ended completion's HTML, for the `done` event of its reply stream (its forms
    carry no CSRF field without a request: htmx sends the token in a header)."""
    return render_to_string(f"{TEMPLATE}#ended", ended_context(completion), request=request)


def ended_html(completion: Completion, choices: list[Message]) -> dict[str, str]:
    """The ended reply's HTML in every language of the site, from the rows as the worker
    has just saved them (no query): the event stream sends it on as it is."""
    conversation = Conversation(pk=completion.conversation_id)
    context = _context(completion, conversation, selectors.reply_of(completion, choices))
    html = {}
    for language, _name in settings.LANGUAGES:
        with translation.override(language):
            html[language] = render_to_string(f"{TEMPLATE}#ended", context)
    return html
