"""Steps the chat page's browser tests share."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect


def new_chat(page: Page) -> None:
    page.get_by_role("button", name="New chat").click()
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))


def open_settings(page: Page) -> None:
    page.get_by_text("Settings", exact=True).click()
    expect(page.get_by_label("Temperature")).to_be_visible()
