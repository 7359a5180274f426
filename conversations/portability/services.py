"""Writes: a person's import of conversations from a file (ours or ChatGPT's).

A whole file goes in one transaction, so a bad one leaves nothing behind. Imported
conversations carry their `origin`; their replies have no Completion (no call was made
here), so they never count as usage or against a budget, and nothing calls the upstream.

Known limitation: a reply's n choices from one call come back as sibling versions of
their turn (one per choice), since without a Completion nothing ties them together."""

from __future__ import annotations

from collections import defaultdict
from typing import IO

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from conversations.chat.models import Conversation, Message
from conversations.shared.rendering import render_markdown_for_storage

from . import readers
from .document import ImportedConversation, ImportedMessage

BATCH_SIZE = 1000


def conversations_import(*, owner: AbstractBaseUser, upload: IO[bytes]) -> list[Conversation]:
    """Import every conversation of the file for `owner`, or none (ValidationError)."""
    parsed = readers.read_upload(upload)
    with transaction.atomic():
        return _write(owner, parsed)


def _conversation_row(owner: AbstractBaseUser, imported: ImportedConversation) -> Conversation:
    params = imported.parameters
    return Conversation(
        owner=owner,
        origin=imported.origin,
        title=imported.title,
        title_is_auto=imported.title_is_auto,
        # A model this site does not offer would refuse the next message: the site's default.
        model=imported.model
        if imported.model in settings.CHAT_MODELS
        else settings.CHAT_DEFAULT_MODEL,
        system_prompt=imported.system_prompt,
        temperature=params.get("temperature"),
        top_p=params.get("top_p"),
        max_tokens=params.get("max_tokens"),
        n=params.get("n"),
        stop=params.get("stop") or [],
        presence_penalty=params.get("presence_penalty"),
        frequency_penalty=params.get("frequency_penalty"),
        created_at=imported.created_at,
        last_activity_at=imported.last_activity_at,
        pinned_at=imported.pinned_at,
        archived_at=imported.archived_at,
    )


def _message_row(conversation: Conversation, message: ImportedMessage, parent_id) -> Message:
    assistant = message.role == Message.Role.ASSISTANT
    return Message(
        conversation=conversation,
        role=message.role,
        content=message.content,
        # Sanitized as any reply is: the file's text is as untrusted as a model's.
        html=render_markdown_for_storage(message.content) if assistant else "",
        parent_id=parent_id,
        position=message.position,
        status=message.status,
        completion=None,
        choice_index=message.choice_index,
        finish_reason=message.finish_reason,
        is_selected=message.is_selected,
        created_at=message.created_at,
    )


def _write(owner: AbstractBaseUser, parsed: list[ImportedConversation]) -> list[Conversation]:
    conversations = Conversation.objects.bulk_create(
        [_conversation_row(owner, imported) for imported in parsed], batch_size=BATCH_SIZE
    )
    # One insert per depth for all conversations together: each level's parents have
    # their ids by then, and the queries grow with the deepest tree, not the messages.
    levels: dict[int, list[tuple[int, ImportedMessage]]] = defaultdict(list)
    for index, imported in enumerate(parsed):
        for message in imported.messages:
            levels[message.position].append((index, message))
    made: dict[tuple[int, object], int] = {}
    for depth in sorted(levels):
        rows = [
            _message_row(
                conversations[index],
                message,
                made[(index, message.parent_key)] if message.parent_key is not None else None,
            )
            for index, message in levels[depth]
        ]
        Message.objects.bulk_create(rows, batch_size=BATCH_SIZE)
        for (index, message), row in zip(levels[depth], rows, strict=True):
            made[(index, message.key)] = row.pk
    return conversations
