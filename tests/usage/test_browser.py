"""My usage in a real browser, after a few chats through the real stack."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import formats, timezone

from conversations.models import Completion, ModelPrice
from tests.support import browser_login, wait_for

pytestmark = pytest.mark.browser


def test_my_usage_shows_the_totals_and_the_chart_after_a_few_chats(live_stack, page, alice):
    from playwright.sync_api import expect

    ModelPrice.objects.create(
        model="gpt-4o-mini",
        prompt_price_per_million=Decimal("0.15"),
        completion_price_per_million=Decimal("0.6"),
        valid_from=timezone.now() - timedelta(days=1),
    )
    browser_login(page, live_stack.url, "alice", "alice-password-1")

    replies = ["first reply from the model", "second reply, a little longer than the first"]
    for number, reply in enumerate(replies, start=1):
        page.get_by_role("textbox", name="Message").fill(f"/echo {reply}")
        page.get_by_role("button", name="Send").click()
        expect(page.get_by_text(reply, exact=True)).to_be_visible(timeout=20_000)
        wait_for(
            lambda number=number: (
                Completion.objects.filter(user=alice, status=Completion.Status.SUCCEEDED).count()
                == number
            ),
            timeout=20,
            what=f"reply {number} to be saved",
        )

    totals = Completion.objects.filter(user=alice).aggregate(
        prompt=Sum("prompt_tokens"), reply=Sum("completion_tokens"), total=Sum("total_tokens")
    )
    page.get_by_role("link", name="My usage").click()
    expect(page.get_by_role("heading", name="My usage", level=1)).to_be_visible()

    def total(name: str):
        return page.locator(f"dl.usage-totals div:has(dt:text-is('{name}')) dd")

    expect(total("Requests")).to_have_text("2")
    expect(total("Failed")).to_have_text("0")
    expect(total("Prompt tokens")).to_have_text(str(totals["prompt"]))
    expect(total("Completion tokens")).to_have_text(str(totals["reply"]))
    expect(total("Total tokens")).to_have_text(str(totals["total"]))
    expect(total("Cost")).to_have_text(re.compile(r"^0\.\d+ USD$"))

    chart = page.get_by_role("img", name=re.compile(r"^Tokens per day"))
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 400 and box["height"] > 150
    # Today's bar carries the day's numbers in its tooltip.
    today = formats.date_format(timezone.localdate())
    expect(
        chart.locator("g.bar title", has_text=f"{today}: {totals['total']} tokens")
    ).to_have_count(1)
    expect(page.get_by_role("table", name="Usage per model")).to_contain_text("gpt-4o-mini")
    expect(page.get_by_role("link", name="Download CSV (per model)")).to_be_visible()


def test_the_chart_reads_on_a_phone_in_dark_mode(live_stack, page, alice):
    from playwright.sync_api import expect

    from conversations.chat.services import conversations as chat_services

    conversation = chat_services.conversation_create(owner=alice)
    for days_ago, tokens in ((0, 9378), (1, 12804)):
        Completion.objects.create(
            conversation=conversation,
            user=alice,
            model=conversation.model,
            status=Completion.Status.SUCCEEDED,
            prompt_tokens=tokens - 1000,
            completion_tokens=1000,
            total_tokens=tokens,
            queued_at=timezone.now() - timedelta(days=days_ago),
        )
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 375, "height": 812})
    browser_login(page, live_stack.url, "alice", "alice-password-1")
    page.goto(f"{live_stack.url}/usage/")

    chart = page.get_by_role("img", name=re.compile(r"^Tokens per day"))
    expect(chart).to_have_count(1)  # the narrow drawing; the wide one is hidden
    expect(chart).to_have_class(re.compile("usage-chart-narrow"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    # Its text is drawn at a readable size, not shrunk to a few pixels.
    sizes = chart.locator("text").evaluate_all(
        "texts => texts.map(t => t.getBoundingClientRect().height)"
    )
    assert min(size for size in sizes if size) >= 10
    # Dark, as the page is: not a white box.
    background = chart.evaluate("el => getComputedStyle(el).backgroundColor")
    red, green, blue = (int(part) for part in re.findall(r"\d+", background)[:3])
    assert red + green + blue < 3 * 80, background
    text_colour = chart.locator("text").first.evaluate("el => getComputedStyle(el).fill")
    assert sum(int(part) for part in re.findall(r"\d+", text_colour)[:3]) > 3 * 160
    # Counts grouped by thousands.
    expect(page.locator("dl.usage-totals dd[data-total=total_tokens]")).to_have_text("22,182")
