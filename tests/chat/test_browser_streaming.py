"""Streaming replies in Chromium: words appear as written, survive a reload, can be stopped."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from conversations.models import Completion, Message
from tests.chat import browser
from tests.support import wait_for

pytestmark = pytest.mark.browser

REPLY_TIMEOUT = 20_000


@pytest.fixture
def erin(transactional_db) -> User:
    return User.objects.create_user("erin", password="erin-password-1")


def start_chat(page: Page, live_stack, text: str) -> Completion:
    return browser.start_chat(page, live_stack, text, username="erin", password="erin-password-1")


def live_text(page: Page):
    return page.locator(".reply-pending .message-text")


def test_the_first_words_show_before_the_reply_is_complete(live_stack, page, erin):
    live_stack.simulator.control(token_delay=0.15)
    completion = start_chat(page, live_stack, "Write me something slowly")
    expect(live_text(page)).to_contain_text("Simulated reply 1", timeout=REPLY_TIMEOUT)
    # Visible while the model is still writing: the reply is not finished yet.
    completion.refresh_from_db()
    assert completion.status == Completion.Status.RUNNING
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    final = page.locator("[data-role=assistant]")
    expect(final).to_have_count(1, timeout=REPLY_TIMEOUT)
    reply = Message.objects.get(completion=completion)
    expect(final).to_have_text(reply.content)
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)


def test_a_reload_mid_reply_shows_the_whole_reply_once(live_stack, page, erin):
    live_stack.simulator.control(token_delay=0.15)
    completion = start_chat(page, live_stack, "Keep going through a reload")
    expect(live_text(page)).to_contain_text("Simulated reply 1", timeout=REPLY_TIMEOUT)
    page.reload()
    # Back mid-reply: what was written so far is there at once and keeps growing.
    expect(live_text(page)).to_contain_text("Simulated reply 1")
    final = page.locator("[data-role=assistant]")
    expect(final).to_have_count(1, timeout=REPLY_TIMEOUT)
    reply = Message.objects.get(completion=completion)
    expect(final).to_have_text(reply.content)
    assert page.locator("#messages").inner_text().count("Simulated reply 1") == 1


def test_stop_ends_the_reply_and_keeps_what_was_written(live_stack, page, erin):
    live_stack.simulator.control(token_delay=0.3)
    completion = start_chat(page, live_stack, "A story that never ends")
    expect(live_text(page)).to_contain_text("Simulated reply 1", timeout=REPLY_TIMEOUT)
    page.get_by_role("button", name="Stop").click()
    wait_for(
        lambda: live_stack.simulator.stats()["streams_disconnected"] == 1,
        timeout=3,
        what="the upstream call to be closed",
    )
    expect(page.get_by_text("Stopped before the end.")).to_be_visible(timeout=REPLY_TIMEOUT)
    reply = Message.objects.get(completion=completion)
    assert reply.status == Message.Status.STOPPED
    expect(page.locator("[data-role=assistant]")).to_contain_text(reply.content)
