"""Usage reports (reads): totals, per day, per model and per user, aggregated in SQL.

A range is whole days in the site time zone, both ends included; a call counts on
the day it was queued. Tokens are the sums of the `usage` the upstream returned.
Cost is the sum of the costs stored when each call finished (Decimal, at the price
then in force). Calls with usage but without a price are counted in `unpriced`, and
a row with only such calls has cost None ("no price"), never a silent 0. Usage the
upstream did not report (estimated from the text) is counted in `estimated`.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Count, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from conversations.chat.models import Completion

# The columns every report row has, in table order.
METRICS = ("requests", "failed", "prompt_tokens", "completion_tokens", "total_tokens", "cost")

# `?order=` values allowed on the all-users report ("-" first for descending).
ORDERS = ("username", "model", *METRICS)
DEFAULT_ORDER = "-total_tokens"


def default_range(today: date | None = None) -> tuple[date, date]:
    """This month so far: the first of the month to today (site time zone)."""
    today = today or timezone.localdate()
    return today.replace(day=1), today


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00, the day after end 00:00) as aware datetimes in the site time zone."""
    zone = timezone.get_current_timezone()
    return (
        timezone.make_aware(datetime.combine(start, time.min), zone),
        timezone.make_aware(datetime.combine(end + timedelta(days=1), time.min), zone),
    )


def completions_in(start: date, end: date, user_id: int | None = None) -> QuerySet[Completion]:
    """Completions queued in the range (one user's, or everyone's); uses the queued_at indexes."""
    since, until = day_bounds(start, end)
    rows = Completion.objects.filter(queued_at__gte=since, queued_at__lt=until)
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    # Clear the model's default ordering so it never ends up in GROUP BY.
    return rows.order_by()


def _metrics() -> dict[str, Any]:
    # The aggregates that filter on a field come first: once an annotation named
    # like a field ("cost", "prompt_tokens") exists, later references resolve to it.
    priced = Q(cost__isnull=False)
    return {
        "failed": Count("pk", filter=Q(status=Completion.Status.FAILED)),
        # Calls with usage (finished, or cut off with partial text) but no price to cost it.
        "unpriced": Count("pk", filter=Q(total_tokens__isnull=False, cost__isnull=True)),
        # Usage the upstream did not report, estimated from the text.
        "estimated": Count("pk", filter=Q(usage_estimated=True)),
        # The short calls that named conversations (chat.services.titles), among the requests.
        "title_calls": Count("pk", filter=Q(purpose=Completion.Purpose.TITLE)),
        # Two different values mean the costs are in more than one currency.
        "currency_low": Min("currency", filter=priced),
        "currency_high": Max("currency", filter=priced),
        "requests": Count("pk"),
        "prompt_tokens": Sum("prompt_tokens", default=0),
        "completion_tokens": Sum("completion_tokens", default=0),
        "total_tokens": Sum("total_tokens", default=0),
        "cost": Sum("cost"),
    }


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    """Turn the SQL aggregates of one row into the report's fields."""
    low, high = row.pop("currency_low"), row.pop("currency_high")
    row["mixed_currency"] = bool(low and high and low != high)
    row["currency"] = "" if row["mixed_currency"] else (low or "")
    if row["mixed_currency"]:
        # Sums of different currencies mean nothing.
        row["cost"] = None
    elif row["cost"] is None and not row["unpriced"]:
        # Nothing was billed (no calls, or only failed ones): a true zero.
        row["cost"] = Decimal(0)
    row["cost_complete"] = row["cost"] is not None and not row["unpriced"]
    return row


def _empty_row() -> dict[str, Any]:
    return _finish(
        {
            "requests": 0,
            "failed": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "cost": None,
            "unpriced": 0,
            "estimated": 0,
            "title_calls": 0,
            "currency_low": None,
            "currency_high": None,
        }
    )


def user_summary(user_id: int, start: date, end: date) -> dict[str, Any]:
    """One user's totals for the range (one query)."""
    return _finish(completions_in(start, end, user_id).aggregate(**_metrics()))


def per_day(user_id: int | None, start: date, end: date, *, fill: bool = True) -> list[dict]:
    """Rows per day (key `day`, a date in the site time zone), oldest first.

    With `fill`, days without calls are included as zero rows (for the chart)."""
    day = TruncDate("queued_at", tzinfo=timezone.get_current_timezone())
    rows = {
        row["day"]: _finish(row)
        for row in completions_in(start, end, user_id)
        .annotate(day=day)
        .values("day")
        .annotate(**_metrics())
        .order_by("day")
    }
    if not fill:
        return list(rows.values())
    days = (start + timedelta(days=i) for i in range((end - start).days + 1))
    return [rows.get(d) or {"day": d, **_empty_row()} for d in days]


def per_model(user_id: int | None, start: date, end: date) -> list[dict]:
    """Rows per model asked for and source (keys `model`, `source`: the browser or the
    API), most tokens first."""
    return [
        _finish(row)
        for row in completions_in(start, end, user_id)
        .values("model", "source")
        .annotate(**_metrics())
        .order_by("-total_tokens", "model", "source")
    ]


def clean_order(order: str, *, by_model: bool = False) -> str:
    """The `?order=` value to apply: a whitelisted one, else the default."""
    name = order.removeprefix("-")
    if name not in ORDERS or (name == "model" and not by_model):
        return DEFAULT_ORDER
    return order


def _sorted(rows: list[dict], order: str) -> list[dict]:
    """Sort aggregated rows; "no price" last either way, ties by name then model."""
    name, descending = order.removeprefix("-"), order.startswith("-")
    rows.sort(
        key=lambda row: (row["username"].casefold(), row.get("model", ""), row.get("source", ""))
    )
    if name == "username":
        return rows[::-1] if descending else rows
    known = [row for row in rows if row[name] is not None]
    known.sort(key=lambda row: row[name], reverse=descending)  # stable: ties keep name order
    return known + [row for row in rows if row[name] is None]


def all_users(
    start: date, end: date, *, by_model: bool = False, order: str = DEFAULT_ORDER
) -> list[dict]:
    """One row per user and source (the browser or the API) with calls in the range (or
    per user, model and source), sorted by `order`.

    Keys: user_id, username, [model,] source and the metrics. Two queries: the aggregate
    groups by user id alone (no join, so PostgreSQL can aggregate in parallel),
    then the names of those users."""
    group = ["user_id", *(["model"] if by_model else []), "source"]
    aggregated = completions_in(start, end).values(*group).annotate(**_metrics())
    rows = [_finish(row) for row in aggregated]
    names = dict(
        get_user_model()
        .objects.filter(pk__in={row["user_id"] for row in rows})
        .values_list("pk", "username")
    )
    for row in rows:
        row["username"] = names.get(row["user_id"], "")
    return _sorted(rows, clean_order(order, by_model=by_model))


def all_users_total(start: date, end: date) -> dict[str, Any]:
    """Everyone's totals for the range (one query)."""
    return _finish(completions_in(start, end).aggregate(**_metrics()))


def combined(rows: list[dict]) -> dict[str, Any]:
    """The total of report rows already aggregated (saves a second scan of the range)."""
    total = _empty_row()
    for name in ("requests", "failed", "prompt_tokens", "completion_tokens", "total_tokens"):
        total[name] = sum(row[name] for row in rows)
    total["unpriced"] = sum(row["unpriced"] for row in rows)
    total["estimated"] = sum(row["estimated"] for row in rows)
    currencies = {row["currency"] for row in rows if row["currency"]}
    mixed = len(currencies) > 1 or any(row["mixed_currency"] for row in rows)
    costs = [row["cost"] for row in rows if row["cost"] is not None]
    total["mixed_currency"] = mixed
    total["currency"] = "" if mixed else next(iter(currencies), "")
    if mixed:
        total["cost"] = None
    elif costs or not total["unpriced"]:
        total["cost"] = sum(costs, Decimal(0))
    else:
        total["cost"] = None
    total["cost_complete"] = total["cost"] is not None and not total["unpriced"]
    return total


def user_drilldown(user_id: int, start: date, end: date) -> dict[str, Any]:
    """A user's totals, days and models for the range (three queries)."""
    return {
        "summary": user_summary(user_id, start, end),
        "days": per_day(user_id, start, end),
        "models": per_model(user_id, start, end),
    }


def report_user(user_id: int) -> AbstractBaseUser | None:
    """The user a staff drill-down is about, or None."""
    return get_user_model().objects.filter(pk=user_id).first()


def cost_text(cost: Decimal | None) -> str:
    """A cost as written on pages and in CSV: exact, without trailing zeros past the cents."""
    if cost is None:
        return ""
    whole, _, frac = f"{cost:f}".partition(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"
