"""The chat page in Chromium against uvicorn, a real Celery worker and the simulator."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from conversations.models import Completion, Message
from tests.chat.browser import new_chat, open_settings
from tests.support import browser_login

pytestmark = pytest.mark.browser

REPLY_TIMEOUT = 20_000


def send(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def test_sign_up_chat_with_settings_and_history_without_a_reload(live_stack, page):
    simulator = live_stack.simulator
    page.goto(f"{live_stack.url}/accounts/signup/")
    page.get_by_label("Username").fill("dora")
    page.get_by_label("Password", exact=True).fill("a-long-pass-phrase")
    page.get_by_label("Password confirmation").fill("a-long-pass-phrase")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    expect(page.get_by_text("Simulated upstream")).to_be_visible()

    new_chat(page)
    open_settings(page)
    page.get_by_label("System prompt").fill("Answer like a pirate.")
    page.get_by_label("Temperature").fill("0.7")
    page.get_by_label("Max tokens").fill("200")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    page.keyboard.press("Escape")

    # Slow the model down so the working state can be seen.
    simulator.control(latency=1.0)
    page.evaluate("window.__sameDocument = true")
    send(page, "How deep is the ocean?")
    expect(page.locator("[data-role=user]")).to_have_text("How deep is the ocean?")
    expect(page.get_by_text("The model is writing a reply…")).to_be_visible()
    reply = page.locator("[data-role=assistant]")
    expect(reply).to_contain_text("Simulated reply", timeout=REPLY_TIMEOUT)
    expect(page.get_by_text("The model is writing a reply…")).to_have_count(0)
    assert page.evaluate("window.__sameDocument") is True
    expect(page.get_by_role("heading", name="How deep is the ocean?")).to_be_visible()

    first = simulator.bodies()[-1]
    assert first["temperature"] == 0.7
    assert first["max_tokens"] == 200
    assert first["messages"][0] == {"role": "system", "content": "Answer like a pirate."}

    simulator.control(latency=0)
    send(page, "And the highest mountain?")
    expect(page.locator("[data-role=user]")).to_have_count(2)
    expect(reply).to_have_count(2, timeout=REPLY_TIMEOUT)
    second = simulator.bodies()[-1]
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    assert second["messages"][1]["content"] == "How deep is the ocean?"
    assert second["messages"][2]["content"] == reply.first.inner_text().strip()
    assert page.evaluate("window.__sameDocument") is True


def test_two_choices_show_side_by_side_and_the_picked_one_continues(live_stack, page, carol):
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    new_chat(page)
    open_settings(page)
    page.get_by_label("Choices").fill("2")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    page.keyboard.press("Escape")

    send(page, "Give me two ideas")
    choices = page.locator("[data-role=assistant]")
    expect(choices).to_have_count(2, timeout=REPLY_TIMEOUT)
    first_box, second_box = choices.nth(0).bounding_box(), choices.nth(1).bounding_box()
    assert first_box["x"] < second_box["x"]  # side by side
    assert abs(first_box["y"] - second_box["y"]) < 2
    expect(choices.nth(0)).to_contain_text("In use")

    page.get_by_role("button", name="Use this reply").click()
    expect(choices.nth(1)).to_contain_text("In use")
    expect(choices.nth(0).get_by_role("button", name="Use this reply")).to_be_visible()
    picked = Message.objects.get(role="assistant", choice_index=1)
    assert picked.is_selected

    send(page, "Go on with that one")
    expect(page.locator("[data-role=user]")).to_have_count(2)
    expect(page.locator(".reply-choices")).to_have_count(2, timeout=REPLY_TIMEOUT)
    history = live_stack.simulator.bodies()[-1]["messages"]
    assert history[-2] == {"role": "assistant", "content": picked.content}


def test_a_reply_with_a_script_is_shown_as_text_and_never_runs(live_stack, page, carol):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    new_chat(page)
    attack = '<script>window.__pwned = 1; alert(1)</script><img src=x onerror="alert(2)">'
    send(page, f"/echo Here it is: {attack} and `code`")
    reply = page.locator("[data-role=assistant]")
    expect(reply).to_contain_text("<script>window.__pwned = 1", timeout=REPLY_TIMEOUT)
    expect(reply).to_contain_text('<img src=x onerror="alert(2)">')
    expect(reply.locator("code")).to_have_text("code")
    assert reply.locator("script, img").count() == 0
    page.reload()
    expect(reply).to_contain_text("<script>window.__pwned = 1")
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []


def test_a_reply_streams_in_as_plain_text_and_is_rendered_when_it_ends(live_stack, page, carol):
    """The live text grows piece by piece as text (markup in it is never parsed), and the
    ended reply replaces it rendered, as the worker made it."""
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    new_chat(page)
    live_stack.simulator.control(token_delay=0.15)
    attack = '<img src=x onerror="alert(1)">'
    send(page, f"/echo Look: **bold** {attack} and more words to come in slowly here")
    live = page.locator(".reply-pending .message-text.streaming[data-choice='0']")
    expect(live).to_contain_text("**bold**", timeout=REPLY_TIMEOUT)  # as typed: not rendered
    grown = len(live.text_content())
    expect(live).to_contain_text('onerror="alert(1)"', timeout=REPLY_TIMEOUT)
    assert len(live.text_content()) > grown
    assert live.locator("img, strong").count() == 0
    reply = page.locator("[data-role=assistant]")
    expect(reply.locator("strong")).to_have_text("bold", timeout=REPLY_TIMEOUT)
    expect(page.locator(".reply-pending")).to_have_count(0)
    expect(reply).to_contain_text("slowly here")
    assert reply.locator("img").count() == 0
    assert dialogs == []


def test_code_blocks_are_highlighted_and_copied(live_stack, page, carol):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_stack.url)
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    new_chat(page)
    send(page, "/echo Try this:\n\n```python\nprint('hi')\n```")
    reply = page.locator("[data-role=assistant]")
    expect(reply.locator("pre .nb")).to_have_text("print", timeout=REPLY_TIMEOUT)
    reply.get_by_role("button", name="Copy").click()
    expect(reply.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == "print('hi')\n"


def test_a_failing_upstream_shows_the_alert_and_retry_works_once_it_recovers(
    live_stack, page, carol
):
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    new_chat(page)
    live_stack.simulator.control(faults=[{"status": 400, "message": "model is overloaded"}])
    send(page, "Are you there?")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("model is overloaded", timeout=REPLY_TIMEOUT)
    expect(page.locator("[data-role=assistant]")).to_have_count(0)

    page.get_by_role("button", name="Retry").click()
    expect(page.locator("[data-role=assistant]")).to_contain_text(
        "Simulated reply", timeout=REPLY_TIMEOUT
    )
    expect(page.get_by_role("alert")).to_have_count(0)
    completions = list(Completion.objects.order_by("pk"))
    assert [c.status for c in completions] == ["failed", "succeeded"]
    assert completions[0].request_message_id == completions[1].request_message_id


def test_a_bad_setting_is_refused_beside_the_field_and_nothing_is_sent(live_stack, page, carol):
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    new_chat(page)
    open_settings(page)
    page.get_by_label("Temperature").fill("3")
    page.get_by_label("Stop sequences").fill("a\nb\nc\nd\ne")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator(".field-temperature")).to_contain_text("less than or equal to 2")
    expect(page.locator(".field-stop")).to_contain_text("at most 4 stop sequences")
    expect(page.get_by_label("Temperature")).to_have_attribute("aria-invalid", "true")
    assert live_stack.simulator.bodies() == []


def test_rename_and_delete_a_conversation(live_stack, page, carol):
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    new_chat(page)
    box = page.get_by_label("Message", exact=True)
    box.fill("Plan a picnic")
    box.press("Shift+Enter")  # a new line, not a send
    box.press_sequentially("for Sunday")
    expect(page.locator("[data-role=user]")).to_have_count(0)
    box.press("Enter")
    user = page.locator("[data-role=user]")
    expect(user.locator("br")).to_have_count(1)
    assert user.inner_text() == "Plan a picnic\nfor Sunday"
    expect(page.locator("[data-role=assistant]")).to_have_count(1, timeout=REPLY_TIMEOUT)
    expect(box).to_be_focused()
    expect(box).to_have_value("")
    page.get_by_text("Rename", exact=True).click()
    page.get_by_label("Title").fill("Picnic plans")
    page.get_by_role("button", name="Save title").click()
    expect(page.get_by_role("heading", name="Picnic plans")).to_be_visible()
    sidebar = page.get_by_role("navigation", name="Your conversations")
    expect(sidebar.get_by_role("link", name="Picnic plans")).to_be_visible()

    page.get_by_text("Delete", exact=True).click()
    page.get_by_role("button", name="Delete conversation").click()
    expect(page).to_have_url(f"{live_stack.url}/")
    expect(sidebar.get_by_role("link", name="Picnic plans")).to_have_count(0)


def test_the_chat_works_on_a_phone_sized_screen(live_stack, page, carol):
    page.set_viewport_size({"width": 375, "height": 812})
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    # The sidebar is a drawer here: open it to start a chat.
    page.get_by_role("button", name="Conversations").click()
    new_chat(page)
    send(page, "Hello from a phone")
    expect(page.locator("[data-role=assistant]")).to_have_count(1, timeout=REPLY_TIMEOUT)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    composer = page.get_by_role("button", name="Send").bounding_box()
    assert composer["x"] + composer["width"] <= 375
    page.wait_for_function(_AT_BOTTOM, timeout=5_000)


_AT_BOTTOM = """() => {
  const el = document.getElementById('chat-scroll');
  return el.scrollHeight - el.scrollTop - el.clientHeight < 4;
}"""
