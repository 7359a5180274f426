"""Retention: conversations idle past the site's limit (or the limit of their owner's
groups, accounts.GroupRetention), temporary chats past their day, and API calls older
than the limit are deleted by a beat task, in small batches.

Each batch is its own short transaction over at most RETENTION_BATCH_SIZE conversations
(or calls), picked by primary key with SKIP LOCKED on PostgreSQL: no table lock, a page
or a worker holding one of the rows is never waited on (its row waits for the next run),
and a run stopped half-way leaves only whole batches done, so the next run goes on from
there. Before their rows go, what the calls used is folded into daily usage rows
(billing.UsageDay), so reports and budgets keep their totals. Flagged conversations are
kept until unflagged, and so are chats with a reply still being written. Each run that
deleted something leaves one audit record with the counts (never content).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from conversations.accounts.models import GroupRetention
from conversations.accounts.selectors import site_settings
from conversations.chat.models import Completion, Conversation
from conversations.chat.services.conversations import completions_delete, conversations_delete
from conversations.review.models import AuditEvent
from conversations.review.services import audit_record

logger = logging.getLogger(__name__)


@dataclass
class Purged:
    """What a run deleted: counts only."""

    conversations: int = 0
    messages: int = 0
    completions: int = 0
    temporary: int = 0
    api_calls: int = 0
    batches: int = 0
    # Whether a kind of row had more to delete than this run's batches allowed.
    unfinished: bool = False

    @property
    def anything(self) -> bool:
        return bool(self.conversations or self.api_calls)

    def add(self, counts: dict[str, int]) -> None:
        self.conversations += counts["conversations"]
        self.messages += counts["messages"]
        self.completions += counts["completions"]


def _replying() -> Exists:
    return Exists(
        Completion.objects.filter(conversation_id=OuterRef("pk"), status__in=Completion.ACTIVE)
    )


def idle_conversations(cutoff: datetime) -> QuerySet[Conversation]:
    """Conversations with no activity since `cutoff`, neither flagged nor replying."""
    return Conversation.objects.filter(last_activity_at__lt=cutoff, flagged=False).exclude(
        _replying()
    )


def expired_temporary_chats(now: datetime) -> QuerySet[Conversation]:
    """Temporary chats whose last message is a day old (TEMPORARY_CHAT_HOURS)."""
    cutoff = now - timedelta(hours=settings.TEMPORARY_CHAT_HOURS)
    return (
        Conversation.objects.exclude(temporary="")
        .filter(last_activity_at__lt=cutoff, flagged=False)
        .exclude(_replying())
    )


def old_api_calls(cutoff: datetime) -> QuerySet[Completion]:
    """Calls to the site's API (no conversation) queued before `cutoff` that have ended."""
    return Completion.objects.filter(
        source=Completion.Source.API, conversation__isnull=True, queued_at__lt=cutoff
    ).exclude(status__in=Completion.ACTIVE)


@dataclass(frozen=True)
class Rule:
    """Whose rows are kept `days` idle days: the members of `groups` (everyone when None)
    who are in none of `exempt` (the groups whose rule keeps rows longer)."""

    days: int
    groups: tuple[int, ...] | None
    exempt: tuple[int, ...]

    def applied(self, rows: QuerySet, owner: str) -> QuerySet:
        """`rows` narrowed to the people this rule governs (`owner`: their user field)."""
        members = get_user_model().objects.filter
        if self.groups is not None:
            rows = rows.filter(**{f"{owner}__in": members(groups__in=self.groups).values("pk")})
        if self.exempt:
            rows = rows.exclude(**{f"{owner}__in": members(groups__in=self.exempt).values("pk")})
        return rows


def retention_rules(site_days: int | None) -> list[Rule]:
    """The site's limit for people in no group with a retention of its own, and one rule
    per number of days the groups set. Someone in several such groups is kept by the
    longest (a group with no limit keeps theirs until they delete them)."""
    groups = dict(GroupRetention.objects.values_list("group_id", "retention_days"))
    rules = [Rule(site_days, None, tuple(sorted(groups)))] if site_days else []
    for days in sorted({days for days in groups.values() if days}):
        these = tuple(sorted(group for group, kept in groups.items() if kept == days))
        longer = [group for group, kept in groups.items() if kept is None or kept > days]
        rules.append(Rule(days, these, tuple(sorted(longer))))
    return rules


def _pick(rows: QuerySet, size: int) -> list[int]:
    """Up to `size` primary keys, locked for this transaction (others' locked rows skipped)."""
    if connection.features.has_select_for_update_skip_locked:
        rows = rows.select_for_update(skip_locked=True, of=("self",))
    return list(rows.order_by("pk").values_list("pk", flat=True)[:size])


def conversations_batch(*, candidates: QuerySet[Conversation], size: int) -> dict[str, int]:
    """Delete one batch (at most `size`) of `candidates`, in one transaction of its own."""
    with transaction.atomic():
        ids = _pick(candidates, size)
        if not ids:
            return {"conversations": 0, "messages": 0, "completions": 0}
        return conversations_delete(conversations=Conversation.objects.filter(pk__in=ids))


def api_calls_batch(*, candidates: QuerySet[Completion], size: int) -> int:
    """Fold and delete one batch (at most `size`) of API calls, in one transaction."""
    with transaction.atomic():
        ids = _pick(candidates, size)
        return completions_delete(completions=Completion.objects.filter(pk__in=ids))


def retention_purge(
    *, now: datetime | None = None, batch_size: int | None = None, max_batches: int | None = None
) -> Purged:
    """One run of the purge: idle conversations (when the site keeps them N days), expired
    temporary chats, old API calls. Returns the counts and records them in the audit."""
    now = now or timezone.now()
    size = batch_size or settings.RETENTION_BATCH_SIZE
    most = max_batches or settings.RETENTION_MAX_BATCHES
    days = site_settings().retention_days
    done = Purged()

    def drain(batch) -> None:
        """Run batches until one comes back short, `most` of them at most."""
        for _ in range(most):
            done.batches += 1
            if batch() < size:
                return
        done.unfinished = True

    def conversations_of(candidates: QuerySet[Conversation], *, temporary: bool = False):
        def batch() -> int:
            counts = conversations_batch(candidates=candidates, size=size)
            done.add(counts)
            done.temporary += counts["conversations"] if temporary else 0
            return counts["conversations"]

        return batch

    def api_calls_of(candidates: QuerySet[Completion]):
        def batch() -> int:
            deleted = api_calls_batch(candidates=candidates, size=size)
            done.api_calls += deleted
            return deleted

        return batch

    drain(conversations_of(expired_temporary_chats(now), temporary=True))
    rules = retention_rules(days)
    for rule in rules:
        cutoff = now - timedelta(days=rule.days)
        drain(conversations_of(rule.applied(idle_conversations(cutoff), "owner")))
        drain(api_calls_of(rule.applied(old_api_calls(cutoff), "user")))
    if done.anything:
        audit_record(
            actor=None,
            action=AuditEvent.Action.RETENTION_PURGE,
            details={
                "conversations": done.conversations,
                "temporary_chats": done.temporary,
                "messages": done.messages,
                "completions": done.completions + done.api_calls,
                "api_calls": done.api_calls,
                "batches": done.batches,
                "unfinished": done.unfinished,
                "retention_days": days,
                "group_rules": len(rules) - (1 if days else 0),
            },
        )
        logger.info(
            "Retention: deleted %s conversations (%s temporary), %s messages, %s API calls",
            done.conversations,
            done.temporary,
            done.messages,
            done.api_calls,
        )
    return done
