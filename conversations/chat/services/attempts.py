"""One attempt at a completion's call, on the worker: the upstream call (one JSON answer
or a stream whose text goes out live as it arrives), then the reply and its usage saved
in one transaction, only while the attempt still holds the claim."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from decimal import Decimal
from typing import Any

import requests
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.billing import budgets, pricing
from conversations.chat import channel, replies
from conversations.chat.models import Completion, Conversation, LiveState, Message
from conversations.shared import transactions
from conversations.shared.rendering import render_markdown_for_storage
from conversations.upstream import protocol
from conversations.upstream.client import ChatClient

from . import watch
from .completions import Claim, Outcome, held, readable_error
from .rows import lock_conversation

logger = logging.getLogger(__name__)


_sessions = threading.local()


def upstream_client() -> ChatClient:
    """A client on this worker thread's own HTTP session: its connections to the upstream
    are kept alive from one call to the next (no new TCP and TLS handshake per reply)."""
    session = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = requests.Session()
    return ChatClient(
        base_url=settings.OPENAI_BASE_URL,
        api_key=settings.OPENAI_API_KEY,
        timeout=settings.OPENAI_TIMEOUT,
        connect_timeout=settings.OPENAI_CONNECT_TIMEOUT,
        session=session,
    )


def completion_attempt(*, claim: Claim) -> Outcome:
    """One attempt at the call. Raises protocol.UpstreamError when nothing was saved; the
    task decides on a retry."""
    if claim.completion.request_body.get("stream"):
        return StreamAttempt(claim).run()
    response = completion_call(claim=claim)
    saved = _save_result(claim=claim, response=response, message_status=Message.Status.COMPLETE)
    if saved is None:
        return Outcome.LOST
    _publish_end(claim, Outcome.SUCCEEDED, saved)
    return Outcome.SUCCEEDED


def _publish_end(claim: Claim, outcome: Outcome, saved: list[Message]) -> None:
    """Tell readers the reply ended, with its HTML when the channel carries it (made here
    once, from the rows just saved, rather than by each reader's web process)."""
    live = channel.reply_channel()
    html = replies.ended_html(claim.completion, saved) if live.carries_ended_html else None
    live.publish_end(claim.completion.pk, outcome, html=html)


def _release_connection() -> None:
    if not connection.in_atomic_block:
        # Hold no database connection while waiting on the model.
        connection.close()


def completion_call(*, claim: Claim) -> protocol.ChatResponse:
    """One non-streaming call to the upstream with the body stored at queue time (the
    process's watch renews its lease meanwhile)."""
    _release_connection()
    body = {
        k: v
        for k, v in claim.completion.request_body.items()
        if k not in ("stream", "stream_options")
    }
    watched = watch.watch(claim, stream=False)
    try:
        return upstream_client().create(body)
    finally:
        watch.unwatch(watched)


class StreamAttempt:
    """One streamed call: the text goes out live as it arrives, the claim's lease is renewed
    while it lasts, and it ends saved, stopped by the user, cut at the time limit (its text
    kept), or lost to another worker (then nothing is saved or published)."""

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self.completion = claim.completion
        # The reply's rows by choice index once this attempt has made them (None before).
        self.rows: dict[int, int] | None = None
        self.live = channel.reply_channel()
        self.publisher = self.live.publisher(
            self.completion.pk, attempt=self.completion.attempts, write_db=self.write_db
        )
        self.watched: watch.Watched | None = None

    @property
    def lost(self) -> bool:
        return bool(self.watched and self.watched.lost)

    def run(self) -> Outcome:
        self.live.publish_status(
            self.completion.pk, LiveState.RUNNING, attempt=self.completion.attempts
        )
        _release_connection()
        # The process's watch renews the lease, cuts the stream at the time limit, and
        # stops it when its reader asks.
        self.watched = watch.watch(self.claim, stream=True)
        try:
            return self._call()
        finally:
            watch.unwatch(self.watched)

    def _call(self) -> Outcome:
        try:
            state, stopped = upstream_client().stream(
                self.completion.request_body,
                on_delta=lambda state, deltas: self.publisher.publish(deltas),
                stop=self.watched.stop,
            )
        except protocol.StreamInterrupted as error:
            if self.lost:
                return Outcome.LOST
            if not self.publisher.has_text:
                self.discard()
                raise
            # Some text arrived: keep it, shown as an error, never as a clean finish.
            return self.save_partial(error)
        except protocol.UpstreamError:
            self.discard()
            raise
        if self.lost:
            return Outcome.LOST
        if self.watched.timed_out:
            return self.cut_at_time_limit()
        return self.save(state.response(), stopped=stopped)

    def write_db(self, contents: dict[int, str]) -> None:
        if self.rows is None:
            self.rows = _stream_rows_prepare(claim=self.claim, indexes=sorted(contents))
            if self.rows is None:
                self.watched.end(lost=True)  # another worker has the claim: stop here
                return
        for index, text in contents.items():
            Message.objects.filter(
                completion_id=self.completion.pk,
                choice_index=index,
                completion__claim_token=self.claim.token,
            ).update(content=text)
        if self.live.release_between_writes:
            _release_connection()

    def save(self, response: protocol.ChatResponse, *, stopped: bool) -> Outcome:
        self.publisher.send_live()  # the last batch, so a live reader has all of the text
        if stopped:
            for choice in response.choices:
                choice.finish_reason = "stopped"
        status = Message.Status.STOPPED if stopped else Message.Status.COMPLETE
        saved = _save_result(
            claim=self.claim, response=response, message_status=status, rows=self.rows
        )
        if saved is None:
            return Outcome.LOST
        outcome = Outcome.STOPPED if stopped else Outcome.SUCCEEDED
        _publish_end(self.claim, outcome, saved)
        return outcome

    def save_partial(self, error: protocol.UpstreamError) -> Outcome:
        self.publisher.flush()
        saved = _save_result(
            claim=self.claim,
            rows=self.rows,
            response=_partial_response(self.publisher.contents),
            message_status=Message.Status.FAILED,
            completion_status=Completion.Status.FAILED,
            error=error,
        )
        if saved is None:
            return Outcome.LOST
        _publish_end(self.claim, Outcome.FAILED, saved)
        return Outcome.FAILED

    def cut_at_time_limit(self) -> Outcome:
        error = protocol.PermanentError(
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


def _partial_response(contents: dict[int, str]) -> protocol.ChatResponse:
    return protocol.ChatResponse(
        id="",
        created=None,
        model="",
        object="",
        choices=[
            protocol.Choice(index=i, content=text, finish_reason="error")
            for i, text in sorted(contents.items())
        ],
        usage=None,
    )


def _stream_rows_prepare(*, claim: Claim, indexes: list[int]) -> dict[int, int] | None:
    """Create (or take back from a dead attempt) the reply's rows while we hold the claim:
    their ids by choice index, or None when the claim is lost."""
    completion = claim.completion

    def prepare() -> dict[int, int] | None:
        conversation = lock_conversation(completion.conversation)
        if not held(claim).exists():
            return None
        existing, position = _reply_rows(completion, None)
        Message.objects.filter(completion_id=completion.pk).update(
            content="", status=Message.Status.STREAMING
        )
        made = Message.objects.bulk_create(
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
    top = Message.objects.filter(conversation_id=completion.conversation_id).aggregate(
        top=Max("position")
    )["top"]
    return known, 0 if top is None else top + 1


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


def _usage(completion: Completion, response: protocol.ChatResponse) -> tuple[protocol.Usage, bool]:
    """The usage the upstream reported, or an estimate (and True) when it reported none."""
    if response.usage is not None:
        return response.usage, False
    prompt = sum(
        protocol.estimate_tokens(m.get("content", "")) + 3
        for m in completion.request_body.get("messages", [])
    )
    reply = sum(protocol.estimate_tokens(c.content) for c in response.choices)
    return protocol.Usage(
        prompt_tokens=prompt, completion_tokens=reply, total_tokens=prompt + reply
    ), True


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
    usage, estimated = _usage(completion, response)
    price, cost = pricing.priced(
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
        saved = _store_choices(completion, choices, status=message_status, now=now, rows=rows)
        Conversation.objects.filter(pk=completion.conversation_id).update(last_activity_at=now)
        budgets.period_adjust(
            user_id=completion.user_id,
            at=completion.queued_at,
            reserved=budgets.Reservation(completion.reserved_tokens, completion.reserved_cost),
            used_tokens=fields["total_tokens"] or 0,
            used_cost=fields["cost"] or Decimal(0),
        )
        return saved

    saved = transactions.atomic_with_retry(save)
    if saved is not None:
        for name, value in fields.items():
            setattr(completion, name, value)
    return saved


def _store_choices(
    completion: Completion,
    choices: list[tuple[protocol.Choice, str]],
    *,
    status: str,
    now: datetime,
    rows: dict[int, int] | None,
) -> list[Message]:
    """Write each choice into its row (or a new one); returns the rows as they now are."""
    existing, position = _reply_rows(completion, rows)
    saved, new_rows = [], []
    for order, (choice, html) in enumerate(choices):
        fields = {
            "content": choice.content,
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
            completion=completion,
            choice_index=choice.index,
            is_selected=(order == 0),
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
        completion=completion,
        choice_index=index,
        is_selected=(index == 0),
        created_at=now,
        **fields,
    )
