"""Titles made by the model: after a conversation's first reply, a short call of its own
asks the conversation's model for a title, on the worker (the web never waits for it).

Until it answers, and whenever it fails, the first words of the first message stay the
title; a title the person gave (a rename) is never replaced. The call is stored as a
Completion with purpose "title" once it has ended (never queued or running, so it is never
pending, busy or swept), with its usage and cost, and counted in the user's budget: the
usage pages count it like any call, and the admin shows it as a title call. An
administrator turns it off in the site settings (MODEL_TITLES=0 turns it off for the whole
deployment).
"""

from __future__ import annotations

import logging
from decimal import Decimal

from celery import current_app
from django.db import transaction
from django.utils import timezone

from conversations.billing import budgets
from conversations.chat import replies
from conversations.chat.models import Completion, Conversation, Message
from conversations.upstream import protocol

from .attempts import upstream_client
from .conversations import title_from
from .results import response_fields

logger = logging.getLogger(__name__)

TITLE_CONVERSATION = "conversations.tasks.title_conversation"

TITLE_WORDS = 6
MAX_TOKENS = 24
QUESTION_CHARACTERS = 1000
ANSWER_CHARACTERS = 1000
# Its own small prompt (English for any language: it asks for the conversation's own).
PROMPT = (
    "Write a short title, at most six words, for the conversation below, in the language "
    "the user wrote in. Answer with the title alone: no quotes, no full stop."
)


def title_enqueue(completion_id: int) -> None:
    """Send the title call's task; with the broker away the first words stay the title."""
    try:
        current_app.send_task(TITLE_CONVERSATION, args=[completion_id])
    except Exception:
        logger.warning("Could not enqueue the title call after completion %s", completion_id)


def title_request(completion: Completion, reply: str) -> dict:
    asked = completion.request_body.get("messages") or []
    question = next((m["content"] for m in reversed(asked) if m.get("role") == "user"), "")
    conversation = (
        f"User: {question[:QUESTION_CHARACTERS]}\n\nAssistant: {reply[:ANSWER_CHARACTERS]}"
    )
    return protocol.build_request(
        model=completion.model,
        messages=[{"role": "system", "content": PROMPT}, {"role": "user", "content": conversation}],
        stream=False,
        max_tokens=MAX_TOKENS,
        temperature=0.2,
    )


def clean_title(text: str) -> str:
    """The model's answer as a title: one line, no quotes or "Title:", a few words."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    line = line.strip().removeprefix("Title:").removeprefix("title:").strip()
    for _ in range(2):  # quotes around a full stop, or a full stop after quotes
        line = line.strip("\"'“”‘’「」《》*#` ").rstrip(".。!！")
    # A sentence, not a title: keep its start (and no longer than a title made of words).
    return title_from(" ".join(line.split()[: TITLE_WORDS * 2]))


def conversation_title(*, completion_id: int) -> str | None:
    """Ask for the title after the reply `completion_id` (a conversation's first) and put
    it in place of the first words; the new title, or None when none was made."""
    completion = Completion.objects.select_related("conversation").filter(pk=completion_id).first()
    if completion is None or not replies.title_coming(completion):
        return None
    conversation = completion.conversation
    if not conversation.title_is_auto:
        return None
    if Completion.objects.filter(
        conversation=conversation, purpose=Completion.Purpose.TITLE
    ).exists():
        return None  # one title call per conversation (a task delivered twice)
    reply = (
        Message.objects.filter(completion=completion, is_selected=True)
        .values_list("content", flat=True)
        .first()
    )
    if not reply or budgets.exhausted(completion.user_id):
        return None
    body = title_request(completion, reply)
    started = timezone.now()
    try:
        response = upstream_client(completion.provider_id).create(body)
    except protocol.UpstreamError as error:
        logger.info("Title call for conversation %s failed: %s", conversation.pk, error)
        _record(completion, body, started=started, error=error)
        return None
    title = clean_title(response.choices[0].content if response.choices else "")
    _record(completion, body, started=started, response=response)
    if not title:
        return None
    # Only while the title is still the first words this call was made for.
    changed = Conversation.objects.filter(
        pk=conversation.pk, title_is_auto=True, title=conversation.title
    ).update(title=title)
    return title if changed else None


def _record(
    completion: Completion,
    body: dict,
    *,
    started,
    response: protocol.ChatResponse | None = None,
    error: protocol.UpstreamError | None = None,
) -> Completion:
    """The title call as a Completion row, its usage in the budget, in one transaction."""
    now = timezone.now()
    fields = {
        "conversation_id": completion.conversation_id,
        "user_id": completion.user_id,
        "request_message_id": completion.request_message_id,
        "model": completion.model,
        "provider_id": completion.provider_id,
        "provider_name": completion.provider_name,
        "purpose": Completion.Purpose.TITLE,
        "request_body": body,
        "request_id": completion.request_id,
        "attempts": 1,
        "queued_at": started,
        "available_at": started,
        "started_at": started,
        "finished_at": now,
        "budget_settled": True,
    }
    if response is None:
        fields |= {
            "status": Completion.Status.FAILED,
            "error_type": error.error_type if error else "",
            "error_message": str(error) if error else "",
            "http_status": getattr(error, "http_status", None),
        }
    else:
        fields |= response_fields(
            model=completion.model,
            body=body,
            response=response,
            now=now,
            provider_id=completion.provider_id,
        )
        fields |= {
            "status": Completion.Status.SUCCEEDED,
            "latency_ms": response.latency_ms or None,
        }
    with transaction.atomic():
        row = Completion.objects.create(**fields)
        budgets.period_adjust(
            user_id=completion.user_id,
            at=started,
            reserved=budgets.UNRESERVED,
            used_tokens=row.total_tokens or 0,
            used_cost=row.cost or Decimal(0),
        )
    return row
