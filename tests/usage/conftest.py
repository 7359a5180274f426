"""Fixtures of the usage tests: a model's price and a known history of calls."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.chat.services import conversations as chat_services
from conversations.models import Completion, ModelPrice
from tests.usage.helpers import COMPLETION_RATE, DAY1, DAY2, PROMPT_RATE, at, chat


@pytest.fixture
def price(db) -> ModelPrice:
    return ModelPrice.objects.create(
        model="gpt-4o-mini",
        prompt_price_per_million=PROMPT_RATE,
        completion_price_per_million=COMPLETION_RATE,
        currency="USD",
        valid_from=timezone.now() - timedelta(days=3650),
    )


@pytest.fixture
def history(alice, bob, price, simulator, enqueued, send):
    """alice: two priced calls on DAY1, one on DAY2, one unpriced (gpt-4o) on DAY2;
    bob: one priced call on DAY1."""
    mini = chat_services.conversation_create(owner=alice, model="gpt-4o-mini")
    big = chat_services.conversation_create(owner=alice, model="gpt-4o")
    bobs = chat_services.conversation_create(owner=bob, model="gpt-4o-mini")
    calls = {
        "a1": chat(send, enqueued, mini, "/echo one two three", on=at(DAY1, 9)),
        "a2": chat(send, enqueued, mini, "/echo four five, six!", on=at(DAY1, 15)),
        "a3": chat(send, enqueued, mini, "/echo seven", on=at(DAY2)),
        "a4": chat(send, enqueued, big, "/echo eight nine", on=at(DAY2)),
        "b1": chat(send, enqueued, bobs, "/echo bob says hello there", on=at(DAY1)),
    }
    assert all(c.status == Completion.Status.SUCCEEDED for c in calls.values())
    return calls
