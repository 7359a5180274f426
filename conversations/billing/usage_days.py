"""Folding calls into daily usage rows (UsageDay) before their rows are deleted: a deleted
conversation, a retention purge, a deleted account. The usage reports add these rows to
the calls still stored, so their totals never change when detail goes.

The aggregation is one grouped query over the calls about to go, in the transaction that
deletes them: a call is either still a row or already in a UsageDay, never both or
neither.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.db.models import Count, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from .models import UsageDay

METRICS = (
    "requests",
    "failed",
    "title_calls",
    "unpriced",
    "estimated",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
)


def _grouped(completions: QuerySet) -> QuerySet:
    """The calls' usage per user, day, model, source and currency (one query). The field
    names are those of chat's Completion, whose rows the caller passes."""
    day = TruncDate("queued_at", tzinfo=timezone.get_current_timezone())
    return (
        completions.order_by()
        .annotate(usage_day=day)
        .values("user_id", "usage_day", "model", "provider_name", "source", "currency")
        .annotate(
            n_failed=Count("pk", filter=Q(status="failed")),
            n_title_calls=Count("pk", filter=Q(purpose="title")),
            n_unpriced=Count("pk", filter=Q(total_tokens__isnull=False, cost__isnull=True)),
            n_estimated=Count("pk", filter=Q(usage_estimated=True)),
            n_requests=Count("pk"),
            n_prompt_tokens=Sum("prompt_tokens", default=0),
            n_completion_tokens=Sum("completion_tokens", default=0),
            n_total_tokens=Sum("total_tokens", default=0),
            n_cost=Sum("cost"),
        )
    )


def usage_fold(*, completions: QuerySet, anonymous: bool = False) -> int:
    """Add the usage of `completions` (a queryset of chat's Completion) to the daily rows;
    `anonymous` drops whose it was (a deleted account). Returns the calls folded. Call it
    in the transaction that deletes them."""
    folded = 0
    with transaction.atomic():
        for group in _grouped(completions):
            figures = {name: group[f"n_{name}"] for name in METRICS}
            folded += figures["requests"]
            key = {
                "user_id": None if anonymous else group["user_id"],
                "day": group["usage_day"],
                "model": group["model"],
                "provider_name": group["provider_name"],
                "source": group["source"],
                "currency": group["currency"],
            }
            if anonymous:
                # Nobody's rows are never merged (NULLs do not meet in the unique key).
                UsageDay.objects.create(**key, **figures, cost=group["n_cost"])
                continue
            UsageDay.objects.bulk_create([UsageDay(**key)], ignore_conflicts=True)
            change = {name: F(name) + value for name, value in figures.items()}
            if group["n_cost"] is not None:
                change["cost"] = Coalesce("cost", Value(Decimal(0))) + group["n_cost"]
            UsageDay.objects.filter(**key).update(**change)
    return folded
