"""Usage reports (reads): totals, per day, per model and per user, aggregated in SQL.

A range is whole days in the site time zone, both ends included; a call counts on
the day it was queued. Tokens are the sums of the `usage` the upstream returned.
Cost is the sum of the costs stored when each call finished (Decimal, at the price
then in force). Calls with usage but without a price are counted in `unpriced`, and
a row with only such calls has cost None ("no price"), never a silent 0. Usage the
upstream did not report (estimated from the text) is counted in `estimated`.

Calls whose rows are gone (a deleted conversation, a retention purge, a deleted account)
are counted from their daily rows (billing.UsageDay): every report adds those to the
calls still stored, so totals never change when detail goes. A deleted account's rows
have no user (user_id None, no username).

A group's usage (Django's auth.Group) is that of its current members, over the whole
range: someone who joins brings their usage with them, and someone in two groups counts
in both. So a group's totals are the sum of its members' own reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import Group
from django.db.models import Count, F, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from conversations.billing.models import UsageDay
from conversations.billing.usage_days import METRICS as DAY_METRICS
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


def completions_in(
    start: date, end: date, user_id: int | None = None, *, group_id: int | None = None
) -> QuerySet[Completion]:
    """Completions queued in the range (one user's, one group's current members', or
    everyone's); uses the queued_at indexes."""
    since, until = day_bounds(start, end)
    rows = Completion.objects.filter(queued_at__gte=since, queued_at__lt=until)
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    if group_id is not None:
        # (user, group) is unique in the membership table: each call is joined once.
        rows = rows.filter(user__groups=group_id)
    # Clear the model's default ordering so it never ends up in GROUP BY.
    return rows.order_by()


def days_in(
    start: date, end: date, user_id: int | None = None, *, group_id: int | None = None
) -> QuerySet[UsageDay]:
    """The daily rows of removed calls in the range (one user's, one group's current
    members', or everyone's)."""
    rows = UsageDay.objects.filter(day__gte=start, day__lte=end)
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    if group_id is not None:
        rows = rows.filter(user__groups=group_id)
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


def _day_metrics() -> dict[str, Any]:
    """The same figures summed from daily rows (prefixed: the names are its fields')."""
    priced = Q(cost__isnull=False)
    return {
        **{f"d_{name}": Sum(name, default=0) for name in DAY_METRICS},
        "d_currency_low": Min("currency", filter=priced),
        "d_currency_high": Max("currency", filter=priced),
        "d_cost": Sum("cost"),
    }


def _unprefixed(row: dict[str, Any]) -> dict[str, Any]:
    return {name.removeprefix("d_"): value for name, value in row.items()}


def _add(row: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Two rows of SQL aggregates as one (before `_finish`)."""
    for name in DAY_METRICS:
        row[name] = (row[name] or 0) + (other[name] or 0)
    lows = [c for c in (row["currency_low"], other["currency_low"]) if c]
    highs = [c for c in (row["currency_high"], other["currency_high"]) if c]
    row["currency_low"] = min(lows) if lows else None
    row["currency_high"] = max(highs) if highs else None
    costs = [c for c in (row["cost"], other["cost"]) if c is not None]
    row["cost"] = sum(costs, Decimal(0)) if costs else None
    return row


def _merged(calls: Iterable[dict], days: Iterable[dict], key: tuple[str, ...]) -> list[dict]:
    """Grouped rows of stored calls and of daily rows, added up where their keys meet."""
    rows = {tuple(row[name] for name in key): row for row in calls}
    for day_row in days:
        day_row = _unprefixed(day_row)
        at = tuple(day_row[name] for name in key)
        rows[at] = _add(rows[at], day_row) if at in rows else day_row
    return [_finish(row) for row in rows.values()]


def _totals(calls: QuerySet[Completion], days: QuerySet[UsageDay]) -> dict[str, Any]:
    """The totals of calls and daily rows (two queries)."""
    return _finish(
        _add(calls.aggregate(**_metrics()), _unprefixed(days.aggregate(**_day_metrics())))
    )


# Costs are stored with 8 decimal places; a sum is given with as many. (SQLite sums
# decimals as floating point: this also drops its rounding noise, 0.00999999999999976.)
COST_PLACES = Decimal("0.00000001")


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    """Turn the SQL aggregates of one row into the report's fields."""
    if row["cost"] is not None:
        row["cost"] = Decimal(row["cost"]).quantize(COST_PLACES)
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
    """One user's totals for the range (two queries)."""
    return _totals(completions_in(start, end, user_id), days_in(start, end, user_id))


def per_day(
    user_id: int | None,
    start: date,
    end: date,
    *,
    fill: bool = True,
    group_id: int | None = None,
) -> list[dict]:
    """Rows per day (key `day`, a date in the site time zone), oldest first: of one user,
    one group (`group_id`) or everyone.

    With `fill`, days without calls are included as zero rows (for the chart)."""
    day = TruncDate("queued_at", tzinfo=timezone.get_current_timezone())
    calls = completions_in(start, end, user_id, group_id=group_id).annotate(day=day).values("day")
    removed = days_in(start, end, user_id, group_id=group_id).values("day")
    merged = _merged(calls.annotate(**_metrics()), removed.annotate(**_day_metrics()), key=("day",))
    rows = {row["day"]: row for row in sorted(merged, key=lambda row: row["day"])}
    if not fill:
        return list(rows.values())
    days = (start + timedelta(days=i) for i in range((end - start).days + 1))
    return [rows.get(d) or {"day": d, **_empty_row()} for d in days]


def per_model(
    user_id: int | None, start: date, end: date, *, group_id: int | None = None
) -> list[dict]:
    """Rows per model asked for, its provider and source (keys `model`, `provider_name`:
    "" for the environment's own, `source`: the browser or the API), most tokens first:
    of one user, one group (`group_id`) or everyone."""
    key = ("model", "provider_name", "source")
    rows = _merged(
        completions_in(start, end, user_id, group_id=group_id).values(*key).annotate(**_metrics()),
        days_in(start, end, user_id, group_id=group_id).values(*key).annotate(**_day_metrics()),
        key=key,
    )
    rows.sort(
        key=lambda row: (-row["total_tokens"], row["model"], row["provider_name"], row["source"])
    )
    return rows


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
        key=lambda row: (
            row["username"].casefold(),
            row.get("model", ""),
            row.get("provider_name", ""),
            row.get("source", ""),
        )
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

    Keys: user_id, username, [model,] source and the metrics. Three queries: the
    aggregate groups by user id alone (no join, so PostgreSQL can aggregate in parallel),
    the daily rows of removed calls alike, then the names of those users. The usage of
    deleted accounts is one row with user_id None and no username."""
    group = ["user_id", *(["model", "provider_name"] if by_model else []), "source"]
    rows = _merged(
        completions_in(start, end).values(*group).annotate(**_metrics()),
        days_in(start, end).values(*group).annotate(**_day_metrics()),
        key=tuple(group),
    )
    names = dict(
        get_user_model()
        .objects.filter(pk__in={row["user_id"] for row in rows})
        .values_list("pk", "username")
    )
    for row in rows:
        row["username"] = names.get(row["user_id"], "")
    return _sorted(rows, clean_order(order, by_model=by_model))


def all_users_total(start: date, end: date) -> dict[str, Any]:
    """Everyone's totals for the range (two queries)."""
    return _totals(completions_in(start, end), days_in(start, end))


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
    """A user's totals, days and models for the range (six queries)."""
    return {
        "summary": user_summary(user_id, start, end),
        "days": per_day(user_id, start, end),
        "models": per_model(user_id, start, end),
    }


# --- Groups: the usage of each group's current members ---


def group_summary(group_id: int, start: date, end: date) -> dict[str, Any]:
    """A group's totals for the range (two queries)."""
    return _totals(
        completions_in(start, end, group_id=group_id), days_in(start, end, group_id=group_id)
    )


def group_drilldown(group_id: int, start: date, end: date) -> dict[str, Any]:
    """A group's totals, days and models for the range (six queries)."""
    return {
        "summary": group_summary(group_id, start, end),
        "days": per_day(None, start, end, group_id=group_id),
        "models": per_model(None, start, end, group_id=group_id),
    }


def per_group(start: date, end: date, group_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Each group's totals by group id, zeros for a group without calls (two queries, however
    many groups: each kind of row is grouped by the membership's group)."""
    ids = list(group_ids)
    member_of = F("user__groups")
    rows = _merged(
        completions_in(start, end)
        .values(group_id=member_of)
        .filter(group_id__in=ids)
        .annotate(**_metrics()),
        days_in(start, end)
        .values(group_id=member_of)
        .filter(group_id__in=ids)
        .annotate(**_day_metrics()),
        key=("group_id",),
    )
    found = {row["group_id"]: row for row in rows}
    return {pk: found.get(pk) or {"group_id": pk, **_empty_row()} for pk in ids}


def group_rows(start: date, end: date, groups: Iterable[Group]) -> list[dict[str, Any]]:
    """A report row per group (keys group_id, name, members and the metrics), in the order
    given; each group needs a `members` count (selectors.visible_groups gives it)."""
    groups = list(groups)
    usage = per_group(start, end, [group.pk for group in groups])
    return [{**usage[group.pk], "name": group.name, "members": group.members} for group in groups]


def group_members(group_id: int) -> QuerySet:
    """The group's current members as (id, username), A to Z."""
    return (
        get_user_model()
        .objects.filter(groups=group_id)
        .order_by("username", "pk")
        .values_list("pk", "username")
    )


def per_member(
    group_id: int,
    start: date,
    end: date,
    members: Sequence[tuple[int, str]] | None = None,
) -> list[dict[str, Any]]:
    """A row per member (keys user_id, username and the metrics), zeros for one without
    calls: the (id, username) pairs of `members` (a page of them) in their order, or every
    current member (three queries then: the members too)."""
    calls = completions_in(start, end, group_id=group_id)
    days = days_in(start, end, group_id=group_id)
    if members is None:
        members = list(group_members(group_id))
    else:
        ids = [pk for pk, _name in members]
        calls, days = calls.filter(user_id__in=ids), days.filter(user_id__in=ids)
    rows = _merged(
        calls.values("user_id").annotate(**_metrics()),
        days.values("user_id").annotate(**_day_metrics()),
        key=("user_id",),
    )
    found = {row["user_id"]: row for row in rows}
    return [
        {**(found.get(pk) or _empty_row()), "user_id": pk, "username": name} for pk, name in members
    ]


def report_user(user_id: int) -> AbstractBaseUser | None:
    """The user a staff drill-down is about, or None."""
    return get_user_model().objects.filter(pk=user_id).first()


def cost_text(cost: Decimal | None) -> str:
    """A cost as written on pages and in CSV: exact, without trailing zeros past the cents."""
    if cost is None:
        return ""
    whole, _, frac = f"{cost:f}".partition(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"
