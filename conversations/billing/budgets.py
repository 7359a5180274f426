"""Monthly budgets: reserve before a call is queued, settle to the real usage when it
succeeds, release when it fails.

The user's BudgetPeriod row for the month is locked (SELECT ... FOR UPDATE) while
reserving, so parallel sends see each other's reservations: a user can overshoot
the limit only by what a reply uses beyond its own reservation.

A group's budget is pooled across its members: the call reserves against the user's
period and against each budgeted group's period (GroupBudgetPeriod, locked after the
user's, in group id order) in the same transaction, and must fit every limit. The
reservation remembers its groups (Completion.budget_groups), so that settling or
releasing it touches the same rows even if the person changed groups meanwhile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import Exists, F, OuterRef, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.upstream.protocol import estimate_tokens

from . import pricing
from .models import BudgetPeriod, GroupBudget, GroupBudgetPeriod, UserBudget

# Without max_tokens a reply is assumed to use this many tokens when reserving.
DEFAULT_REPLY_TOKENS = 1024


class BudgetExceeded(ValidationError):
    """The call would take the user past their monthly limit; nothing is queued."""


@dataclass(frozen=True)
class GroupLimit:
    """A group's pooled monthly limit (None: no limit of that kind)."""

    group_id: int
    name: str
    tokens: int | None
    cost: Decimal | None

    @property
    def any(self) -> bool:
        return self.tokens is not None or self.cost is not None


@dataclass(frozen=True)
class Limits:
    tokens: int | None
    cost: Decimal | None
    # The budgeted groups the user is in, by group id.
    groups: tuple[GroupLimit, ...] = ()

    @property
    def any(self) -> bool:
        return self.tokens is not None or self.cost is not None or bool(self.groups)


def group_limits(user_id: int) -> tuple[GroupLimit, ...]:
    """The pooled limits of the groups the user is in (one query)."""
    rows = (
        GroupBudget.objects.filter(group__user=user_id)
        .exclude(monthly_token_limit__isnull=True, monthly_cost_limit__isnull=True)
        .order_by("group_id")
        .values_list("group_id", "group__name", "monthly_token_limit", "monthly_cost_limit")
    )
    return tuple(GroupLimit(*row) for row in rows)


def in_budgeted_group(user_ref: str = "pk") -> Exists:
    """An annotation: whether the user (`user_ref` of the outer query) is in a group with
    a budget, so that the query that reads a user's own limits tells whether a second
    one for the groups' is needed."""
    return Exists(GroupBudget.objects.filter(group__user=OuterRef(user_ref)))


def limits_for(user_id: int) -> Limits:
    return limits_of(
        UserBudget.objects.filter(user_id=user_id).first(), groups=group_limits(user_id)
    )


def limits_of(override: UserBudget | None, *, groups: tuple[GroupLimit, ...] = ()) -> Limits:
    """The limits in force given the user's own override row, if any, and the limits of
    their budgeted groups (which an "unlimited" override does not lift)."""
    site = Limits(settings.BUDGET_MONTHLY_TOKENS, settings.BUDGET_MONTHLY_COST, groups)
    if override is None:
        return site
    if override.unlimited:
        return Limits(None, None, groups)
    return Limits(
        override.monthly_token_limit if override.monthly_token_limit is not None else site.tokens,
        override.monthly_cost_limit if override.monthly_cost_limit is not None else site.cost,
        groups,
    )


def override_of(user) -> UserBudget | None:
    """The user's own limits row (read with `select_related("budget")`), if they have one."""
    try:
        return user.budget
    except ObjectDoesNotExist:
        return None


def month_of(moment) -> date:
    return timezone.localtime(moment).date().replace(day=1)


def reservation_tokens(body: dict) -> int:
    """What a call may use at most: its prompt (estimated) plus the most each reply may use."""
    prompt = estimate_tokens(json.dumps(body.get("messages", []), ensure_ascii=False))
    reply = body.get("max_tokens") or DEFAULT_REPLY_TOKENS
    return prompt + reply * (body.get("n") or 1)


@dataclass(frozen=True)
class Reservation:
    tokens: int = 0
    cost: Decimal = Decimal(0)
    # The groups reserved against; None for a call made without a reservation (a title
    # call), whose use counts for the budgeted groups the user is in when it ends.
    groups: tuple[int, ...] | None = ()


# A call that reserved nothing ahead: what it used counts for the user's groups of now.
UNRESERVED = Reservation(groups=None)


def reservation_of(completion) -> Reservation:
    """The reservation a completion's row keeps (its tokens, cost and groups)."""
    return Reservation(
        tokens=completion.reserved_tokens,
        cost=completion.reserved_cost,
        groups=tuple(completion.budget_groups or ()),
    )


def _locked(model, month: date, **owner) -> BudgetPeriod | GroupBudgetPeriod:
    # NO KEY locks throughout (see chat.limits.sender_lock); a missing row is inserted with
    # ON CONFLICT DO NOTHING, so two first calls of the month never fail on the unique key.
    rows = model.objects.select_for_update(no_key=True).filter(month=month, **owner)
    period = rows.first()
    if period is None:
        model.objects.bulk_create([model(month=month, **owner)], ignore_conflicts=True)
        period = rows.get()
    return period


def _with_note(text: str, saved_note: bool) -> str:
    # The chat keeps the person's message; an API call has nothing to keep.
    if not saved_note:
        return text
    return "%s %s" % (text, _("Your message is saved but was not sent."))  # noqa: UP031


def _check(
    period: BudgetPeriod | GroupBudgetPeriod,
    limits: Limits | GroupLimit,
    tokens: int,
    cost: Decimal,
    *,
    saved_note: bool = True,
) -> None:
    group = limits.name if isinstance(limits, GroupLimit) else None
    if limits.tokens is not None:
        committed = period.used_tokens + period.reserved_tokens
        if committed + tokens > limits.tokens:
            values = {"used": committed, "limit": limits.tokens, "need": tokens, "group": group}
            if group is None:
                text = _(
                    "Monthly token budget reached: %(used)s of %(limit)s tokens used or "
                    "reserved, and this message needs about %(need)s."
                )
            else:
                text = _(
                    "The monthly token budget of the group %(group)s is reached: %(used)s "
                    "of %(limit)s tokens used or reserved, and this message needs about "
                    "%(need)s."
                )
            code = "budget_tokens" if group is None else "group_budget_tokens"
            raise BudgetExceeded(_with_note(text % values, saved_note), code=code)
    if limits.cost is not None:
        committed_cost = period.used_cost + period.reserved_cost
        if committed_cost + cost > limits.cost:
            values = {
                "used": committed_cost.quantize(Decimal("0.0001")),
                "limit": limits.cost,
                "group": group,
            }
            if group is None:
                text = _("Monthly cost budget reached: %(used)s of %(limit)s used or reserved.")
            else:
                text = _(
                    "The monthly cost budget of the group %(group)s is reached: %(used)s of "
                    "%(limit)s used or reserved."
                )
            code = "budget_cost" if group is None else "group_budget_cost"
            raise BudgetExceeded(_with_note(text % values, saved_note), code=code)


def reserve(
    *,
    user_id: int,
    model: str,
    body: dict,
    at: datetime,
    limits: Limits | None = None,
    saved_note: bool = True,
    provider_id: int | None = None,
) -> Reservation:
    """Reserve what a call about to be queued may use, or raise BudgetExceeded. Runs in
    the transaction that queues it (the period row stays locked until it commits).
    `limits` when the caller has them (read with the user's row): then no query at all
    when no limit applies."""
    limits = limits if limits is not None else limits_for(user_id)
    if not limits.any:
        return Reservation()
    tokens = reservation_tokens(body)
    cost = pricing.worst_case_cost(model=model, tokens=tokens, at=at, provider_id=provider_id)
    month = month_of(at)
    # Every row locked and checked before any is changed: a refusal leaves them all alone.
    period = _locked(BudgetPeriod, month, user_id=user_id)
    _check(period, limits, tokens, cost, saved_note=saved_note)
    for group in limits.groups:  # in group id order, as every locker takes them
        _check(
            _locked(GroupBudgetPeriod, month, group_id=group.group_id),
            group,
            tokens,
            cost,
            saved_note=saved_note,
        )
    more = {"reserved_tokens": F("reserved_tokens") + tokens}
    more["reserved_cost"] = F("reserved_cost") + cost
    BudgetPeriod.objects.filter(pk=period.pk).update(**more)
    groups = tuple(group.group_id for group in limits.groups)
    if groups:
        GroupBudgetPeriod.objects.filter(group_id__in=groups, month=month).update(**more)
    return Reservation(tokens=tokens, cost=cost, groups=groups)


def period_adjust(
    *, user_id: int, at: datetime, reserved: Reservation, used_tokens: int, used_cost: Decimal
) -> None:
    """Replace a call's reservation with what it used (nothing, for a call that failed),
    in the user's period and in the periods of the groups it reserved against. The caller
    makes sure it happens once per call."""
    if not (reserved.tokens or reserved.cost or used_tokens or used_cost):
        return
    month = month_of(at)
    change = {
        "reserved_tokens": F("reserved_tokens") - reserved.tokens,
        "reserved_cost": F("reserved_cost") - reserved.cost,
        "used_tokens": F("used_tokens") + used_tokens,
        "used_cost": F("used_cost") + used_cost,
    }
    groups = reserved.groups
    if groups is None:
        groups = tuple(group.group_id for group in group_limits(user_id))
    # One statement per row once the month's row exists (the update takes its lock); the
    # user's row first, then the groups' in id order, as reserving locks them.
    owners = [(BudgetPeriod, {"user_id": user_id})]
    owners += [(GroupBudgetPeriod, {"group_id": group}) for group in sorted(groups)]
    for model, owner in owners:
        if not model.objects.filter(month=month, **owner).update(**change):
            _locked(model, month, **owner)
            model.objects.filter(month=month, **owner).update(**change)


def group_period_start(group_id: int, *, at: datetime | None = None) -> None:
    """A new group budget's month starts from what its members have used this month
    (their own periods' use), so a budget made mid-month is not a fresh allowance."""
    month = month_of(at or timezone.now())
    used = BudgetPeriod.objects.filter(user__groups=group_id, month=month).aggregate(
        tokens=Sum("used_tokens"), cost=Sum("used_cost")
    )
    GroupBudgetPeriod.objects.bulk_create(
        [
            GroupBudgetPeriod(
                group_id=group_id,
                month=month,
                used_tokens=used["tokens"] or 0,
                used_cost=used["cost"] or Decimal(0),
            )
        ],
        ignore_conflicts=True,
    )


def period_usage(user_id: int, month: date | None = None) -> BudgetPeriod:
    """This month's used and reserved totals (unsaved zero row when none yet)."""
    month = month or month_of(timezone.now())
    return BudgetPeriod.objects.filter(user_id=user_id, month=month).first() or BudgetPeriod(
        user_id=user_id, month=month
    )


@dataclass(frozen=True)
class BudgetStatus:
    """This month's use against the user's limits, for the usage page."""

    month: date
    limits: Limits | GroupLimit
    used_tokens: int
    reserved_tokens: int
    used_cost: Decimal
    reserved_cost: Decimal

    @staticmethod
    def _percent(value, limit) -> int | None:
        if limit is None:
            return None
        if not limit:
            return 100
        return min(100, int(value * 100 / limit))

    @property
    def committed_tokens(self) -> int:
        return self.used_tokens + self.reserved_tokens

    @property
    def committed_cost(self) -> Decimal:
        return self.used_cost + self.reserved_cost

    @property
    def token_percent(self) -> int | None:
        return self._percent(self.committed_tokens, self.limits.tokens)

    @property
    def cost_percent(self) -> int | None:
        return self._percent(self.committed_cost, self.limits.cost)

    @property
    def exhausted(self) -> bool:
        """No room left this month under a limit (a call not reserved ahead checks this)."""
        tokens, cost = self.limits.tokens, self.limits.cost
        return (tokens is not None and self.committed_tokens >= tokens) or (
            cost is not None and self.committed_cost >= cost
        )

    @property
    def group(self) -> str:
        """The group's name, for a group's meter ("" for the person's own)."""
        return self.limits.name if isinstance(self.limits, GroupLimit) else ""

    @property
    def key(self) -> str:
        """Tells one meter's element ids from another's on a page."""
        if isinstance(self.limits, GroupLimit):
            return f"group-budget-{self.limits.group_id}"
        return "budget"


def budget_status(user_id: int) -> BudgetStatus:
    """The user's limits and this month's used and reserved totals (two queries)."""
    period = period_usage(user_id)
    return BudgetStatus(
        month=period.month,
        # The person's own limits; their groups' have meters of their own.
        limits=limits_of(UserBudget.objects.filter(user_id=user_id).first()),
        used_tokens=period.used_tokens,
        reserved_tokens=period.reserved_tokens,
        used_cost=Decimal(period.used_cost),
        reserved_cost=Decimal(period.reserved_cost),
    )


def group_budget_statuses(user_id: int) -> list[BudgetStatus]:
    """This month's pooled use against each budgeted group the user is in (two queries)."""
    groups = group_limits(user_id)
    if not groups:
        return []
    month = month_of(timezone.now())
    periods = {
        period.group_id: period
        for period in GroupBudgetPeriod.objects.filter(
            group_id__in=[group.group_id for group in groups], month=month
        )
    }
    statuses = []
    for group in groups:
        period = periods.get(group.group_id) or GroupBudgetPeriod(month=month)
        statuses.append(
            BudgetStatus(
                month=month,
                limits=group,
                used_tokens=period.used_tokens,
                reserved_tokens=period.reserved_tokens,
                used_cost=Decimal(period.used_cost),
                reserved_cost=Decimal(period.reserved_cost),
            )
        )
    return statuses


def exhausted(user_id: int) -> bool:
    """No room left this month under the user's own limits or a group's (a call that is
    not reserved ahead, a title, checks this)."""
    return budget_status(user_id).exhausted or any(
        status.exhausted for status in group_budget_statuses(user_id)
    )
