"""Writes: conversations, messages and the life of a Completion (queue, claim, run, save).

A completion is claimed with a conditional update and saved only by the holder of
that claim, so a redelivered task or a sweep that re-sends one never calls the
upstream for a finished completion and never saves two replies.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Case, F, Max, Q, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from chatsite import logs

from . import budgets, client, limits, streams
from .models import Completion, Conversation, Message, ModelPrice
from .rendering import render_markdown_for_storage

logger = logging.getLogger(__name__)

TITLE_LENGTH = 60
# A conversation's settings: the model, its system prompt and the contract's parameters.
PARAMETER_FIELDS = ("model", "system_prompt", *client.PARAMETERS)


class ConversationBusy(ValidationError):
    """A reply is still being written; the conversation takes no new message until it ends."""


def _check_parameters(values: dict[str, Any]) -> None:
    """Refuse values outside the contract's ranges, naming the field."""
    model = values.get("model")
    if not model:
        raise ValidationError({"model": _("Choose a model.")})
    if model not in settings.CHAT_MODELS:
        raise ValidationError({"model": _("%(model)s is not offered here.") % {"model": model}})
    try:
        # An empty stop list is the model's default and means "unset", as in generation_params.
        client.validate_parameters({**values, "stop": values.get("stop") or None})
    except client.ParameterError as exc:
        raise ValidationError({exc.field: exc.message}) from exc


def conversation_create(*, owner, **params: Any) -> Conversation:
    values = {"model": settings.CHAT_DEFAULT_MODEL, **params}
    _check_parameters(values)
    return Conversation.objects.create(owner=owner, **values)


def conversation_update(*, conversation: Conversation, **params: Any) -> Conversation:
    """Change the generation parameters; later calls use the new values."""
    unknown = set(params) - set(PARAMETER_FIELDS)
    if unknown:
        raise ValueError(f"not a conversation parameter: {sorted(unknown)}")
    values = {name: getattr(conversation, name) for name in PARAMETER_FIELDS} | params
    _check_parameters(values)
    for name, value in params.items():
        setattr(conversation, name, value)
    conversation.save(update_fields=list(params))
    return conversation


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    title = " ".join(title.split())[:200]
    if not title:
        raise ValidationError({"title": _("The title cannot be empty.")})
    conversation.title = title
    conversation.save(update_fields=["title"])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    # Budget reservations of calls still under way go back before the rows do.
    for completion in conversation.completions.filter(status__in=Completion.ACTIVE):
        budgets.completion_release(completion_id=completion.pk)
    conversation.delete()


def history(conversation: Conversation, *, upto_position: int | None = None) -> list[dict]:
    """The messages sent with a call: system prompt first, then the conversation,
    with only the selected choice of each reply."""
    messages: list[dict[str, str]] = []
    if conversation.system_prompt:
        messages.append({"role": "system", "content": conversation.system_prompt})
    rows = conversation.messages.filter(
        Q(role=Message.Role.USER) | Q(role=Message.Role.ASSISTANT, is_selected=True),
        status__in=[Message.Status.COMPLETE, Message.Status.STOPPED],
    )
    if upto_position is not None:
        rows = rows.filter(position__lte=upto_position)
    for role, content in rows.order_by("position", "choice_index").values_list("role", "content"):
        messages.append({"role": role, "content": content})
    return messages


def request_body(conversation: Conversation, messages: list[dict]) -> dict[str, Any]:
    params = conversation.generation_params()
    model = params.pop("model")
    try:
        return client.build_request(
            model=model, messages=messages, stream=settings.UPSTREAM_STREAM, **params
        )
    except client.ParameterError as exc:
        raise ValidationError({exc.field: exc.message}) from exc


def _next_position(conversation: Conversation) -> int:
    top = conversation.messages.aggregate(top=Max("position"))["top"]
    return 0 if top is None else top + 1


def _lock(conversation: Conversation) -> Conversation:
    # Serialises sends in one conversation (positions, one reply at a time).
    return Conversation.objects.select_for_update().get(pk=conversation.pk)


def message_send(*, conversation: Conversation, content: str) -> tuple[Message, Completion | None]:
    """Store the user's message and queue a completion for it (sent after commit).

    Refused before anything is stored: an empty message, a conversation still waiting
    for a reply (ConversationBusy), and the user's abuse limits (`limits.RateLimited`).
    Over budget the message is kept but no call is queued: `budgets.BudgetExceeded` is
    raised after the message is saved.
    """
    content = content.strip()
    if not content:
        raise ValidationError({"content": _("Write a message first.")})
    over_budget = None
    with limits.message_counted(user_id=conversation.owner_id), transaction.atomic():
        conversation = _lock(conversation)
        if conversation.completions.filter(status__in=Completion.ACTIVE).exists():
            raise ConversationBusy(
                {"content": _("Wait for the reply to finish before sending another message.")}
            )
        limits.replies_in_flight_check(user_id=conversation.owner_id)
        body = request_body(
            conversation, [*history(conversation), {"role": "user", "content": content}]
        )
        now = timezone.now()
        message = Message.objects.create(
            conversation=conversation,
            role=Message.Role.USER,
            content=content,
            position=_next_position(conversation),
            created_at=now,
        )
        updates = {"last_activity_at": now}
        if not conversation.title:
            updates["title"] = _title_from(content)
        Conversation.objects.filter(pk=conversation.pk).update(**updates)
        # Queued in this transaction, so the in-flight count holds; over budget only
        # the completion's savepoint rolls back and the message stays.
        try:
            completion = _completion_queue(conversation=conversation, message=message, body=body)
        except budgets.BudgetExceeded as error:
            over_budget = error
    if over_budget is not None:
        raise over_budget
    return message, completion


def _title_from(content: str) -> str:
    line = " ".join(content.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


def _completion_queue(
    *, conversation: Conversation, message: Message, body: dict[str, Any]
) -> Completion:
    with transaction.atomic():
        completion = Completion.objects.create(
            conversation=conversation,
            user_id=conversation.owner_id,
            request_message=message,
            model=body["model"],
            request_body=body,
            request_id=logs.current_request_id(),
        )
        # Raises BudgetExceeded (rolling the completion back) when over the limit.
        budgets.completion_reserve(completion=completion)
        transaction.on_commit(lambda: completion_enqueue(completion.pk))
    return completion


def completion_retry(*, completion: Completion) -> Completion:
    """A new completion for the same user message, after a failed one."""
    if completion.status != Completion.Status.FAILED:
        raise ValidationError(_("Only a failed reply can be retried."))
    message = completion.request_message
    with limits.message_counted(user_id=completion.user_id), transaction.atomic():
        conversation = _lock(completion.conversation)
        if conversation.completions.filter(status__in=Completion.ACTIVE).exists():
            raise ConversationBusy(_("A reply is already being written."))
        limits.replies_in_flight_check(user_id=conversation.owner_id)
        body = request_body(conversation, history(conversation, upto_position=message.position))
        Conversation.objects.filter(pk=conversation.pk).update(last_activity_at=timezone.now())
        return _completion_queue(conversation=conversation, message=message, body=body)


def choice_select(*, message: Message) -> Message:
    """Make this choice the one that continues the conversation."""
    if message.role != Message.Role.ASSISTANT or message.completion_id is None:
        raise ValidationError(_("Only a reply's choice can be selected."))
    with transaction.atomic():
        Message.objects.filter(completion_id=message.completion_id).update(
            is_selected=Case(When(pk=message.pk, then=True), default=False)
        )
    message.is_selected = True
    return message


def completion_enqueue(completion_id: int, *, countdown: float | None = None) -> None:
    """Send the task; if the broker is down the sweep sends it again later."""
    from .tasks import run_completion

    try:
        run_completion.apply_async(args=[completion_id], countdown=countdown)
    except Exception:
        logger.warning("Could not enqueue completion %s; the sweep will retry", completion_id)


# --- Worker side ---


@dataclass
class Claim:
    completion: Completion
    token: uuid.UUID


def completion_claim(*, completion_id: int) -> Claim | None:
    """Take the completion if it is due and nobody holds a live claim on it."""
    now = timezone.now()
    token = uuid.uuid4()
    # A little slack for a countdown message that arrives a moment early.
    due = now + timedelta(seconds=1)
    claimed = (
        Completion.objects.filter(pk=completion_id)
        .filter(
            Q(status=Completion.Status.QUEUED, available_at__lte=due)
            | Q(status=Completion.Status.RUNNING, lease_expires_at__lt=now)
        )
        .update(
            status=Completion.Status.RUNNING,
            claim_token=token,
            lease_expires_at=now + timedelta(seconds=settings.COMPLETION_LEASE_SECONDS),
            started_at=Coalesce(F("started_at"), now),
            attempts=F("attempts") + 1,
        )
    )
    if not claimed:
        return None
    return Claim(completion=Completion.objects.get(pk=completion_id), token=token)


def upstream_client() -> client.ChatClient:
    return client.ChatClient(
        base_url=settings.OPENAI_BASE_URL,
        api_key=settings.OPENAI_API_KEY,
        timeout=settings.OPENAI_TIMEOUT,
        connect_timeout=settings.OPENAI_CONNECT_TIMEOUT,
    )


def completion_attempt(*, claim: Claim) -> str:
    """One attempt at the call: "succeeded", "stopped", "failed" (a broken stream, its
    partial text kept) or "lost" (another worker holds the claim now).

    Raises client.UpstreamError when nothing was saved; the task decides on a retry."""
    if claim.completion.request_body.get("stream"):
        return _attempt_streaming(claim)
    response = completion_call(claim=claim)
    if not completion_save_success(claim=claim, response=response):
        return "lost"
    streams.publish_end(claim.completion.pk, "succeeded")
    return "succeeded"


def _release_connection() -> None:
    if not connection.in_atomic_block:
        # Hold no database connection while waiting on the model.
        connection.close()


def completion_call(*, claim: Claim) -> client.ChatResponse:
    """One non-streaming call to the upstream with the body stored at queue time."""
    _release_connection()
    body = {
        k: v
        for k, v in claim.completion.request_body.items()
        if k not in ("stream", "stream_options")
    }
    return upstream_client().create(body)


def _stop_requested(completion_id: int) -> bool:
    in_redis = streams.stop_requested_in_redis(completion_id)
    if in_redis is not None:
        return in_redis
    return Completion.objects.filter(pk=completion_id, stop_requested=True).exists()


def _attempt_streaming(claim: Claim) -> str:
    completion = claim.completion
    rows_ready = False

    def write_db(contents: dict[int, str]) -> None:
        nonlocal rows_ready
        if not rows_ready:
            rows_ready = _stream_rows_prepare(claim=claim, indexes=sorted(contents))
        for index, text in contents.items():
            Message.objects.filter(
                completion_id=completion.pk,
                choice_index=index,
                completion__claim_token=claim.token,
            ).update(content=text)
        if streams.redis_client() is not None:
            # Writes are seconds apart then: hold no connection (hundreds stream at once).
            _release_connection()

    interval = (
        settings.STREAM_REDIS_DB_FLUSH_INTERVAL
        if streams.redis_client() is not None
        else settings.STREAM_DB_FLUSH_INTERVAL
    )
    publisher = streams.Publisher(completion.pk, interval, write_db)
    streams.publish_status(completion.pk, "running")
    _release_connection()
    try:
        state, stopped = upstream_client().stream(
            completion.request_body,
            on_delta=lambda state, deltas: publisher.publish(deltas),
            should_stop=lambda: _stop_requested(completion.pk),
            stop_check_interval=settings.STREAM_STOP_CHECK_INTERVAL,
            on_watcher_exit=lambda: connection.close(),
        )
    except client.StreamInterrupted as error:
        if not publisher.has_text:
            _stream_rows_discard(claim=claim)
            raise
        # Some text arrived: keep it, shown as an error, never as a clean finish.
        publisher.flush()
        saved = _save_result(
            claim=claim,
            response=_partial_response(publisher.contents, error=error),
            message_status=Message.Status.FAILED,
            completion_status=Completion.Status.FAILED,
            error=error,
        )
        streams.publish_end(completion.pk, "failed")
        return "failed" if saved else "lost"
    except client.UpstreamError:
        _stream_rows_discard(claim=claim)
        raise
    publisher.send_redis()  # the last batch, so a live reader has all of the text
    response = state.response()
    if stopped:
        for choice in response.choices:
            choice.finish_reason = "stopped"
    saved = _save_result(
        claim=claim,
        response=response,
        message_status=Message.Status.STOPPED if stopped else Message.Status.COMPLETE,
    )
    streams.publish_end(completion.pk, "stopped" if stopped else "succeeded")
    if not saved:
        return "lost"
    return "stopped" if stopped else "succeeded"


def _partial_response(contents: dict[int, str], *, error: Exception) -> client.ChatResponse:
    return client.ChatResponse(
        id="",
        created=None,
        model="",
        object="",
        choices=[
            client.Choice(index=i, content=text, finish_reason="error")
            for i, text in sorted(contents.items())
        ],
        usage=None,
    )


def _stream_rows_prepare(*, claim: Claim, indexes: list[int]) -> bool:
    """Create (or take back from a dead attempt) the reply's rows while we hold the claim."""
    completion = claim.completion
    with transaction.atomic():
        conversation = _lock(completion.conversation)
        if not Completion.objects.filter(
            pk=completion.pk, claim_token=claim.token, status=Completion.Status.RUNNING
        ).exists():
            return False
        existing, position = _reply_rows(conversation, completion)
        Message.objects.filter(completion_id=completion.pk).update(
            content="", status=Message.Status.STREAMING
        )
        Message.objects.bulk_create(
            [
                Message(
                    conversation=conversation,
                    role=Message.Role.ASSISTANT,
                    content="",
                    position=position,
                    completion=completion,
                    choice_index=index,
                    status=Message.Status.STREAMING,
                    is_selected=(index == 0),
                )
                for index in indexes
                if index not in existing
            ]
        )
    return True


def _reply_rows(conversation: Conversation, completion: Completion) -> tuple[dict, int]:
    """The reply's rows so far (by choice index) and the position they take: theirs if
    an earlier attempt made some, else the next free one."""
    existing = {m.choice_index: m for m in Message.objects.filter(completion_id=completion.pk)}
    if existing:
        return existing, next(iter(existing.values())).position
    return existing, _next_position(conversation)


def _stream_rows_discard(*, claim: Claim) -> None:
    Message.objects.filter(
        completion_id=claim.completion.pk, completion__claim_token=claim.token
    ).delete()


def estimate_tokens(text: str) -> int:
    """About four characters a token: for usage the upstream did not report."""
    return (len(text) + 3) // 4


def completion_save_success(*, claim: Claim, response: client.ChatResponse) -> bool:
    """Save the reply (a message per choice) and its usage in one transaction.

    Returns False, saving nothing, when the claim was lost to another worker."""
    return _save_result(claim=claim, response=response, message_status=Message.Status.COMPLETE)


def _save_result(
    *,
    claim: Claim,
    response: client.ChatResponse,
    message_status: str,
    completion_status: str = Completion.Status.SUCCEEDED,
    error: client.UpstreamError | None = None,
) -> bool:
    completion = claim.completion
    now = timezone.now()
    usage = response.usage
    estimated = usage is None
    if usage is None:
        prompt = sum(
            estimate_tokens(m.get("content", "")) + 3
            for m in completion.request_body.get("messages", [])
        )
        reply = sum(estimate_tokens(c.content) for c in response.choices)
        usage = client.Usage(
            prompt_tokens=prompt, completion_tokens=reply, total_tokens=prompt + reply
        )
    price, cost = completion_cost(
        model=completion.model,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        at=now,
    )
    latency_ms = response.latency_ms or (
        int((now - completion.started_at).total_seconds() * 1000) if completion.started_at else None
    )
    with transaction.atomic():
        conversation = _lock(completion.conversation)
        updated = Completion.objects.filter(
            pk=completion.pk, claim_token=claim.token, status=Completion.Status.RUNNING
        ).update(
            status=completion_status,
            response_id=response.id[:200],
            response_created=response.created,
            response_model=response.model[:100],
            response_object=response.object[:64],
            choices=[
                {"index": c.index, "finish_reason": c.finish_reason} for c in response.choices
            ],
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            usage_estimated=estimated,
            http_status=response.http_status,
            error_type=error.error_type if error else "",
            error_message=readable_error(error, attempts=completion.attempts) if error else "",
            latency_ms=latency_ms,
            finished_at=now,
            lease_expires_at=None,
            price=price,
            cost=cost,
            currency=price.currency if price else "",
        )
        if not updated:
            logger.info("Completion %s was claimed elsewhere; reply discarded", completion.pk)
            return False
        existing, position = _reply_rows(conversation, completion)
        new_rows = []
        for order, choice in enumerate(sorted(response.choices, key=lambda c: c.index)):
            fields = {
                "content": choice.content,
                "html": render_markdown_for_storage(choice.content),
                "finish_reason": choice.finish_reason or "",
                "status": message_status,
            }
            if choice.index in existing:
                Message.objects.filter(pk=existing[choice.index].pk).update(**fields)
            else:
                new_rows.append(
                    Message(
                        conversation=conversation,
                        role=Message.Role.ASSISTANT,
                        position=position,
                        completion=completion,
                        choice_index=choice.index,
                        is_selected=(order == 0),
                        created_at=now,
                        **fields,
                    )
                )
        Message.objects.bulk_create(new_rows)
        Conversation.objects.filter(pk=conversation.pk).update(last_activity_at=now)
        budgets.completion_settle(completion_id=completion.pk)
    return True


def completion_stop(*, completion: Completion) -> None:
    """Ask for the reply to end: a running call is cut within a second, its partial
    text kept; a call not yet started never starts."""
    now = timezone.now()
    with transaction.atomic():
        never_started = Completion.objects.filter(
            pk=completion.pk, status=Completion.Status.QUEUED
        ).update(
            status=Completion.Status.FAILED,
            stop_requested=True,
            error_type="stopped",
            error_message=_("Stopped before the model started writing."),
            finished_at=now,
        )
        if never_started:
            budgets.completion_release(completion_id=completion.pk)
            streams.publish_end(completion.pk, "failed")
        else:
            Completion.objects.filter(pk=completion.pk, status=Completion.Status.RUNNING).update(
                stop_requested=True
            )
    if not never_started:
        streams.request_stop(completion.pk)


def completion_requeue(*, claim: Claim, error: client.UpstreamError, delay: float) -> bool:
    """Give the claim back after a retryable error; run again after `delay` seconds."""
    now = timezone.now()
    streams.publish_status(claim.completion.pk, "retrying")
    return bool(
        Completion.objects.filter(
            pk=claim.completion.pk, claim_token=claim.token, status=Completion.Status.RUNNING
        ).update(
            status=Completion.Status.QUEUED,
            claim_token=None,
            lease_expires_at=None,
            available_at=now + timedelta(seconds=delay),
            http_status=error.http_status,
            error_type=error.error_type,
            error_message=error.message[:2000],
        )
    )


def completion_fail(*, claim: Claim, error: client.UpstreamError) -> bool:
    """Mark the completion failed with a message a person can read."""
    with transaction.atomic():
        updated = Completion.objects.filter(
            pk=claim.completion.pk, claim_token=claim.token, status=Completion.Status.RUNNING
        ).update(
            status=Completion.Status.FAILED,
            http_status=error.http_status,
            error_type=error.error_type,
            error_message=readable_error(error, attempts=claim.completion.attempts),
            finished_at=timezone.now(),
            lease_expires_at=None,
        )
        if updated:
            budgets.completion_release(completion_id=claim.completion.pk)
    if updated:
        streams.publish_end(claim.completion.pk, "failed")
    return bool(updated)


def readable_error(error: client.UpstreamError, *, attempts: int) -> str:
    if error.http_status in (401, 403):
        text = _("The model service refused the API key (HTTP %(status)s): %(message)s")
    elif error.retryable:
        text = _("The model service failed %(attempts)s time(s); last error: %(message)s")
    else:
        text = _("The model service rejected the request (HTTP %(status)s): %(message)s")
    return (text % {"status": error.http_status, "message": error.message, "attempts": attempts})[
        :2000
    ]


def completion_cost(
    *, model: str, prompt_tokens: int, completion_tokens: int, at: datetime
) -> tuple[ModelPrice | None, Decimal | None]:
    """The price in force at `at` and the cost it gives; (None, None) without a price."""
    price = ModelPrice.in_force(model, at)
    if price is None:
        return None, None
    cost = (
        Decimal(prompt_tokens) * price.prompt_price_per_million
        + Decimal(completion_tokens) * price.completion_price_per_million
    ) / Decimal(1_000_000)
    return price, cost.quantize(Decimal("0.00000001"))


def completions_sweep() -> list[int]:
    """Send again what was lost: queued too long (broker lost it) or lease expired
    (worker died). The claim keeps it to one call and one reply."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.COMPLETION_STALE_QUEUED_SECONDS)
    lost = dict(
        Completion.objects.filter(
            Q(status=Completion.Status.QUEUED, available_at__lt=stale)
            | Q(status=Completion.Status.RUNNING, lease_expires_at__lt=now)
        ).values_list("pk", "request_id")[:1000]
    )
    ids = list(lost)
    if ids:
        # Push the queued ones forward so the next sweep leaves them alone a while.
        Completion.objects.filter(pk__in=ids, status=Completion.Status.QUEUED).update(
            available_at=now
        )
        logger.info("Sweep re-sends completions %s", ids)
    for completion_id, request_id in lost.items():
        # Sent under the id of the request that asked for it, so its lines stay findable.
        with logs.request_id_bound(request_id or logs.NO_REQUEST):
            completion_enqueue(completion_id)
    return ids
