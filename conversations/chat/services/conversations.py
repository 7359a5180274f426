"""Web-side writes: conversations and their settings, messages, and queueing the
completion that answers one (sent to a worker after the transaction commits)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import OperationalError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from chatsite import logs
from conversations.accounts.selectors import site_settings
from conversations.billing import budgets
from conversations.billing.usage_days import usage_fold
from conversations.chat import channel, limits
from conversations.chat.models import Completion, Conversation, Message
from conversations.providers import catalog
from conversations.shared import transactions
from conversations.upstream import protocol

from . import completions, rows
from .completions import Outcome, budget_release

TITLE_LENGTH = 60
# A conversation's settings: the model, its system prompt and the contract's parameters.


PARAMETER_FIELDS = ("model", "system_prompt", *protocol.PARAMETERS)


class ConversationBusy(ValidationError):
    """A reply is still being written; the conversation takes no new message until it ends."""


class ModelUnavailable(ValidationError):
    """The conversation's model cannot be called now (its provider's last model list
    failed or no longer has it): the message is kept, nothing is queued."""


def _check_parameters(values: dict[str, Any]) -> None:
    """Refuse values outside the contract's ranges, naming the field."""
    values = dict(values)
    provider_id = values.pop("provider_id", None)
    model = values.get("model")
    if not model:
        raise ValidationError({"model": _("Choose a model.")})
    if catalog.find(provider_id, model) is None:
        raise ValidationError({"model": _("%(model)s is not offered here.") % {"model": model}})
    try:
        # An empty stop list is the model's default and means "unset", as in generation_params.
        protocol.validate_parameters({**values, "stop": values.get("stop") or None})
    except protocol.ParameterError as exc:
        raise ValidationError({exc.field: exc.message}) from exc
    # The site's own limit, below the contract's (each choice is a reply paid for).
    if (values.get("n") or 1) > 1 and values["n"] > (most := site_settings().max_choices):
        raise ValidationError(
            {"n": _("At most %(most)d choices on this site.") % {"most": most}}, code="max_choices"
        )


def conversation_create(*, owner, temporary: str = "", **params: Any) -> Conversation:
    """A new chat, on the site's default model unless `model` (and `provider_id`) say."""
    if "model" in params:
        values = {"provider_id": None, **params}
    else:
        default = catalog.default()
        values = {"model": default.model, "provider_id": default.provider_id, **params}
    _check_parameters(values)
    if temporary not in Conversation.Temporary.values:
        raise ValidationError(_("Choose how long the chat is kept."), code="temporary")
    if not catalog.may_use(owner.pk, values["provider_id"], values["model"]):
        if "model" in params:
            raise _not_yours(values["model"])
        # The site's default is kept for some groups: the first model this person may use.
        mine = catalog.offers_for(owner.pk)
        if mine:
            values |= {"model": mine[0].model, "provider_id": mine[0].provider_id}
    return Conversation.objects.create(owner=owner, temporary=temporary, **values)


def _not_yours(model: str) -> ValidationError:
    return ValidationError(
        {"model": _("%(model)s is not offered to you.") % {"model": model}}, code="model_access"
    )


def conversation_update(*, conversation: Conversation, **params: Any) -> Conversation:
    """Change the generation parameters (and the model's provider, `provider_id`); later
    calls use the new values."""
    fields = (*PARAMETER_FIELDS, "provider_id")
    unknown = set(params) - set(fields)
    if unknown:
        raise ValueError(f"not a conversation parameter: {sorted(unknown)}")
    if "model" in params and "provider_id" not in params:
        params["provider_id"] = None
    values = {name: getattr(conversation, name) for name in fields} | params
    _check_parameters(values)
    changed = (values["provider_id"], values["model"]) != (
        conversation.provider_id,
        conversation.model,
    )
    if changed and not catalog.may_use(
        conversation.owner_id, values["provider_id"], values["model"]
    ):
        raise _not_yours(values["model"])
    for name, value in params.items():
        setattr(conversation, name, value)
    conversation.save(update_fields=list(params))
    return conversation


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    title = " ".join(title.split())[:200]
    if not title:
        raise ValidationError({"title": _("The title cannot be empty.")})
    conversation.title = title
    conversation.title_is_auto = False  # the model's title call leaves it alone
    conversation.save(update_fields=["title", "title_is_auto"])
    return conversation


def conversation_pin(*, conversation: Conversation, pinned: bool) -> Conversation:
    """Pin at the top of the sidebar (the newest pin first), or unpin. An archived
    conversation comes back to the sidebar when pinned."""
    now = timezone.now()
    conversation.pinned_at = now if pinned else None
    if pinned:
        conversation.archived_at = None
    conversation.save(update_fields=["pinned_at", "archived_at"])
    return conversation


def conversation_archive(*, conversation: Conversation, archived: bool) -> Conversation:
    """Out of the sidebar into the "Archived" list (unpinned), or back. Nothing else
    changes: it opens, takes messages and is found by search as before."""
    conversation.archived_at = timezone.now() if archived else None
    if archived:
        conversation.pinned_at = None
    conversation.save(update_fields=["pinned_at", "archived_at"])
    return conversation


def conversation_temporary(*, conversation: Conversation, mode: str) -> Conversation:
    """Make a chat temporary (`day`: deleted a day after its last message; `leave`: as soon
    as its owner opens another chat, a day at most) or keep it for good (`""`)."""
    if mode not in Conversation.Temporary.values:
        raise ValidationError(_("Choose how long the chat is kept."), code="temporary")
    conversation.temporary = mode
    conversation.save(update_fields=["temporary"])
    return conversation


def temporary_chats_leave(*, owner: AbstractBaseUser, staying_id: int | None = None) -> int:
    """Delete the owner's chats that were to go when they left them (all but the one they
    are on); one still being answered waits for the retention purge. Returns how many."""

    def leave() -> int:
        chats = (
            Conversation.objects.filter(owner_id=owner.pk, temporary=Conversation.Temporary.LEAVE)
            .exclude(pk=staying_id)
            .exclude(completions__status__in=Completion.ACTIVE)
        )
        return conversations_delete(conversations=chats)["conversations"]

    return transactions.atomic_with_retry(leave)


def conversation_delete(*, conversation: Conversation) -> None:
    def delete() -> None:
        # The conversation first, as a worker saving a reply in it takes its locks.
        rows.lock_conversation(conversation)
        conversations_delete(conversations=Conversation.objects.filter(pk=conversation.pk))

    transactions.atomic_with_retry(delete)


def conversations_delete(*, conversations: QuerySet[Conversation]) -> dict[str, int]:
    """Delete conversations with their messages, calls and links; what the calls used stays
    in the daily usage rows, so reports and budgets keep their totals. Runs in the caller's
    transaction, which bounds how many go at once. Returns the counts deleted (no content).
    """
    ids = list(conversations.values_list("pk", flat=True))
    _calls_leave(Completion.objects.filter(conversation_id__in=ids))
    _total, counts = Conversation.objects.filter(pk__in=ids).delete()
    return {
        "conversations": counts.get(Conversation._meta.label, 0),
        "messages": counts.get(Message._meta.label, 0),
        "completions": counts.get(Completion._meta.label, 0),
    }


def _calls_leave(calls: QuerySet[Completion]) -> None:
    """Before calls' rows go: reservations of calls still under way go back, and what
    they used goes into the daily usage rows."""
    for completion_id in calls.filter(status__in=Completion.ACTIVE).values_list("pk", flat=True):
        budget_release(completion_id=completion_id)
    usage_fold(completions=calls)


def completions_delete(*, completions: QuerySet[Completion]) -> int:
    """Delete calls of no conversation (API calls), their usage kept in the daily rows;
    in the caller's transaction. Returns how many went."""
    ids = list(completions.values_list("pk", flat=True))
    calls = Completion.objects.filter(pk__in=ids)
    _calls_leave(calls)
    calls.delete()
    return len(ids)


def history(conversation: Conversation, *, upto: int | None = None) -> list[dict]:
    """The messages sent with a call: system prompt first, then the path the person is on
    (or the messages down to message `upto`), with the chosen choice of each reply."""
    tree = rows.tree(conversation)
    line = rows.path(tree) if upto is None else tree.lineage(upto)
    return rows.history(conversation, line)


def request_body(conversation: Conversation, messages: list[dict]) -> dict[str, Any]:
    params = conversation.generation_params()
    model = params.pop("model")
    if (params.get("n") or 1) > 1:
        # Saved before an administrator lowered the site's limit: asks for no more than it.
        params["n"] = min(params["n"], site_settings().max_choices)
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


def message_send(
    *, owner: AbstractBaseUser, conversation_id: int, content: str
) -> tuple[Message, Completion | None]:
    """Store the owner's message in their conversation (404 for anyone else's) and queue a
    completion for it (sent after commit); `message.conversation` is the conversation as
    it is now.

    Refused before anything is stored: an empty message, a conversation still waiting
    for a reply (ConversationBusy), the user's abuse limits (`limits.RateLimited`) and a
    database that does not take it (`Contended`). Over budget the message is kept but no
    call is queued: `budgets.BudgetExceeded` is raised after the message is saved, with
    the message as its `saved`.
    """
    content = content.strip()
    if not content:
        raise ValidationError({"content": _("Write a message first.")})
    return _asking(owner.pk, lambda: _send(owner, conversation_id, content))


def _asking(user_id: int, work) -> tuple[Message, Completion | None]:
    """Run `work` (a transaction storing a user message with `_ask`) counted against the
    user's message rate, retried on contention; over budget, raise after it committed."""
    with limits.message_counted(user_id=user_id):
        try:
            message, completion, over_budget = transactions.atomic_with_retry(work)
        except OperationalError as error:
            raise _contended(error) from error
    if over_budget is not None:
        over_budget.saved = message
        raise over_budget
    return message, completion


def _send(owner: AbstractBaseUser, conversation_id: int, content: str):
    """The send's transaction: seven statements when no budget applies (the user's row
    with their budget, the conversation with the user's busy counts, the messages, two
    inserts and an update), so it holds its locks briefly. The message follows the last
    one of the path the person is on."""
    limits_in_force, conversation, tree = _lock_for_writing(owner.pk, conversation_id)
    leaf = tree.leaf()
    line = tree.lineage(leaf.pk) if leaf is not None else []
    return _ask(
        conversation,
        content,
        line=line,
        parent=leaf,
        limits_in_force=limits_in_force,
        title=None if conversation.title else title_from(content),
    )


def _lock_for_writing(user_id: int, conversation_id: int, *, busy: str | None = None):
    """The locks a change of the conversation's messages takes, in their order, and the
    checks it makes: the user's row (and budget limits), the conversation (404 for anyone
    else's) refused while a reply is written in it (ConversationBusy, with `busy` as its
    text) and at the user's replies-in-flight limit; then its messages as a tree."""
    limits_in_force = rows.lock_sender(user_id)
    conversation, active = rows.lock_own_conversation(user_id, conversation_id)
    if active.here:
        raise ConversationBusy(
            {"content": busy or _("Wait for the reply to finish before sending another message.")}
        )
    limits.replies_in_flight_check(active=active.everywhere)
    return limits_in_force, conversation, rows.tree(conversation)


def _ask(conversation, content, *, line, parent, limits_in_force, title=None):
    """Store a user message after `parent` (the last of `line`, the messages it follows)
    and queue its reply: (message, completion, None), or (message, None, BudgetExceeded)
    when the budget does not cover the call (the message is kept). `title`: a new title
    for the conversation, set in the same statement as its last activity."""
    body = request_body(
        conversation, [*rows.history(conversation, line), {"role": "user", "content": content}]
    )
    now = timezone.now()
    message = Message.objects.create(
        conversation=conversation,
        role=Message.Role.USER,
        content=content,
        parent_id=parent.pk if parent is not None else None,
        position=parent.position + 1 if parent is not None else 0,
        created_at=now,
    )
    updates = {"last_activity_at": now} | ({"title": title} if title else {})
    Conversation.objects.filter(pk=conversation.pk).update(**updates)
    for name, value in updates.items():
        setattr(conversation, name, value)
    # Queued in this transaction, so the in-flight count holds; over budget (or with its
    # model unavailable) no completion is made and the message stays.
    if (unavailable := _unavailable(conversation)) is not None:
        return message, None, unavailable
    try:
        completion = _completion_queue(
            conversation=conversation, message=message, body=body, limits=limits_in_force
        )
    except budgets.BudgetExceeded as error:
        return message, None, error
    return message, completion, None


def _unavailable(conversation: Conversation, *, saved_note: bool = True) -> ModelUnavailable | None:
    """Why the conversation's model cannot be called now, if it cannot (what the
    providers' background refresh last saw: no provider is asked here)."""
    offer = catalog.find(conversation.provider_id, conversation.model)
    label = offer.label if offer is not None else conversation.model
    if not catalog.may_use(conversation.owner_id, conversation.provider_id, conversation.model):
        text = _("%(model)s is no longer offered to you: choose another model in Settings.")
        text, code = text % {"model": label}, "model_access"
    elif offer is None and conversation.provider_id is None:
        return None  # a model no longer in CHAT_MODELS: the environment's provider decides
    elif offer is None:
        text = _("%(model)s is no longer offered: choose another model in Settings.")
        text, code = text % {"model": label}, "model_unavailable"
    elif offer.available:
        return None
    else:
        text = _("%(model)s is unavailable right now (%(error)s).")
        text, code = text % {"model": label, "error": offer.error}, "model_unavailable"
    if saved_note:
        text = "%s %s" % (text, _("Your message is saved but was not sent."))  # noqa: UP031
    return ModelUnavailable(text, code=code)


def provider_name(conversation: Conversation) -> str:
    """The provider's name as the conversation's calls keep it ("" for the environment's
    own provider, which reports show as DEFAULT_PROVIDER_NAME)."""
    if conversation.provider_id is None:
        return ""
    offer = catalog.find(conversation.provider_id, conversation.model)
    return offer.provider_name if offer is not None else ""


def title_from(content: str) -> str:
    """A title from text: one line, at most TITLE_LENGTH characters (the first message's
    words, a title call's answer)."""
    line = " ".join(content.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


def _completion_queue(
    *,
    conversation: Conversation,
    message: Message,
    body: dict[str, Any],
    limits: budgets.Limits,
    version: int = 1,
) -> Completion:
    """Reserve the call's budget (BudgetExceeded when it does not fit), then make the
    completion; it is sent to a worker once the transaction commits."""
    now = timezone.now()
    reserved = budgets.reserve(
        user_id=conversation.owner_id,
        model=body["model"],
        body=body,
        at=now,
        limits=limits,
        provider_id=conversation.provider_id,
    )
    completion = Completion.objects.create(
        conversation=conversation,
        user_id=conversation.owner_id,
        request_message=message,
        model=body["model"],
        provider_id=conversation.provider_id,
        provider_name=provider_name(conversation),
        request_body=body,
        version=version,
        request_id=logs.current_request_id(),
        queued_at=now,
        available_at=now,
        reserved_tokens=reserved.tokens,
        reserved_cost=reserved.cost,
        budget_groups=list(reserved.groups or ()),
    )
    transaction.on_commit(lambda: completions.completion_enqueue(completion.pk))
    return completion


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
            if completion.version > 1:
                completions.earlier_version_restore(completion_id=completion.pk)
            channel.reply_channel().publish_end(completion.pk, Outcome.FAILED)
        else:
            Completion.objects.filter(pk=completion.pk, status=Completion.Status.RUNNING).update(
                stop_requested=True
            )
    if not never_started:
        channel.reply_channel().request_stop(completion.pk)
