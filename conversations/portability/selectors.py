"""Reads for exports: a conversation with what its export holds, and one person's
conversations in batches (the ZIP reads them a batch at a time, never all at once)."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from conversations.chat.models import Completion, Conversation, Message

EXPORT_BATCH_SIZE = 50


def with_export_rows(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """The conversations with their messages and completions (three queries in all), in
    id order as the tree wants them, without what an export leaves out."""
    return conversations.prefetch_related(
        Prefetch("messages", queryset=Message.objects.defer("html").order_by("pk")),
        # Request bodies can be large and are not exported.
        Prefetch(
            "completions",
            queryset=Completion.objects.defer("request_body", "choices").order_by("pk"),
        ),
    )


def conversation_for_export(conversation: Conversation) -> Conversation:
    """The (already owner-checked) conversation again, with its export rows."""
    return with_export_rows(Conversation.objects.filter(pk=conversation.pk)).get()


def export_batch(user_id: int, *, after: int = 0, size: int | None = None) -> list[Conversation]:
    """The user's next `size` conversations (archived ones too) with id above `after`."""
    size = size or EXPORT_BATCH_SIZE
    rows = with_export_rows(Conversation.objects.filter(owner_id=user_id, pk__gt=after))
    return list(rows.order_by("pk")[:size])
