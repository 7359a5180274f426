"""Monthly budgets: reserve before a call is queued, settle to the real usage when it
succeeds, release when it fails.

The user's BudgetPeriod row for the month is locked (SELECT ... FOR UPDATE) while
reserving, so parallel sends see each other's reservations: a user can overshoot
the limit only by what a reply uses beyond its own reservation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import BudgetPeriod, Completion, ModelPrice, UserBudget

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
    site = Limits(settings.BUDGET_MONTHLY_TOKENS, settings.BUDGET_MONTHLY_COST)
    override = UserBudget.objects.filter(user_id=user_id).first()
    if override is None:
        return site
    if override.unlimited:
        return Limits(None, None)
    return Limits(
        override.monthly_token_limit if override.monthly_token_limit is not None else site.tokens,
        override.monthly_cost_limit if override.monthly_cost_limit is not None else site.cost,
    )


def month_of(moment) -> date:
    return timezone.localtime(moment).date().replace(day=1)


def estimate_tokens(body: dict) -> int:
    """Prompt estimate (about four characters a token) plus the most the reply may use."""
    prompt = math.ceil(len(json.dumps(body.get("messages", []), ensure_ascii=False)) / 4)
    reply = body.get("max_tokens") or DEFAULT_REPLY_TOKENS
    return prompt + reply * (body.get("n") or 1)


def _estimate_cost(model: str, tokens: int, at) -> Decimal:
    price = ModelPrice.in_force(model, at)
    if price is None:
        return Decimal(0)
    # The dearer of the two rates, so the reservation covers the worst case.
    rate = max(price.prompt_price_per_million, price.completion_price_per_million)
    return (Decimal(tokens) * rate / Decimal(1_000_000)).quantize(Decimal("0.00000001"))


def _locked_period(user_id: int, month: date) -> BudgetPeriod:
    # NO KEY locks throughout (see limits.sender_lock); a missing row is inserted with ON
    # CONFLICT DO NOTHING, so two first calls of the month never fail on the unique key.
    rows = BudgetPeriod.objects.select_for_update(no_key=True).filter(user_id=user_id, month=month)
    period = rows.first()
    if period is None:
        BudgetPeriod.objects.bulk_create(
            [BudgetPeriod(user_id=user_id, month=month)], ignore_conflicts=True
        )
        period = rows.get()
    return period


def completion_reserve(*, completion: Completion) -> None:
    """Reserve the expected use of a queued completion, or raise BudgetExceeded.

    Must run inside the transaction that creates the completion."""
    limits = limits_for(completion.user_id)
    if not limits.any:
        return
    tokens = estimate_tokens(completion.request_body)
    cost = _estimate_cost(completion.model, tokens, completion.queued_at)
    period = _locked_period(completion.user_id, month_of(completion.queued_at))
    if limits.tokens is not None:
        committed = period.used_tokens + period.reserved_tokens
        if committed + tokens > limits.tokens:
            raise BudgetExceeded(
                _(
                    "Monthly token budget reached: %(used)s of %(limit)s tokens used or "
                    "reserved, and this message needs about %(need)s. Your message is saved "
                    "but was not sent."
                )
                % {"used": committed, "limit": limits.tokens, "need": tokens},
                code="budget_tokens",
            )
    if limits.cost is not None:
        committed_cost = period.used_cost + period.reserved_cost
        if committed_cost + cost > limits.cost:
            raise BudgetExceeded(
                _(
                    "Monthly cost budget reached: %(used)s of %(limit)s used or reserved. "
                    "Your message is saved but was not sent."
                )
                % {"used": committed_cost.quantize(Decimal("0.0001")), "limit": limits.cost},
                code="budget_cost",
            )
    BudgetPeriod.objects.filter(pk=period.pk).update(
        reserved_tokens=F("reserved_tokens") + tokens, reserved_cost=F("reserved_cost") + cost
    )
    Completion.objects.filter(pk=completion.pk).update(reserved_tokens=tokens, reserved_cost=cost)
    completion.reserved_tokens, completion.reserved_cost = tokens, cost


def _close(completion_id: int, *, used: bool) -> None:
    with transaction.atomic():
        completion = (
            Completion.objects.select_for_update(no_key=True)
            .filter(pk=completion_id, budget_settled=False)
            .only(
                "user_id",
                "queued_at",
                "reserved_tokens",
                "reserved_cost",
                "total_tokens",
                "cost",
            )
            .first()
        )
        if completion is None:
            return
        tokens = (completion.total_tokens or 0) if used else 0
        cost = (completion.cost or Decimal(0)) if used else Decimal(0)
        if completion.reserved_tokens or completion.reserved_cost or tokens or cost:
            period = _locked_period(completion.user_id, month_of(completion.queued_at))
            BudgetPeriod.objects.filter(pk=period.pk).update(
                reserved_tokens=F("reserved_tokens") - completion.reserved_tokens,
                reserved_cost=F("reserved_cost") - completion.reserved_cost,
                used_tokens=F("used_tokens") + tokens,
                used_cost=F("used_cost") + cost,
            )
        Completion.objects.filter(pk=completion_id).update(budget_settled=True)


def completion_settle(*, completion_id: int) -> None:
    """Replace the reservation with what the call really used (once)."""
    _close(completion_id, used=True)


def completion_release(*, completion_id: int) -> None:
    """Give back the reservation of a call that used nothing (once)."""
    _close(completion_id, used=False)


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
