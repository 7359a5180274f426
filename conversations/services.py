"""Writes: conversations, messages and the life of a Completion (queue, claim, run, save).

A completion is claimed with a conditional update and saved only by the holder of
that claim, so a redelivered task or a sweep that re-sends one never calls the
upstream for a finished completion and never saves two replies.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.models import Case, F, Max, Q, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from chatsite import logs

from . import budgets, client, limits, streams, transactions
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
    def delete() -> None:
        # The conversation first, as a worker saving a reply in it takes its locks.
        _lock(conversation)
        # Budget reservations of calls still under way go back before the rows do.
        for completion_id in conversation.completions.filter(
            status__in=Completion.ACTIVE
        ).values_list("pk", flat=True):
            budgets.completion_release(completion_id=completion_id)
        conversation.delete()

    transactions.atomic_with_retry(delete)


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
    # Serialises writes in one conversation (positions, one reply at a time). NO KEY: the
    # foreign-key checks of rows inserted meanwhile (KEY SHARE) need not wait for it.
    return Conversation.objects.select_for_update(no_key=True).get(pk=conversation.pk)


def _lock_for_send(conversation: Conversation) -> Conversation:
    # The one lock order of every transaction that takes these rows: the user's, the
    # conversation's, the completion's, then the budget period's.
    limits.sender_lock(user_id=conversation.owner_id)
    return _lock(conversation)


class Contended(ValidationError):
    """The database kept refusing the send under contention; nothing was stored."""


def _contended() -> Contended:
    return Contended(
        {"content": _("The server is busy and did not send your message. Try again.")},
        code="contended",
    )


def message_send(*, conversation: Conversation, content: str) -> tuple[Message, Completion | None]:
    """Store the user's message and queue a completion for it (sent after commit).

    Refused before anything is stored: an empty message, a conversation still waiting
    for a reply (ConversationBusy), the user's abuse limits (`limits.RateLimited`) and a
    database too busy to take it (`Contended`). Over budget the message is kept but no
    call is queued: `budgets.BudgetExceeded` is raised after the message is saved.
    """
    content = content.strip()
    if not content:
        raise ValidationError({"content": _("Write a message first.")})
    with limits.message_counted(user_id=conversation.owner_id):
        try:
            message, completion, over_budget = transactions.atomic_with_retry(
                lambda: _send(conversation, content)
            )
        except OperationalError as error:
            if not transactions.is_conflict(error):
                raise
            raise _contended() from error
    if over_budget is not None:
        raise over_budget
    return message, completion


def _send(conversation: Conversation, content: str):
    conversation = _lock_for_send(conversation)
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
    # Queued in this transaction, so the in-flight count holds; over budget only the
    # completion's savepoint rolls back and the message stays.
    try:
        completion = _completion_queue(conversation=conversation, message=message, body=body)
    except budgets.BudgetExceeded as error:
        return message, None, error
    return message, completion, None


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

    def retry() -> Completion:
        conversation = _lock_for_send(completion.conversation)
        if conversation.completions.filter(status__in=Completion.ACTIVE).exists():
            raise ConversationBusy(_("A reply is already being written."))
        limits.replies_in_flight_check(user_id=conversation.owner_id)
        body = request_body(conversation, history(conversation, upto_position=message.position))
        Conversation.objects.filter(pk=conversation.pk).update(last_activity_at=timezone.now())
        return _completion_queue(conversation=conversation, message=message, body=body)

    with limits.message_counted(user_id=completion.user_id):
        try:
            return transactions.atomic_with_retry(retry)
        except OperationalError as error:
            if not transactions.is_conflict(error):
                raise
            raise _contended() from error


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


class Outcome(enum.StrEnum):
    """What one delivery of a completion's task came to."""

    SUCCEEDED = "succeeded"
    STOPPED = "stopped"
    FAILED = "failed"  # ended in an error (a broken stream keeps its partial text)
    RETRYING = "retrying"
    LOST = "lost"  # another worker holds the claim now: nothing saved, nothing published
    SKIPPED = "skipped"  # finished, not yet due, out of attempts, or held elsewhere


@dataclass
class Claim:
    completion: Completion
    token: uuid.UUID


def completion_claim(*, completion_id: int) -> Claim | None:
    """Take the completion if it is due, has attempts left and nobody holds a live claim."""
    now = timezone.now()
    token = uuid.uuid4()
    # A little slack for a countdown message that arrives a moment early.
    due = now + timedelta(seconds=1)
    claimed = (
        Completion.objects.filter(pk=completion_id, attempts__lt=settings.COMPLETION_MAX_ATTEMPTS)
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


def _held(claim: Claim):
    """The completion's row, as long as this claim still holds it."""
    return Completion.objects.filter(
        pk=claim.completion.pk, claim_token=claim.token, status=Completion.Status.RUNNING
    )


def completion_renew(*, claim: Claim) -> bool:
    """Extend the claim's lease while the call goes on; False once another worker has it."""
    lease = timedelta(seconds=settings.COMPLETION_LEASE_SECONDS)
    return bool(_held(claim).update(lease_expires_at=timezone.now() + lease))


def upstream_client() -> client.ChatClient:
    return client.ChatClient(
        base_url=settings.OPENAI_BASE_URL,
        api_key=settings.OPENAI_API_KEY,
        timeout=settings.OPENAI_TIMEOUT,
        connect_timeout=settings.OPENAI_CONNECT_TIMEOUT,
    )


def completion_attempt(*, claim: Claim) -> Outcome:
    """One attempt at the call. Raises client.UpstreamError when nothing was saved; the
    task decides on a retry."""
    if claim.completion.request_body.get("stream"):
        return StreamAttempt(claim).run()
    response = completion_call(claim=claim)
    if not _save_result(claim=claim, response=response, message_status=Message.Status.COMPLETE):
        return Outcome.LOST
    streams.publish_end(claim.completion.pk, "succeeded")
    return Outcome.SUCCEEDED


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


class StreamAttempt:
    """One streamed call: the text goes out live as it arrives, the claim's lease is renewed
    while it lasts, and it ends saved, stopped by the user, cut at the time limit (its text
    kept), or lost to another worker (then nothing is saved or published)."""

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self.completion = claim.completion
        self.rows_ready = False
        self.lost = False
        self.timed_out = False
        self.started = self.renewed = time.monotonic()
        # With Redis carrying the text, database writes are seconds apart and hold no
        # connection in between (hundreds stream at once).
        self.redis = streams.redis_client() is not None
        interval = (
            settings.STREAM_REDIS_DB_FLUSH_INTERVAL
            if self.redis
            else settings.STREAM_DB_FLUSH_INTERVAL
        )
        self.publisher = streams.Publisher(
            self.completion.pk, interval, self.write_db, attempt=self.completion.attempts
        )

    def run(self) -> Outcome:
        streams.publish_status(self.completion.pk, "running", attempt=self.completion.attempts)
        _release_connection()
        try:
            state, stopped = upstream_client().stream(
                self.completion.request_body,
                on_delta=lambda state, deltas: self.publisher.publish(deltas),
                should_stop=self.should_stop,
                stop_check_interval=settings.STREAM_STOP_CHECK_INTERVAL,
                on_watcher_exit=lambda: connection.close(),
            )
        except client.StreamInterrupted as error:
            if self.lost:
                return Outcome.LOST
            if not self.publisher.has_text:
                self.discard()
                raise
            # Some text arrived: keep it, shown as an error, never as a clean finish.
            return self.save_partial(error)
        except client.UpstreamError:
            self.discard()
            raise
        if self.lost:
            return Outcome.LOST
        if self.timed_out:
            return self.cut_at_time_limit()
        return self.save(state.response(), stopped=stopped)

    def should_stop(self) -> bool:
        """Asked every STREAM_STOP_CHECK_INTERVAL on the client's watcher thread."""
        now = time.monotonic()
        if now - self.started > settings.COMPLETION_MAX_SECONDS:
            self.timed_out = True
            return True
        if now - self.renewed >= settings.COMPLETION_LEASE_SECONDS / 3:
            self.renewed = now
            if not completion_renew(claim=self.claim):
                self.lost = True
                return True
        return self.lost or _stop_requested(self.completion.pk)

    def write_db(self, contents: dict[int, str]) -> None:
        if not self.rows_ready:
            self.rows_ready = _stream_rows_prepare(claim=self.claim, indexes=sorted(contents))
            if not self.rows_ready:
                self.lost = True  # the watcher ends the stream at its next look
                return
        for index, text in contents.items():
            Message.objects.filter(
                completion_id=self.completion.pk,
                choice_index=index,
                completion__claim_token=self.claim.token,
            ).update(content=text)
        if self.redis:
            _release_connection()

    def save(self, response: client.ChatResponse, *, stopped: bool) -> Outcome:
        self.publisher.send_redis()  # the last batch, so a live reader has all of the text
        if stopped:
            for choice in response.choices:
                choice.finish_reason = "stopped"
        status = Message.Status.STOPPED if stopped else Message.Status.COMPLETE
        if not _save_result(claim=self.claim, response=response, message_status=status):
            return Outcome.LOST
        outcome = Outcome.STOPPED if stopped else Outcome.SUCCEEDED
        streams.publish_end(self.completion.pk, str(outcome))
        return outcome

    def save_partial(self, error: client.UpstreamError) -> Outcome:
        self.publisher.flush()
        saved = _save_result(
            claim=self.claim,
            response=_partial_response(self.publisher.contents),
            message_status=Message.Status.FAILED,
            completion_status=Completion.Status.FAILED,
            error=error,
        )
        if not saved:
            return Outcome.LOST
        streams.publish_end(self.completion.pk, "failed")
        return Outcome.FAILED

    def cut_at_time_limit(self) -> Outcome:
        error = client.PermanentError(
            _("The reply took longer than %(seconds)s seconds and was cut off.")
            % {"seconds": f"{settings.COMPLETION_MAX_SECONDS:g}"},
            error_type="time_limit",
        )
        if not self.publisher.has_text:
            self.discard()
            raise error
        return self.save_partial(error)

    def discard(self) -> None:
        _stream_rows_discard(claim=self.claim)


def _partial_response(contents: dict[int, str]) -> client.ChatResponse:
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

    def prepare() -> bool:
        conversation = _lock(completion.conversation)
        if not _held(claim).exists():
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

    return transactions.atomic_with_retry(prepare)


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


def completion_attempt_discard(*, claim: Claim) -> None:
    """After an unexpected error: drop what this attempt began to write, if the database
    lets us (else the next attempt takes the rows back)."""
    try:
        _stream_rows_discard(claim=claim)
    except DatabaseError:
        logger.warning("Could not discard the rows of completion %s", claim.completion.pk)


def estimate_tokens(text: str) -> int:
    """About four characters a token: for usage the upstream did not report."""
    return (len(text) + 3) // 4


def _usage(completion: Completion, response: client.ChatResponse) -> tuple[client.Usage, bool]:
    """The usage the upstream reported, or an estimate (and True) when it reported none."""
    if response.usage is not None:
        return response.usage, False
    prompt = sum(
        estimate_tokens(m.get("content", "")) + 3
        for m in completion.request_body.get("messages", [])
    )
    reply = sum(estimate_tokens(c.content) for c in response.choices)
    return client.Usage(
        prompt_tokens=prompt, completion_tokens=reply, total_tokens=prompt + reply
    ), True


def _result_fields(
    claim: Claim,
    response: client.ChatResponse,
    *,
    status: str,
    error: client.UpstreamError | None,
    now: datetime,
) -> dict[str, Any]:
    """The completion's columns once the call has ended."""
    completion = claim.completion
    usage, estimated = _usage(completion, response)
    price, cost = completion_cost(
        model=completion.model,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        at=now,
    )
    latency_ms = response.latency_ms or (
        int((now - completion.started_at).total_seconds() * 1000) if completion.started_at else None
    )
    return {
        "status": status,
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
        "error_type": error.error_type if error else "",
        "error_message": readable_error(error, attempts=completion.attempts) if error else "",
        "latency_ms": latency_ms,
        "finished_at": now,
        "lease_expires_at": None,
        "price": price,
        "cost": cost,
        "currency": price.currency if price else "",
    }


def _save_result(
    *,
    claim: Claim,
    response: client.ChatResponse,
    message_status: str,
    completion_status: str = Completion.Status.SUCCEEDED,
    error: client.UpstreamError | None = None,
) -> bool:
    """Save the reply (a message per choice) and its usage in one transaction.

    Returns False, saving nothing, when the claim was lost to another worker."""
    completion = claim.completion
    now = timezone.now()
    fields = _result_fields(claim, response, status=completion_status, error=error, now=now)
    # Rendered before the transaction: no lock is held while Markdown is made.
    choices = [
        (choice, render_markdown_for_storage(choice.content))
        for choice in sorted(response.choices, key=lambda c: c.index)
    ]

    def save() -> bool:
        conversation = _lock(completion.conversation)
        if not _held(claim).update(**fields):
            logger.info("Completion %s was claimed elsewhere; reply discarded", completion.pk)
            return False
        _store_choices(conversation, completion, choices, status=message_status, now=now)
        Conversation.objects.filter(pk=conversation.pk).update(last_activity_at=now)
        budgets.completion_settle(completion_id=completion.pk)
        return True

    return transactions.atomic_with_retry(save)


def _store_choices(
    conversation: Conversation,
    completion: Completion,
    choices: list[tuple[client.Choice, str]],
    *,
    status: str,
    now: datetime,
) -> None:
    existing, position = _reply_rows(conversation, completion)
    new_rows = []
    for order, (choice, html) in enumerate(choices):
        fields = {
            "content": choice.content,
            "html": html,
            "finish_reason": choice.finish_reason or "",
            "status": status,
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
    streams.publish_status(claim.completion.pk, "retrying", attempt=claim.completion.attempts)
    return bool(
        _held(claim).update(
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
        updated = _held(claim).update(
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


def internal_error(exc: BaseException) -> client.UpstreamError:
    """An attempt that failed in our own code (or database), as an error worth a retry."""
    return client.RetryableError(
        _("chatsite could not process the reply (%(error)s).") % {"error": type(exc).__name__},
        error_type="internal_error",
    )


def readable_error(error: client.UpstreamError, *, attempts: int) -> str:
    if error.error_type in ("time_limit", "abandoned"):
        text = "%(message)s"
    elif error.error_type == "internal_error":
        text = _("The reply failed %(attempts)s time(s); last error: %(message)s")
    elif error.http_status in (401, 403):
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
    (worker died). The claim keeps it to one call and one reply. What has used up its
    attempts is failed instead, so it is never called (and billed) again."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.COMPLETION_STALE_QUEUED_SECONDS)
    lost = Q(status=Completion.Status.QUEUED, available_at__lt=stale) | Q(
        status=Completion.Status.RUNNING, lease_expires_at__lt=now
    )
    exhausted = Q(attempts__gte=settings.COMPLETION_MAX_ATTEMPTS)
    for completion_id in Completion.objects.filter(lost & exhausted).values_list("pk", flat=True)[
        :1000
    ]:
        completion_abandon(completion_id=completion_id, now=now)
    resend = dict(
        Completion.objects.filter(lost & ~exhausted).values_list("pk", "request_id")[:1000]
    )
    ids = list(resend)
    if ids:
        # Push the queued ones forward so the next sweep leaves them alone a while.
        Completion.objects.filter(pk__in=ids, status=Completion.Status.QUEUED).update(
            available_at=now
        )
        logger.info("Sweep re-sends completions %s", ids)
    for completion_id, request_id in resend.items():
        # Sent under the id of the request that asked for it, so its lines stay findable.
        with logs.request_id_bound(request_id or logs.NO_REQUEST):
            completion_enqueue(completion_id)
    return ids


def completion_abandon(*, completion_id: int, now: datetime) -> bool:
    """Fail a completion that used up its attempts without ending (its last worker died):
    text it streamed stays, marked as broken off; its reservation is given back."""
    with transaction.atomic():
        row = (
            Completion.objects.select_for_update(no_key=True)
            .filter(pk=completion_id, status__in=Completion.ACTIVE)
            .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
            .only("attempts")
            .first()
        )
        if row is None:
            return False
        message = _(
            "The reply was given up after %(attempts)s attempt(s): the worker writing it "
            "stopped answering."
        ) % {"attempts": row.attempts}
        Completion.objects.filter(pk=completion_id).update(
            status=Completion.Status.FAILED,
            claim_token=None,
            lease_expires_at=None,
            error_type="abandoned",
            error_message=message,
            finished_at=now,
        )
        Message.objects.filter(completion_id=completion_id, status=Message.Status.STREAMING).update(
            status=Message.Status.FAILED
        )
        budgets.completion_release(completion_id=completion_id)
    logger.warning("Completion %s given up after %s attempts", completion_id, row.attempts)
    streams.publish_end(completion_id, "failed")
    return True
