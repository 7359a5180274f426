"""Steps the chat page's browser tests share."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from conversations.models import Completion
from tests.support import browser_login, wait_for


def new_chat(page: Page) -> None:
    page.get_by_role("button", name="New chat").click()
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))


def open_settings(page: Page) -> None:
    page.get_by_text("Settings", exact=True).click()
    expect(page.get_by_label("Temperature")).to_be_visible()


def start_chat(page: Page, live_stack, text: str, *, username: str, password: str) -> Completion:
    """Log in, open a new chat and send `text`: its completion, once it is queued."""
    browser_login(page, live_stack.url, username, password)
    new_chat(page)
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")
    return wait_for(lambda: Completion.objects.order_by("-pk").first(), what="the completion")
