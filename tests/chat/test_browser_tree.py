"""Regenerate, edit and switch versions in Chromium, against uvicorn, a real Celery worker
and the simulator."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.chat.browser import new_chat
from tests.support import browser_login

pytestmark = pytest.mark.browser

REPLY_TIMEOUT = 20_000


def send(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def versions(page: Page, text: str):
    return page.locator(".versions-count", has_text=text)


def test_regenerate_switch_and_edit_then_reload_on_the_same_branch(live_stack, page, carol):
    simulator = live_stack.simulator
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    new_chat(page)
    send(page, "Name a colour")
    reply = page.locator("[data-role=assistant]")
    expect(reply).to_contain_text("Simulated reply", timeout=REPLY_TIMEOUT)

    # Regenerate: a second call with the same history; the new version is shown.
    page.get_by_role("button", name="Regenerate").click()
    expect(versions(page, "2 / 2")).to_be_visible(timeout=REPLY_TIMEOUT)
    expect(page.get_by_text("The model is writing a reply…")).to_have_count(0)
    first, second = simulator.bodies()[-2:]
    assert first["messages"] == second["messages"]

    # Back to the first version, with the keyboard: the focus stays on the button.
    previous = page.get_by_role("button", name="Previous version")
    previous.focus()
    page.keyboard.press("Enter")
    expect(versions(page, "1 / 2")).to_be_visible()
    expect(page.get_by_role("button", name="Previous version")).to_be_focused()

    # Edit the first message: a new branch, its own reply, the old one a version away.
    page.locator(".message-user").hover()
    page.get_by_role("link", name="Edit").click()
    box = page.get_by_label("Edit your message")
    expect(box).to_have_value("Name a colour")
    box.fill("Name a fruit")
    page.get_by_role("button", name="Save and send").click()
    expect(page.locator("[data-role=user]")).to_have_text("Name a fruit")
    expect(reply).to_contain_text("Name a fruit", timeout=REPLY_TIMEOUT)
    expect(versions(page, "2 / 2")).to_have_count(1)  # the message's; its reply has one version
    assert [m["content"] for m in simulator.bodies()[-1]["messages"]] == ["Name a fruit"]

    page.reload()
    expect(page.locator("[data-role=user]")).to_have_text("Name a fruit")
    expect(reply).to_contain_text("Name a fruit")
    expect(versions(page, "2 / 2")).to_be_visible()
    page.get_by_role("button", name="Previous version").click()
    expect(page.locator("[data-role=user]")).to_have_text("Name a colour")
    expect(versions(page, "1 / 2")).to_have_count(2)  # the message's, and its reply's


def test_copy_puts_the_reply_as_written_on_the_clipboard(live_stack, page, carol):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_stack.url)
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    new_chat(page)
    send(page, "Say something")
    reply = page.locator("[data-role=assistant]")
    expect(reply).to_contain_text("Simulated reply", timeout=REPLY_TIMEOUT)
    page.locator(".reply").hover()
    page.locator(".reply").get_by_role("link", name="Copy").click()
    expect(page.locator(".reply").get_by_text("Copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("Simulated reply") and copied == reply.inner_text().strip()
