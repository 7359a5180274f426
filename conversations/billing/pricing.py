"""Prices and costs: every cost figure of the site goes through here."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from .models import ModelPrice

COST_PLACES = Decimal("0.00000001")
PER = Decimal(1_000_000)


def price_in_force(model: str, at: datetime, provider_id: int | None = None) -> ModelPrice | None:
    """The model's price at moment `at` on a provider (None: the environment's own): the
    newest row not in the future."""
    prices = ModelPrice.objects.filter(provider_id=provider_id, model=model, valid_from__lte=at)
    return prices.order_by("-valid_from").first()


def cost_of(price: ModelPrice, *, prompt_tokens: int, completion_tokens: int) -> Decimal:
    cost = (
        Decimal(prompt_tokens) * price.prompt_price_per_million
        + Decimal(completion_tokens) * price.completion_price_per_million
    ) / PER
    return cost.quantize(COST_PLACES)


def priced(
    *,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    at: datetime,
    provider_id: int | None = None,
) -> tuple[ModelPrice | None, Decimal | None]:
    """The price in force at `at` and the cost it gives; (None, None) without a price."""
    price = price_in_force(model, at, provider_id)
    if price is None:
        return None, None
    return price, cost_of(price, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def worst_case_cost(
    *, model: str, tokens: int, at: datetime, provider_id: int | None = None
) -> Decimal:
    """What `tokens` could cost at most: all at the dearer of the two rates (0 unpriced)."""
    price = price_in_force(model, at, provider_id)
    if price is None:
        return Decimal(0)
    rate = max(price.prompt_price_per_million, price.completion_price_per_million)
    return (Decimal(tokens) * rate / PER).quantize(COST_PLACES)
