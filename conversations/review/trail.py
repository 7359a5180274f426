"""Reads of the audit trail for the person it is about: each time staff opened or exported
one of their conversations or API calls, as their Privacy page lists it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.paginator import Page, Paginator

from conversations.chat.models import Conversation

from .models import AuditSubject

READS_PER_PAGE = 25


@dataclass
class StaffRead:
    when: datetime
    actor: str | None  # the staff member's username; None once their account is gone
    action: str
    conversation_id: int | None
    completion_id: int | None
    # The conversation while it is still theirs (None: deleted, or an API call).
    conversation: Conversation | None = None


def staff_reads(*, owner, page: str | int | None) -> Page:
    """One page of the reads of `owner`'s chats, newest first, as StaffRead rows: three
    queries (count, page, their conversations still there) however long the trail."""
    subjects = (
        AuditSubject.objects.filter(owner=owner)
        .select_related("event__actor")
        # An export's event lists every id it read: only what the row shows is loaded.
        .only(
            "created_at",
            "conversation_id",
            "completion_id",
            "event__action",
            "event__actor__username",
        )
        .order_by("-created_at", "-pk")
    )
    shown = Paginator(subjects, READS_PER_PAGE).get_page(page)
    rows = list(shown.object_list)
    ids = {row.conversation_id for row in rows if row.conversation_id is not None}
    still_there = (
        Conversation.objects.filter(owner=owner, pk__in=ids).only("pk", "title").in_bulk()
        if ids
        else {}
    )
    shown.object_list = [
        StaffRead(
            when=row.created_at,
            actor=row.event.actor.get_username() if row.event.actor else None,
            action=row.event.get_action_display(),
            conversation_id=row.conversation_id,
            completion_id=row.completion_id,
            conversation=still_there.get(row.conversation_id),
        )
        for row in rows
    ]
    return shown
