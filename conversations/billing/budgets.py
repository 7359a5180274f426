"""Monthly budgets: reserve before a call is queued, settle to the real usage when it
succeeds, release when it fails.

The user's BudgetPeriod row for the month is locked (SELECT ... FOR UPDATE) while
reserving, so parallel sends see each other's reservations: a user can overshoot
the limit only by what a reply uses beyond its own reservation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.upstream.protocol import estimate_tokens

from . import pricing
from .models import BudgetPeriod, UserBudget

# Without max_tokens a reply is assumed to use this many tokens when reserving.
DEFAULT_REPLY_TOKENS = 1024


class BudgetExceeded(ValidationError):
    """The call would take the user past their monthly limit; nothing is queued."""


@dataclass(frozen=True)
class Limits:
    tokens: int | None
    cost: Decimal | None

    @property
    def any(self) -> bool:
        return self.tokens is not None or self.cost is not None


def limits_for(user_id: int) -> Limits:
    return limits_of(UserBudget.objects.filter(user_id=user_id).first())


def limits_of(override: UserBudget | None) -> Limits:
    """The limits in force given the user's own override row, if any."""
    site = Limits(settings.BUDGET_MONTHLY_TOKENS, settings.BUDGET_MONTHLY_COST)
    if override is None:
        return site
    if override.unlimited:
        return Limits(None, None)
    return Limits(
        override.monthly_token_limit if override.monthly_token_limit is not None else site.tokens,
        override.monthly_cost_limit if override.monthly_cost_limit is not None else site.cost,
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


def _locked_period(user_id: int, month: date) -> BudgetPeriod:
    # NO KEY locks throughout (see chat.limits.sender_lock); a missing row is inserted with
    # ON CONFLICT DO NOTHING, so two first calls of the month never fail on the unique key.
    rows = BudgetPeriod.objects.select_for_update(no_key=True).filter(user_id=user_id, month=month)
    period = rows.first()
    if period is None:
        BudgetPeriod.objects.bulk_create(
            [BudgetPeriod(user_id=user_id, month=month)], ignore_conflicts=True
        )
        period = rows.get()
    return period


def _with_note(text: str, saved_note: bool) -> str:
    # The chat keeps the person's message; an API call has nothing to keep.
    if not saved_note:
        return text
    return "%s %s" % (text, _("Your message is saved but was not sent."))  # noqa: UP031


def _check(
    period: BudgetPeriod, limits: Limits, tokens: int, cost: Decimal, *, saved_note: bool = True
) -> None:
    if limits.tokens is not None:
        committed = period.used_tokens + period.reserved_tokens
        if committed + tokens > limits.tokens:
            text = _(
                "Monthly token budget reached: %(used)s of %(limit)s tokens used or "
                "reserved, and this message needs about %(need)s."
            ) % {"used": committed, "limit": limits.tokens, "need": tokens}
            raise BudgetExceeded(_with_note(text, saved_note), code="budget_tokens")
    if limits.cost is not None:
        committed_cost = period.used_cost + period.reserved_cost
        if committed_cost + cost > limits.cost:
            text = _("Monthly cost budget reached: %(used)s of %(limit)s used or reserved.") % {
                "used": committed_cost.quantize(Decimal("0.0001")),
                "limit": limits.cost,
            }
            raise BudgetExceeded(_with_note(text, saved_note), code="budget_cost")


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
    period = _locked_period(user_id, month_of(at))
    _check(period, limits, tokens, cost, saved_note=saved_note)
    BudgetPeriod.objects.filter(pk=period.pk).update(
        reserved_tokens=F("reserved_tokens") + tokens, reserved_cost=F("reserved_cost") + cost
    )
    return Reservation(tokens=tokens, cost=cost)


def period_adjust(
    *, user_id: int, at: datetime, reserved: Reservation, used_tokens: int, used_cost: Decimal
) -> None:
    """Replace a call's reservation with what it used (nothing, for a call that failed).
    The caller makes sure it happens once per call."""
    if not (reserved.tokens or reserved.cost or used_tokens or used_cost):
        return
    month = month_of(at)
    change = {
        "reserved_tokens": F("reserved_tokens") - reserved.tokens,
        "reserved_cost": F("reserved_cost") - reserved.cost,
        "used_tokens": F("used_tokens") + used_tokens,
        "used_cost": F("used_cost") + used_cost,
    }
    # One statement once the month's row exists (the update takes its lock).
    if not BudgetPeriod.objects.filter(user_id=user_id, month=month).update(**change):
        _locked_period(user_id, month)
        BudgetPeriod.objects.filter(user_id=user_id, month=month).update(**change)


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
    limits: Limits
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


def budget_status(user_id: int) -> BudgetStatus:
    """The user's limits and this month's used and reserved totals (two queries)."""
    period = period_usage(user_id)
    return BudgetStatus(
        month=period.month,
        limits=limits_for(user_id),
        used_tokens=period.used_tokens,
        reserved_tokens=period.reserved_tokens,
        used_cost=Decimal(period.used_cost),
        reserved_cost=Decimal(period.reserved_cost),
    )
