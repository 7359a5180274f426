"""Writes of staff review: flags and notes, and the audit trail of who read or exported
which conversations."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from conversations.chat.models import Conversation

from .models import AuditEvent


def conversation_review(
    *, conversation: Conversation, reviewer, flagged: bool, note: str
) -> Conversation:
    """Set the flag and the note; flagging records who flagged and when."""
    with transaction.atomic():
        was_flagged = (
            Conversation.objects.select_for_update(no_key=True)
            .filter(pk=conversation.pk)
            .values_list("flagged", flat=True)
            .get()
        )
        conversation.flagged = flagged
        conversation.review_note = note
        if flagged and not was_flagged:
            conversation.flagged_by = reviewer
            conversation.flagged_at = timezone.now()
        elif not flagged:
            conversation.flagged_by = None
            conversation.flagged_at = None
        conversation.save(update_fields=["flagged", "review_note", "flagged_by", "flagged_at"])
    return conversation


def conversations_flag(*, conversations: QuerySet[Conversation], reviewer, flagged: bool) -> int:
    """Flag (or unflag) many at once; ones already in that state keep their record."""
    if flagged:
        return conversations.filter(flagged=False).update(
            flagged=True, flagged_by=reviewer, flagged_at=timezone.now()
        )
    return conversations.filter(flagged=True).update(
        flagged=False, flagged_by=None, flagged_at=None
    )


def audit_record(
    *,
    actor,
    action: str,
    conversation_ids: Iterable[int] = (),
    completion_ids: Iterable[int] = (),
) -> AuditEvent:
    """Note that `actor` read or exported these conversations (or API calls)."""
    return AuditEvent.objects.create(
        actor=actor,
        action=action,
        conversation_ids=sorted({int(pk) for pk in conversation_ids}),
        completion_ids=sorted({int(pk) for pk in completion_ids}),
    )
