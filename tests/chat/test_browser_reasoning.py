"""A reasoning model's reply in Chromium: its "Thinking" shows open while it streams, the
answer follows, and the ended reply keeps the reasoning collapsed above the answer."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from conversations.models import Completion, Message
from tests.chat import browser

pytestmark = pytest.mark.browser

REPLY_TIMEOUT = 20_000
REASONING = "First I count the <b>apples</b>, then the pears, and then I add them up"


@pytest.fixture
def erin(transactional_db) -> User:
    return User.objects.create_user("erin", password="erin-password-1")


def start_chat(page: Page, live_stack, text: str) -> Completion:
    return browser.start_chat(page, live_stack, text, username="erin", password="erin-password-1")


def thinking(page: Page):
    """The "Thinking" section, by its summary's text (a <details> is a group)."""
    return page.get_by_role("group").filter(has=page.get_by_text("Thinking", exact=True))


def test_the_reasoning_streams_open_then_collapses_above_the_answer(live_stack, page, erin):
    live_stack.simulator.control(token_delay=0.15)
    completion = start_chat(
        page, live_stack, f"/think {REASONING} /answer There are **five** fruits in all."
    )
    section = thinking(page)
    # While only reasoning has come: open, its text growing, no answer yet.
    expect(section).to_contain_text("First I count", timeout=REPLY_TIMEOUT)
    expect(section).to_have_attribute("open", "")
    expect(section).to_contain_text("the <b>apples</b>")  # as text: never parsed
    assert section.locator("b").count() == 0
    answer = page.locator(".reply-pending .message-text.streaming[data-choice='0']")
    expect(answer).to_be_hidden()  # empty
    completion.refresh_from_db()
    assert completion.status == Completion.Status.RUNNING

    # The answer begins: the section closes, the answer streams below it.
    expect(answer).to_contain_text("There are", timeout=REPLY_TIMEOUT)
    expect(section).not_to_have_attribute("open", "")
    assert page.get_by_role("button", name="Stop").is_visible()

    # Ended: the rendered reply, its reasoning collapsed above the answer.
    reply = page.locator("[data-role=assistant]")
    expect(reply.locator("strong")).to_have_text("five", timeout=REPLY_TIMEOUT)
    expect(page.locator(".reply-pending")).to_have_count(0)
    ended = thinking(page)
    expect(ended).to_have_count(1)
    expect(ended).not_to_have_attribute("open", "")
    reasoning = ended.locator(".reasoning-text")
    expect(reasoning).to_be_hidden()
    stored = Message.objects.get(completion=completion)
    assert stored.content == "There are **five** fruits in all."
    assert stored.reasoning == REASONING
    expect(reply).not_to_contain_text("five fruits in all.First")

    # Opening it shows the reasoning, sanitized: the tags as text.
    page.get_by_text("Thinking", exact=True).click()
    expect(ended).to_have_attribute("open", "")
    expect(reasoning).to_be_visible()
    expect(reasoning).to_contain_text("First I count the <b>apples</b>, then the pears")
    assert reasoning.locator("b").count() == 0
    box = reasoning.bounding_box()
    assert box["y"] < reply.locator("strong").bounding_box()["y"]  # above the answer


def test_a_think_tag_reply_reloaded_shows_its_reasoning_collapsed(live_stack, page, erin):
    start_chat(page, live_stack, "/thinktag Short thought. /answer Short answer.")
    reply = page.locator("[data-role=assistant]")
    expect(reply).to_contain_text("Short answer.", timeout=REPLY_TIMEOUT)
    page.reload()
    section = thinking(page)
    expect(section).to_have_count(1)
    expect(section).not_to_have_attribute("open", "")
    expect(reply).not_to_contain_text("<think>")
    page.get_by_text("Thinking", exact=True).click()
    expect(section.locator(".reasoning-text")).to_have_text("Short thought.")
