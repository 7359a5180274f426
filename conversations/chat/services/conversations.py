"""Web-side writes: conversations and their settings, messages, and queueing the
completion that answers one (sent to a worker after the transaction commits)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import OperationalError, transaction
from django.db.models import Case, Q, When
from django.utils import timezone
from django.utils.translation import gettext as _

from chatsite import logs
from conversations.billing import budgets
from conversations.chat import channel, limits
from conversations.chat.models import Completion, Conversation, Message
from conversations.shared import transactions
from conversations.upstream import protocol

from .completions import Outcome, budget_release, completion_enqueue
from .rows import lock_conversation, lock_for_send, next_position

TITLE_LENGTH = 60
# A conversation's settings: the model, its system prompt and the contract's parameters.


PARAMETER_FIELDS = ("model", "system_prompt", *protocol.PARAMETERS)


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
        protocol.validate_parameters({**values, "stop": values.get("stop") or None})
    except protocol.ParameterError as exc:
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
        lock_conversation(conversation)
        # Budget reservations of calls still under way go back before the rows do.
        for completion_id in conversation.completions.filter(
            status__in=Completion.ACTIVE
        ).values_list("pk", flat=True):
            budget_release(completion_id=completion_id)
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
        return protocol.build_request(
            model=model, messages=messages, stream=settings.UPSTREAM_STREAM, **params
        )
    except protocol.ParameterError as exc:
        raise ValidationError({exc.field: exc.message}) from exc


class Contended(ValidationError):
    """The database refused the send (contention it kept breaking, or it is unreachable);
    nothing was stored."""


def _contended(error: OperationalError) -> Contended:
    if transactions.is_conflict(error):
        message = _("The server is busy and did not send your message. Try again.")
    else:  # the database is unreachable (restarting, a network cut)
        message = _("The server could not store your message just now. Try again in a moment.")
    return Contended({"content": message}, code="contended")


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
            raise _contended(error) from error
    if over_budget is not None:
        raise over_budget
    return message, completion


def _send(conversation: Conversation, content: str):
    conversation = lock_for_send(conversation)
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
        position=next_position(conversation),
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
        reserved = budgets.reserve(
            user_id=completion.user_id,
            model=completion.model,
            body=body,
            at=completion.queued_at,
        )
        if reserved.tokens or reserved.cost:
            Completion.objects.filter(pk=completion.pk).update(
                reserved_tokens=reserved.tokens, reserved_cost=reserved.cost
            )
            completion.reserved_tokens, completion.reserved_cost = reserved.tokens, reserved.cost
        transaction.on_commit(lambda: completion_enqueue(completion.pk))
    return completion


def completion_retry(*, completion: Completion) -> Completion:
    """A new completion for the same user message, after a failed one."""
    if completion.status != Completion.Status.FAILED:
        raise ValidationError(_("Only a failed reply can be retried."))
    message = completion.request_message

    def retry() -> Completion:
        conversation = lock_for_send(completion.conversation)
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
            raise _contended(error) from error


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
            budget_release(completion_id=completion.pk)
            channel.reply_channel().publish_end(completion.pk, Outcome.FAILED)
        else:
            Completion.objects.filter(pk=completion.pk, status=Completion.Status.RUNNING).update(
                stop_requested=True
            )
    if not never_started:
        channel.reply_channel().request_stop(completion.pk)
