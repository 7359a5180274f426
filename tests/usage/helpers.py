"""Known usage for the report tests: real calls to the simulator, exact Decimal costs."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from conversations.models import Completion
from conversations.upstream.simulated_text import count_tokens, prompt_tokens

UTC = ZoneInfo("UTC")
DAY1, DAY2 = date(2025, 6, 2), date(2025, 6, 5)
PROMPT_RATE, COMPLETION_RATE = Decimal("0.15"), Decimal("0.6")


def chat(send, enqueued, conversation, text: str, *, on: datetime | None = None) -> Completion:
    """One call through the simulator; `on` moves it to another day afterwards."""
    _, completion = send(conversation, text)
    enqueued.drain()
    if on is not None:
        Completion.objects.filter(pk=completion.pk).update(queued_at=on)
    return Completion.objects.get(pk=completion.pk)


def expected_usage(completion: Completion) -> tuple[int, int]:
    """What the simulator counts for an `/echo` call: (prompt, completion) tokens."""
    messages = completion.request_body["messages"]
    echoed = messages[-1]["content"].removeprefix("/echo ")
    return prompt_tokens(messages), count_tokens(echoed)


def expected_cost(prompt: int, completion: int) -> Decimal:
    cost = (prompt * PROMPT_RATE + completion * COMPLETION_RATE) / Decimal(1_000_000)
    return cost.quantize(Decimal("0.00000001"))


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
