"""What a new user met on the chat page (issue 17), in Chromium against the live stack."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from conversations.models import Conversation
from tests.chat.browser import new_chat, open_settings
from tests.factories import make_conversation
from tests.support import browser_login, wait_for

pytestmark = pytest.mark.browser

REPLY_TIMEOUT = 20_000


def in_view_and_on_top(page: Page, selector: str) -> bool:
    """The element is inside the window and nothing covers its middle (a click lands)."""
    return page.evaluate(
        """(selector) => {
          const el = document.querySelector(selector);
          const box = el.getBoundingClientRect();
          const x = box.left + box.width / 2, y = box.top + box.height / 2;
          if (box.width === 0 || x < 0 || y < 0 || x > innerWidth || y > innerHeight) return false;
          const hit = document.elementFromPoint(x, y);
          return hit === el || el.contains(hit);
        }""",
        selector,
    )


def test_the_model_chip_and_the_tabs_title_follow_settings_and_renames(live_stack, page, carol):
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    new_chat(page)
    chip = page.locator("#conversation-model")
    expect(chip).to_have_text("gpt-4o-mini")

    open_settings(page)
    page.get_by_label("Model").select_option("gpt-4o")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    expect(chip).to_have_text("gpt-4o")  # at once, without a reload
    expect(page.locator("#conversation-model")).to_have_count(1)
    page.keyboard.press("Escape")

    page.get_by_text("Rename", exact=True).click()
    page.get_by_label("Title").fill("Trip to Kyoto")
    page.get_by_role("button", name="Save title").click()
    expect(page.get_by_role("heading", name="Trip to Kyoto")).to_be_visible()
    expect(page).to_have_title("Trip to Kyoto · chatsite")


def test_only_the_transcript_scrolls_when_an_old_message_comes_into_view(live_stack, page, carol):
    turns = [
        (f"Question {i}", f"Answer {i}\n\n" + "A line of the answer. " * 20) for i in range(30)
    ]
    conversation = make_conversation(carol, *turns, title="Long one")
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    page.goto(f"{live_stack.url}/c/{conversation.pk}/")
    expect(page.locator("[data-role=user]")).to_have_count(30)

    at_first = page.evaluate("document.getElementById('chat-scroll').scrollTop")
    assert at_first > 1000  # the newest message in view
    # As find-in-page or a screen reader does: bring the first message into view.
    page.locator("[data-role=user]").first.evaluate("el => el.scrollIntoView()")

    document = page.evaluate(
        "({top: document.scrollingElement.scrollTop,"
        " height: document.scrollingElement.scrollHeight, window: innerHeight,"
        " transcript: document.getElementById('chat-scroll').scrollTop})"
    )
    assert document["top"] == 0
    assert document["height"] <= document["window"]  # no band below the page
    assert document["transcript"] < 100  # the transcript scrolled, to its top
    assert in_view_and_on_top(page, ".site-header .brand")
    assert in_view_and_on_top(page, "#composer textarea")


@pytest.mark.parametrize("size", [(1280, 800), (1280, 600), (375, 812)])
def test_save_settings_stays_in_view_however_small_the_window(live_stack, page, carol, size):
    width, height = size
    page.set_viewport_size({"width": width, "height": height})
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    if width < 700:
        page.goto(f"{live_stack.url}/")
        page.locator("#composer textarea").fill("hello")
        page.locator("#composer button[type=submit]").click()
        expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    else:
        new_chat(page)
    page.locator(".settings-menu summary").click()
    expect(page.get_by_label("Temperature")).to_be_visible()

    assert in_view_and_on_top(page, ".settings-actions button[type=submit]")
    # Still there with the fields scrolled to their middle.
    page.locator(".menu-panel-wide").evaluate("el => { el.scrollTop = el.scrollHeight / 3 }")
    assert in_view_and_on_top(page, ".settings-actions button[type=submit]")
    page.get_by_label("Temperature").fill("0.4")
    page.locator(".settings-actions button[type=submit]").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()


def test_send_waits_while_a_reply_is_written_and_its_error_clears_when_it_ends(
    live_stack, page, carol
):
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    new_chat(page)
    send_button = page.locator("#composer button[type=submit]")
    box = page.get_by_label("Message", exact=True)

    live_stack.simulator.control(latency=2.0)
    box.fill("Take your time")
    box.press("Enter")
    expect(page.locator(".reply-pending")).to_have_count(1)
    expect(send_button).to_be_disabled()
    box.fill("And another thing")
    box.press("Enter")  # Enter does nothing while Send waits
    expect(page.locator("[data-role=user]")).to_have_count(1)

    # Sent anyway (a second tab, a script): the server refuses it beside the composer.
    page.locator("#composer").evaluate("form => form.requestSubmit()")
    error = page.locator("#composer-error")
    expect(error).to_contain_text("Wait for the reply to finish")
    expect(box).to_have_value("And another thing")  # the text stays

    expect(page.locator("[data-role=assistant]")).to_have_count(1, timeout=REPLY_TIMEOUT)
    expect(error).to_have_count(0)
    expect(send_button).to_be_enabled()
    expect(box).not_to_have_attribute("aria-invalid", "true")
    live_stack.simulator.control(latency=0)
    box.press("Enter")
    expect(page.locator("[data-role=assistant]")).to_have_count(2, timeout=REPLY_TIMEOUT)


def test_keyboard_new_chat_ctrl_enter_sends_and_escape_stops_a_reply(live_stack, page, carol):
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    new_chat(page)
    first = page.url
    box = page.get_by_label("Message", exact=True)
    box.fill("Sent with Ctrl+Enter")
    box.press("Control+Enter")
    expect(page.locator("[data-role=user]")).to_have_text("Sent with Ctrl+Enter")
    expect(page.locator("[data-role=assistant]")).to_have_count(1, timeout=REPLY_TIMEOUT)

    page.keyboard.press("Control+Shift+O")  # from anywhere on the page
    expect(page).not_to_have_url(first)
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    expect(page.locator("[data-role=user]")).to_have_count(0)

    # A slow, long reply: Escape stops it (and only closes a menu when one is open).
    live_stack.simulator.control(latency=0, token_delay=0.2)
    box.fill("Write me something long")
    box.press("Enter")
    expect(page.locator(".reply-pending")).to_have_count(1)
    page.locator(".settings-menu summary").click()
    page.keyboard.press("Escape")
    expect(page.locator(".settings-menu")).not_to_have_attribute("open", "")
    expect(page.locator(".reply-pending")).to_have_count(1)  # still being written
    page.keyboard.press("Escape")
    expect(page.get_by_text("Stopped before the end.")).to_be_visible(timeout=REPLY_TIMEOUT)
    live_stack.simulator.control(token_delay=0)


@pytest.mark.parametrize(("language", "now"), [("en", "now"), ("zh-hans", "现在")])
def test_messages_say_when_they_came_and_replies_their_tokens(
    live_stack, page, carol, language, now
):
    make_conversation(carol, ("Question", "Answer"), title="Stamped")
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    page.context.set_extra_http_headers({"Accept-Language": language})
    page.goto(f"{live_stack.url}/c/{Conversation.objects.get(title='Stamped').pk}/")

    asked, answered = page.locator("time.stamp").nth(0), page.locator("time.stamp").nth(1)
    expect(asked).to_have_text(now)  # relative, in the page's language
    expect(answered).to_have_text(now)
    assert re.search(r"\d{4}", asked.get_attribute("title"))  # the full date on hover
    assert asked.get_attribute("datetime").startswith(str(timezone.localdate().year))

    tokens = page.locator(".reply .tokens")
    assert tokens.evaluate("el => getComputedStyle(el).opacity") == "0"
    page.locator(".reply").hover()
    expect(tokens).to_have_css("opacity", "1")
    if language == "en":
        expect(tokens).to_have_text("15 tokens")
        expect(tokens).to_have_attribute("title", "10 prompt + 5 completion tokens")


def test_a_new_reply_has_its_stamp_and_tokens_too(live_stack, page, carol):
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    new_chat(page)
    box = page.get_by_label("Message", exact=True)
    box.fill("/echo four words of reply")
    box.press("Enter")
    expect(page.locator("[data-role=assistant]")).to_have_count(1, timeout=REPLY_TIMEOUT)
    expect(page.locator("time.stamp")).to_have_count(2)
    expect(page.locator("time.stamp").last).to_have_text("now")
    expect(page.locator(".reply .tokens")).to_have_text(re.compile(r"^\d+ tokens$"))


def test_jump_to_latest_shows_when_scrolled_up_and_brings_the_newest_back(live_stack, page, carol):
    turns = [(f"Question {i}", "An answer. " * 40) for i in range(20)]
    conversation = make_conversation(carol, *turns, title="Long one")
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    page.goto(f"{live_stack.url}/c/{conversation.pk}/")
    jump = page.get_by_role("button", name=re.compile("Jump to latest"))
    expect(jump).to_be_hidden()  # the newest is in view

    page.locator("#chat-scroll").evaluate("el => { el.scrollTop = 0 }")
    expect(jump).to_be_visible()
    assert in_view_and_on_top(page, ".jump-latest")
    jump.click()
    expect(jump).to_be_hidden()
    at_bottom = "el => el.scrollHeight - el.scrollTop - el.clientHeight < 80"
    assert page.locator("#chat-scroll").evaluate(at_bottom)


def test_a_chosen_theme_applies_at_once_and_sticks(live_stack, page, carol):
    page.emulate_media(color_scheme="light")
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    background = "() => getComputedStyle(document.body).backgroundColor"
    assert page.evaluate(background) == "rgb(255, 255, 255)"

    page.get_by_label("Theme").select_option("dark")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert page.evaluate(background) == "rgb(22, 24, 29)"  # at once, no reload
    wait_for(lambda: theme_cookie(page) == "dark", what="the theme kept")

    page.reload()
    assert page.evaluate(background) == "rgb(22, 24, 29)"
    expect(page.get_by_label("Theme")).to_have_value("dark")

    # System follows the operating system again.
    page.get_by_label("Theme").select_option("system")
    page.emulate_media(color_scheme="dark")
    assert page.evaluate(background) == "rgb(22, 24, 29)"
    page.emulate_media(color_scheme="light")
    assert page.evaluate(background) == "rgb(255, 255, 255)"


def theme_cookie(page: Page) -> str | None:
    return next((c["value"] for c in page.context.cookies() if c["name"] == "theme"), None)


def test_the_simulators_default_replies_show_the_pages_markdown(
    live_stack, page, carol, simulator_server
):
    simulator_server.rich = True  # as `make run` starts it (`--plain` is the bench's)
    try:
        browser_login(page, live_stack.url, "carol", "carol-password-1")
        new_chat(page)
        seen = set()
        box = page.get_by_label("Message", exact=True)
        for number, question in enumerate(["How do tides work?", "Plan a picnic", "Why?"]):
            box.fill(question)
            box.press("Enter")
            reply = page.locator("[data-role=assistant]").nth(number)
            expect(reply.locator(".markdown")).to_have_count(1, timeout=REPLY_TIMEOUT)
            for selector in ("h2", "ul", "table", "pre code", "a[href]", "blockquote"):
                if reply.locator(selector).count():
                    seen.add(selector)
        assert len(seen) >= 3, seen
    finally:
        simulator_server.rich = False


@pytest.mark.parametrize("live_stack_env", [{"MODEL_TITLES": "1"}])
def test_the_model_names_the_conversation_after_its_first_reply(live_stack, page, carol):
    live_stack.simulator.control(faults=[{}, {"kind": "content", "content": "Tides, explained"}])
    browser_login(page, live_stack.url, "carol", "carol-password-1")
    new_chat(page)
    box = page.get_by_label("Message", exact=True)
    box.fill("How do tides work? Explain it to a child")
    box.press("Enter")
    heading = page.locator("#conversation-title-text")
    expect(heading).to_have_text("How do tides work? Explain it to a child")  # first words
    expect(page.locator("[data-role=assistant]")).to_have_count(1, timeout=REPLY_TIMEOUT)

    # Then the model's title, in the header, the sidebar and the tab, without a reload.
    expect(heading).to_have_text("Tides, explained", timeout=REPLY_TIMEOUT)
    expect(page.locator(".conversation-link[aria-current=page]")).to_have_text("Tides, explained")
    expect(page).to_have_title("Tides, explained · chatsite")
