"""Row locks and positions that the web's writes and the worker's share.

One lock order in every transaction that takes these rows: the user's, the conversation's,
the completion's, then the budget period's; all NO KEY locks, so the foreign-key checks of
rows inserted meanwhile (KEY SHARE) never wait on them."""

from __future__ import annotations

from django.db.models import Max

from conversations.chat import limits
from conversations.chat.models import Conversation


def next_position(conversation: Conversation) -> int:
    top = conversation.messages.aggregate(top=Max("position"))["top"]
    return 0 if top is None else top + 1


def lock_conversation(conversation: Conversation) -> Conversation:
    # Serialises writes in one conversation (positions, one reply at a time). NO KEY: the
    # foreign-key checks of rows inserted meanwhile (KEY SHARE) need not wait for it.
    return Conversation.objects.select_for_update(no_key=True).get(pk=conversation.pk)


def lock_for_send(conversation: Conversation) -> Conversation:
    limits.sender_lock(user_id=conversation.owner_id)
    return lock_conversation(conversation)
