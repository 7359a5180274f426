"""Reads about one person's account for its page and its download: what the site keeps
of them besides their conversations (their keys, when staff read their chats) and since
when they have usage."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.db.models import Min
from django.utils import timezone

from conversations.api.models import ApiKey
from conversations.billing.models import UsageDay
from conversations.chat.models import Completion, Conversation, Message
from conversations.review.models import AuditSubject


def conversation_ids(user_id: int) -> list[int]:
    return list(
        Conversation.objects.filter(owner_id=user_id).order_by("pk").values_list("pk", flat=True)
    )


def conversation_count(user_id: int) -> int:
    return Conversation.objects.filter(owner_id=user_id).count()


def deletion_counts(user_ids: list[int]) -> dict[str, int]:
    """What deleting these accounts removes, in numbers (three queries)."""
    return {
        "conversations": Conversation.objects.filter(owner_id__in=user_ids).count(),
        "messages": Message.objects.filter(conversation__owner_id__in=user_ids).count(),
        "api_calls": Completion.objects.filter(
            user_id__in=user_ids, conversation__isnull=True
        ).count(),
    }


def api_keys(user_id: int) -> list[dict[str, Any]]:
    """What a key list shows of each key, oldest first: never its secret or its hash."""
    rows = ApiKey.objects.filter(user_id=user_id).order_by("created_at", "pk")
    return list(
        rows.values("name", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at")
    )


def staff_access(user_id: int) -> list[dict[str, Any]]:
    """Each time staff opened or exported one of the person's conversations or API calls,
    oldest first (one query); `actor` is None once that staff member's account is gone."""
    rows = AuditSubject.objects.filter(owner_id=user_id).order_by("created_at", "pk")
    return [
        {
            "action": row["event__action"],
            "actor": row["event__actor__username"],
            "at": row["created_at"],
            "conversation_id": row["conversation_id"],
            "completion_id": row["completion_id"],
        }
        for row in rows.values(
            "event__action",
            "event__actor__username",
            "created_at",
            "conversation_id",
            "completion_id",
        )
    ]


def usage_start(user) -> date:
    """The first day of the person's usage: the day they joined, or an earlier day with
    calls of theirs, so that the download leaves none out."""
    days = [timezone.localdate(user.date_joined)]
    first_call = Completion.objects.filter(user_id=user.pk).aggregate(first=Min("queued_at"))
    if first_call["first"] is not None:
        days.append(timezone.localdate(first_call["first"]))
    first_day = UsageDay.objects.filter(user_id=user.pk).aggregate(first=Min("day"))
    if first_day["first"] is not None:
        days.append(first_day["first"])
    return min(days)
