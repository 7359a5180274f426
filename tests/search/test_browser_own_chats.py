"""A person's own chats in Chromium, against uvicorn, a real Celery worker and the simulator:
search in Chinese from the sidebar, open the result, pin it, export it, share it, and open
the link in a second browser (another person's)."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from tests.chat.browser import new_chat
from tests.support import browser_login

pytestmark = pytest.mark.browser

REPLY_TIMEOUT = 20_000
QUESTION = "请解释量子计算的基本原理"


@pytest.fixture
def people(transactional_db) -> tuple[User, User]:
    return (
        User.objects.create_user("dana", password="dana-password-1"),
        User.objects.create_user("erin", password="erin-password-1"),
    )


def send(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")
    expect(page.locator("[data-role=assistant]").last).to_contain_text(
        "Simulated reply", timeout=REPLY_TIMEOUT
    )


def open_more(page: Page) -> None:
    """The chat's "More" menu, open (a click on its summary would close an open one)."""
    if not page.locator("details.more-menu[open]").count():
        page.get_by_text("More", exact=True).click()


def test_search_open_pin_export_and_share(live_stack, page, people, browser, csp_violations):
    browser_login(page, live_stack.url, "dana", "dana-password-1")
    new_chat(page)
    send(page, QUESTION)
    chat_url = page.url
    new_chat(page)
    send(page, "Something else entirely")

    # Out of the composer, "/" focuses the sidebar's search box; the result is her
    # Chinese message.
    page.locator("#conversation-title-text").click()
    page.keyboard.press("/")
    box = page.get_by_role("searchbox", name="Search your chats")
    expect(box).to_be_focused()
    box.fill("量子计算")
    box.press("Enter")
    expect(page.get_by_role("heading", name="Search your chats", level=1)).to_be_visible()
    marked = page.locator(".search-hit").filter(has=page.locator("mark", has_text="量子计算"))
    # The chat's title (its first words), her message and the reply that repeats it.
    expect(marked).to_have_count(3)
    hit = marked.filter(has_text="You:")
    expect(page.get_by_text("Something else entirely")).to_have_count(0)
    hit.get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(re.escape(chat_url) + r"\?at=\d+#message-\d+$"))
    expect(page.locator("[data-role=user]")).to_have_text(QUESTION)

    # Pinned: at the top of the sidebar, marked.
    open_more(page)
    page.get_by_role("button", name="Pin to the top").click()
    expect(page.get_by_text("Pinned to the top of the list.")).to_be_visible()
    first = page.locator("#conversation-list .conversation-link").first
    expect(first).to_contain_text("Pinned:")
    expect(first).to_have_attribute("aria-current", "page")

    # Exported as JSON: the file holds the conversation.
    open_more(page)
    with page.expect_download() as download:
        page.get_by_role("link", name="Export as JSON").click()
    exported = json.loads(download.value.path().read_text(encoding="utf-8"))
    assert QUESTION in [m["content"] for m in exported["messages"]]

    # Shared: a link to copy, opened by someone else in another browser.
    open_more(page)
    page.get_by_role("button", name="Share a read-only link").click()
    link = page.get_by_label("Share link")
    expect(link).to_have_value(re.compile(r"/s/[\w-]{40,}/$"))
    shared_url = link.input_value()
    send(page, "A later message, not shared")

    other = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        reader = other.new_page()
        reader.set_default_timeout(10_000)
        csp_violations.listen(reader)
        browser_login(reader, live_stack.url, "erin", "erin-password-1")
        reader.goto(shared_url)
        expect(reader.get_by_role("heading", level=1)).to_be_visible()
        expect(reader.locator("[data-role=user]")).to_have_text([QUESTION])
        expect(reader.get_by_text("A later message, not shared")).to_have_count(0)
        expect(reader.get_by_label("Message", exact=True)).to_have_count(0)  # no composer
        assert reader.locator('meta[name="robots"]').get_attribute("content") == (
            "noindex, nofollow"
        )
    finally:
        other.close()
