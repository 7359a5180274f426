"""Writes of staff review: flags and notes, and the audit trail of who read or exported
which conversations."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from conversations.chat.models import Completion, Conversation

from .models import AuditEvent, AuditSubject

# Rows per INSERT of audit subjects: an export of thousands stays a few statements.
SUBJECTS_BATCH = 1000


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
    details: dict | None = None,
) -> AuditEvent:
    """Note that `actor` (None: the site itself) read or exported these conversations (or
    API calls), with one subject row per item naming its owner, for their Privacy page."""
    conversation_ids = sorted({int(pk) for pk in conversation_ids})
    completion_ids = sorted({int(pk) for pk in completion_ids})
    with transaction.atomic():
        event = AuditEvent.objects.create(
            actor=actor,
            action=action,
            conversation_ids=conversation_ids,
            completion_ids=completion_ids,
            details=details or {},
        )
        subjects = []
        if conversation_ids:
            owners = Conversation.objects.filter(pk__in=conversation_ids).values_list(
                "pk", "owner_id"
            )
            subjects += [
                AuditSubject(
                    event=event, owner_id=owner, conversation_id=pk, created_at=event.created_at
                )
                for pk, owner in owners
            ]
        if completion_ids:
            callers = Completion.objects.filter(pk__in=completion_ids).values_list("pk", "user_id")
            subjects += [
                AuditSubject(
                    event=event, owner_id=user, completion_id=pk, created_at=event.created_at
                )
                for pk, user in callers
            ]
        AuditSubject.objects.bulk_create(subjects, batch_size=SUBJECTS_BATCH)
    return event
