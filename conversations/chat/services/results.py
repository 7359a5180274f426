"""What an attempt writes: the reply's rows (made at a stream's first write to the
database, taken back when the attempt fails) and, once the call has ended, its result: the
reply, the usage and cost, and the budget, in one transaction, only while the attempt holds
the claim."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from conversations.billing import budgets, pricing
from conversations.chat.models import Completion, Conversation, Message
from conversations.shared import transactions
from conversations.shared.rendering import render_markdown_for_storage
from conversations.upstream import protocol

from .completions import Claim, held, readable_error
from .rows import lock_conversation

logger = logging.getLogger(__name__)


def rows_prepare(*, claim: Claim, indexes: list[int]) -> dict[int, int] | None:
    """Create (or take back from a dead attempt) the reply's rows while we hold the claim:
    their ids by choice index, or None when the claim is lost."""
    completion = claim.completion

    def prepare() -> dict[int, int] | None:
        conversation = lock_conversation(completion.conversation)
        if not held(claim).exists():
            return None
        existing, position = _reply_rows(completion, None)
        Message.objects.filter(completion_id=completion.pk).update(
            content="", reasoning="", status=Message.Status.STREAMING
        )
        made = Message.objects.bulk_create(
            [
                Message(
                    conversation=conversation,
                    role=Message.Role.ASSISTANT,
                    content="",
                    position=position,
                    parent_id=completion.request_message_id,
                    completion=completion,
                    choice_index=index,
                    status=Message.Status.STREAMING,
                    is_selected=(index == 0),
                )
                for index in indexes
                if index not in existing
            ]
        )
        return existing | {message.choice_index: message.pk for message in made}

    return transactions.atomic_with_retry(prepare)


def _reply_rows(
    completion: Completion, known: dict[int, int] | None
) -> tuple[dict[int, int], int | None]:
    """The reply's rows so far (their ids by choice index) and the position new ones take:
    theirs if there are some, else the next free one. `known`: the rows this attempt
    knows of, or None to look (an earlier attempt may have made some)."""
    if known is None:
        found = Message.objects.filter(completion_id=completion.pk).values_list(
            "choice_index", "pk", "position"
        )
        known, positions = {}, set()
        for index, pk, position in found:
            known[index] = pk
            positions.add(position)
        if positions:
            return known, positions.pop()
    if known:
        return known, None  # new choices join the known rows' position (looked up then)
    # The turn after the message it answers (a regeneration's too: beside the earlier
    # versions).
    asked = (
        Message.objects.filter(pk=completion.request_message_id)
        .values_list("position", flat=True)
        .first()
    )
    return known, 0 if asked is None else asked + 1


def rows_discard(*, claim: Claim) -> None:
    Message.objects.filter(
        completion_id=claim.completion.pk, completion__claim_token=claim.token
    ).delete()


def _usage(body: dict, response: protocol.ChatResponse) -> tuple[protocol.Usage, bool]:
    """The usage the upstream reported, or an estimate (and True) when it reported none."""
    if response.usage is not None:
        return response.usage, False
    prompt = sum(
        protocol.estimate_tokens(m.get("content", "")) + 3 for m in body.get("messages", [])
    )
    # Reasoning is written by the model too, and billed as its answer is.
    reply = sum(
        protocol.estimate_tokens(c.content) + protocol.estimate_tokens(c.reasoning)
        for c in response.choices
    )
    return protocol.Usage(
        prompt_tokens=prompt, completion_tokens=reply, total_tokens=prompt + reply
    ), True


def response_fields(
    *,
    model: str,
    body: dict,
    response: protocol.ChatResponse,
    now: datetime,
    provider_id: int | None = None,
) -> dict[str, Any]:
    """A call's columns from the upstream's answer: the response, its usage (reported or
    estimated) and its cost at the price in force `now`. A reply's save and a title call
    (services/titles) both store them."""
    usage, estimated = _usage(body, response)
    price, cost = pricing.priced(
        model=model,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        at=now,
        provider_id=provider_id,
    )
    return {
        "response_id": response.id,
        "response_created": response.created,
        "response_model": response.model,
        "response_object": response.object,
        "choices": [{"index": c.index, "finish_reason": c.finish_reason} for c in response.choices],
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "usage_estimated": estimated,
        "http_status": response.http_status,
        "price": price,
        "cost": cost,
        "currency": price.currency if price else "",
    }


def _result_fields(
    claim: Claim,
    response: protocol.ChatResponse,
    *,
    status: str,
    error: protocol.UpstreamError | None,
    now: datetime,
) -> dict[str, Any]:
    """The completion's columns once the call has ended."""
    completion = claim.completion
    latency_ms = response.latency_ms or (
        int((now - completion.started_at).total_seconds() * 1000) if completion.started_at else None
    )
    return response_fields(
        model=completion.model,
        body=completion.request_body,
        response=response,
        now=now,
        provider_id=completion.provider_id,
    ) | {
        "status": status,
        "error_type": error.error_type if error else "",
        "error_message": readable_error(error, attempts=completion.attempts) if error else "",
        "latency_ms": latency_ms,
        "finished_at": now,
        "lease_expires_at": None,
    }


def save_result(
    *,
    claim: Claim,
    response: protocol.ChatResponse,
    message_status: str,
    completion_status: str = Completion.Status.SUCCEEDED,
    error: protocol.UpstreamError | None = None,
    rows: dict[int, int] | None = None,
) -> list[Message] | None:
    """Save the reply (a message per choice), its usage and its budget in one transaction
    of five statements or so. `rows`: the reply's rows this attempt knows exist (ids by
    choice index; {} for none), or None when an earlier attempt may have left some.

    Returns the reply's rows as saved (and the completion's fields set on
    `claim.completion`), or None, saving nothing, when the claim was lost."""
    completion = claim.completion
    now = timezone.now()
    fields = _result_fields(claim, response, status=completion_status, error=error, now=now)
    # Rendered before the transaction: no lock is held while Markdown is made.
    choices = [
        (choice, render_markdown_for_storage(choice.content))
        for choice in sorted(response.choices, key=lambda c: c.index)
    ]
    if rows is None and completion.attempts == 1:
        rows = {}  # the first attempt made no rows but those it knows of

    def save() -> list[Message] | None:
        # The budget is settled in the same update: the claim makes it happen once.
        if not held(claim).update(**fields, budget_settled=True):
            logger.info("Completion %s was claimed elsewhere; reply discarded", completion.pk)
            return None
        saved = store_choices(completion, choices, status=message_status, now=now, rows=rows)
        Conversation.objects.filter(pk=completion.conversation_id).update(last_activity_at=now)
        budgets.period_adjust(
            user_id=completion.user_id,
            at=completion.queued_at,
            reserved=budgets.reservation_of(completion),
            used_tokens=fields["total_tokens"] or 0,
            used_cost=fields["cost"] or Decimal(0),
        )
        return saved

    saved = transactions.atomic_with_retry(save)
    if saved is not None:
        for name, value in fields.items():
            setattr(completion, name, value)
    return saved


def store_choices(
    completion: Completion,
    choices: list[tuple[protocol.Choice, str]],
    *,
    status: str,
    now: datetime,
    rows: dict[int, int] | None,
) -> list[Message]:
    """Write each choice into its row (or a new one), its reasoning apart from its answer;
    returns the rows as they now are."""
    existing, position = _reply_rows(completion, rows)
    saved, new_rows = [], []
    for order, (choice, html) in enumerate(choices):
        fields = {
            "content": choice.content,
            "reasoning": choice.reasoning,
            "html": html,
            "finish_reason": choice.finish_reason or "",
            "status": status,
        }
        if choice.index in existing:
            Message.objects.filter(pk=existing[choice.index]).update(**fields)
            saved.append(_row(completion, choice.index, existing[choice.index], fields, now))
            continue
        if position is None:  # a choice the stream never wrote to: beside the others
            position = Message.objects.values_list("position", flat=True).get(
                pk=next(iter(existing.values()))
            )
        message = Message(
            conversation_id=completion.conversation_id,
            role=Message.Role.ASSISTANT,
            position=position,
            parent_id=completion.request_message_id,
            completion=completion,
            choice_index=choice.index,
            is_selected=(order == 0 and not existing),
            created_at=now,
            **fields,
        )
        new_rows.append(message)
        saved.append(message)
    Message.objects.bulk_create(new_rows)
    return saved


def _row(completion: Completion, index: int, pk: int, fields: dict, now: datetime) -> Message:
    """A row the stream made (first choice selected), as it is once saved."""
    return Message(
        pk=pk,
        conversation_id=completion.conversation_id,
        role=Message.Role.ASSISTANT,
        position=0,
        parent_id=completion.request_message_id,
        completion=completion,
        choice_index=index,
        is_selected=(index == 0),
        created_at=now,
        **fields,
    )
