"""The web's writes to a conversation's tree (chat/tree.py): regenerate a reply, edit a
sent message (each a new version beside the old), retry a failed reply, and switch which
version is shown (a reply's choice too). All under the send's locks, in its order."""

from __future__ import annotations

import enum

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import OperationalError
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.chat import limits
from conversations.chat.models import Completion, Conversation, Message
from conversations.shared import transactions

from . import rows
from .conversations import (
    ConversationBusy,
    _ask,
    _asking,
    _completion_queue,
    _contended,
    _lock_for_writing,
    _unavailable,
    request_body,
)


def completion_retry(*, completion: Completion) -> Completion:
    """A new completion for the same user message, after a failed one."""
    if completion.status != Completion.Status.FAILED:
        raise ValidationError(_("Only a failed reply can be retried."))
    return reply_regenerate(
        owner_id=completion.user_id,
        conversation_id=completion.conversation_id,
        message_id=completion.request_message_id,
    )


def reply_regenerate(*, owner_id: int, conversation_id: int, message_id: int) -> Completion:
    """A new reply to user message `message_id` (or to the one the reply `message_id`
    answers), with the history up to it and the conversation's settings as they are now:
    the next version of that reply, shown once it comes (the earlier ones stay).

    Refused, changing nothing, while a reply is written in the conversation
    (ConversationBusy), at the user's limits (RateLimited), over budget (BudgetExceeded)
    and when the database does not take it (Contended)."""

    def regenerate() -> Completion:
        limits_in_force, conversation, tree = _lock_for_writing(
            owner_id,
            conversation_id,
            busy=_("Wait for the reply being written to finish before regenerating."),
        )
        asked = tree.nodes.get(message_id)
        if asked is not None and asked.role == Message.Role.ASSISTANT:
            asked = tree.nodes.get(asked.parent_id)
        if asked is None or asked.role != Message.Role.USER:
            raise ValidationError(_("Only a reply to your message can be regenerated."))
        if (unavailable := _unavailable(conversation, saved_note=False)) is not None:
            raise unavailable
        line = tree.lineage(asked.pk)
        body = request_body(conversation, rows.history(conversation, line))
        completion = _completion_queue(
            conversation=conversation,
            message=Message(pk=asked.pk),
            body=body,
            limits=limits_in_force,
            version=len(tree.versions(asked.pk)) + 1,
        )
        # The new reply is shown where the earlier ones were: under this message, on the path.
        rows.select(conversation, tree, asked)
        Message.objects.filter(conversation_id=conversation.pk, parent_id=asked.pk).update(
            is_selected=False
        )
        Conversation.objects.filter(pk=conversation.pk).update(last_activity_at=timezone.now())
        return completion

    with limits.message_counted(user_id=owner_id):
        try:
            return transactions.atomic_with_retry(regenerate)
        except OperationalError as error:
            raise _contended(error) from error


def message_edit(
    *, owner: AbstractBaseUser, conversation_id: int, message_id: int, content: str
) -> tuple[Message, Completion | None]:
    """Send `content` in place of the user message `message_id`: a new version of it
    (the old one stays, a version of its own), answered with the history up to the
    messages it follows; the conversation goes on from it. Refused and over budget as
    message_send is (`BudgetExceeded` after the new version is saved)."""
    content = content.strip()
    if not content:
        raise ValidationError({"content": _("Write a message first.")})

    def edit():
        limits_in_force, conversation, tree = _lock_for_writing(
            owner.pk,
            conversation_id,
            busy=_("Wait for the reply being written to finish before editing a message."),
        )
        original = tree.nodes.get(message_id)
        if original is None or original.role != Message.Role.USER:
            raise Http404("No such message")
        parent = tree.nodes.get(original.parent_id) if original.parent_id else None
        line = tree.lineage(parent.pk) if parent is not None else []
        if parent is not None:
            rows.select(conversation, tree, parent)
        Message.objects.filter(
            conversation_id=conversation.pk, parent_id=original.parent_id
        ).update(is_selected=False)
        return _ask(
            conversation, content, line=line, parent=parent, limits_in_force=limits_in_force
        )

    return _asking(owner.pk, edit)


def choice_select(*, message: Message) -> Message:
    """Make this choice of a reply the one the conversation goes on from."""
    if message.role != Message.Role.ASSISTANT or message.completion_id is None:
        raise ValidationError(_("Only a reply's choice can be selected."))
    return _message_select(message.conversation.owner_id, message.conversation_id, message.pk)


class Direction(enum.StrEnum):
    PREVIOUS = "previous"
    NEXT = "next"


def version_switch(*, message: Message, direction: Direction) -> Message:
    """Show the version before or after the one `message` is in (its turn's edits, or a
    reply's regenerations), and the rest of the conversation as it went on from there;
    the message the path now goes through."""

    def switch() -> Message:
        conversation, tree = _lock_for_reading(message.conversation.owner_id, message)
        index, versions = tree.version_of(tree.nodes[message.pk])
        index += 1 if direction == Direction.NEXT else -1
        if not 0 <= index < len(versions):
            raise ValidationError(_("There is no other version that way."))
        target = tree.representative(versions[index])
        rows.select(conversation, tree, target)
        return Message.objects.get(pk=target.pk)

    return transactions.atomic_with_retry(switch)


def message_open(*, message: Message) -> Message:
    """Put `message` on the path shown (a search result opens the conversation at it):
    the versions it is in are selected, and below it the conversation goes on as it did.
    Refused (ConversationBusy) while a reply is written."""
    return _message_select(message.conversation.owner_id, message.conversation_id, message.pk)


def _message_select(owner_id: int, conversation_id: int, pk: int) -> Message:
    def select() -> Message:
        message = Message(pk=pk, conversation_id=conversation_id)
        conversation, tree = _lock_for_reading(owner_id, message)
        rows.select(conversation, tree, tree.nodes[pk])
        return Message.objects.get(pk=pk)

    return transactions.atomic_with_retry(select)


def _lock_for_reading(owner_id: int, message: Message):
    """The conversation locked and its tree, for a change of which version is shown;
    refused while a reply is written in it (the reply would land off the path)."""
    conversation, active = rows.lock_own_conversation(owner_id, message.conversation_id)
    if active.here:
        raise ConversationBusy(
            _("Wait for the reply being written to finish before switching versions.")
        )
    tree = rows.tree(conversation)
    if message.pk not in tree.nodes:
        raise Http404("No such message")
    return conversation, tree
