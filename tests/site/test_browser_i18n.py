"""The interface in Simplified Chinese in Chromium: switching the language, a Chinese
conversation through chat and every export, and long Chinese text wrapping."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from conversations.models import AuditEvent, Conversation
from tests.factories import make_conversation
from tests.support import browser_login

pytestmark = pytest.mark.browser

REPLY_TIMEOUT = 20_000
NAME = "张伟"
TEXT = "你好，世界！这是一个测试。"


def switch_language(page: Page, language: str) -> None:
    # Picking it is enough: the page's script sends the form.
    with page.expect_navigation():
        page.get_by_label("Language").select_option(language)


def admin_download(page: Page, action: str) -> bytes:
    """Run an admin action on the only conversation listed; the body it downloads."""
    page.get_by_role("checkbox", name=re.compile(r"^Select this object")).check()
    page.get_by_role("combobox", name=re.compile(r"^Action")).select_option(action)
    with page.expect_download() as download:
        page.get_by_role("button", name="Go").click()
    return download.value.path().read_bytes()


def test_a_chinese_conversation_round_trips_through_chat_and_every_export(live_stack, page):
    User.objects.create_user(NAME, password="zhang-password-1")
    User.objects.create_superuser("root", password="root-password-1")

    # In English first (the browser asks for English), then switched in the header.
    browser_login(page, live_stack.url, NAME, "zhang-password-1")
    expect(page.get_by_role("button", name="New chat")).to_be_visible()
    switch_language(page, "zh-hans")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(page.get_by_role("button", name="新对话")).to_be_visible()
    expect(page.get_by_role("button", name="发送")).to_be_visible()
    expect(page.get_by_role("button", name="New chat")).to_have_count(0)

    page.get_by_role("button", name="新对话").click()
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    box = page.get_by_label("消息", exact=True)
    box.fill(f"/echo {TEXT}")
    box.press("Enter")
    expect(page.locator("[data-role=user]")).to_have_text(f"/echo {TEXT}")
    expect(page.locator("[data-role=assistant]")).to_have_text(TEXT, timeout=REPLY_TIMEOUT)

    # The choice sticks: a fresh load of the page is still in Chinese.
    page.reload()
    expect(page.get_by_role("button", name="新对话")).to_be_visible()
    expect(page.locator("[data-role=assistant]")).to_have_text(TEXT)
    conversation = Conversation.objects.get(owner__username=NAME)

    # A superuser exports it from the admin (in English, in a browser of their own).
    admin = page.context.browser.new_context(viewport={"width": 1280, "height": 800})
    staff_page = admin.new_page()
    staff_page.set_default_timeout(10_000)
    try:
        staff_page.goto(f"{live_stack.url}/admin/login/")
        staff_page.get_by_label("Username").fill("root")
        staff_page.get_by_label("Password").fill("root-password-1")
        staff_page.get_by_role("button", name="Log in").click()
        staff_page.goto(f"{live_stack.url}/admin/conversations/conversation/")

        document = json.loads(admin_download(staff_page, "export_json"))
        contents = [m["content"] for m in document["conversations"][0]["messages"]]
        assert contents == [f"/echo {TEXT}", TEXT]

        markdown = admin_download(staff_page, "export_markdown").decode("utf-8")
        assert f"> /echo {TEXT}\n" in markdown
        assert f"> {TEXT}\n" in markdown

        body = admin_download(staff_page, "export_csv")
        assert body.startswith(b"\xef\xbb\xbf")  # the BOM: spreadsheets read it as UTF-8
        rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
        assert [(r["owner"], r["role"], r["content"]) for r in rows] == [
            (NAME, "user", f"/echo {TEXT}"),
            (NAME, "assistant", TEXT),
        ]
        assert {r["conversation_id"] for r in rows} == {str(conversation.pk)}

        # The usage CSV of all users keeps the Chinese username.
        staff_page.goto(f"{live_stack.url}/usage/all/")
        with staff_page.expect_download() as download:
            staff_page.get_by_role("link", name="Download CSV").click()
        usage = download.value.path().read_bytes()
        assert usage.startswith(b"\xef\xbb\xbf")
        table = list(csv.reader(io.StringIO(usage.decode("utf-8-sig"))))
        assert table[0][0] == "User"
        assert [row[0] for row in table[1:]] == [NAME]
    finally:
        admin.close()

    actions = AuditEvent.objects.order_by("created_at").values_list("action", flat=True)
    assert [a for a in actions if a.startswith("export")] == [
        "export_json",
        "export_markdown",
        "export_csv",
    ]


def test_long_chinese_text_and_urls_wrap_inside_the_column(live_stack, page):
    user = User.objects.create_user("li", password="li-password-1")
    url = "https://example.com/" + "a" * 300
    long_text = "汉字" * 400
    conversation = make_conversation(
        user, (f"{long_text} {url}", f"{long_text}\n\n{url}"), title="很长的消息"
    )
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    browser_login(page, live_stack.url, "li", "li-password-1")
    switch_language(page, "zh-hans")
    page.goto(f"{live_stack.url}/c/{conversation.pk}/")

    bubble = page.locator("[data-role=user]")
    reply = page.locator("[data-role=assistant]")
    expect(reply).to_contain_text(url)
    for element in (bubble, reply):
        assert element.evaluate("e => e.scrollWidth <= e.clientWidth"), "text overflows"
        assert element.bounding_box()["height"] > 200  # wrapped onto many lines
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # Chinese text asks for Chinese fonts before the generic fallback.
    fonts = bubble.evaluate("e => getComputedStyle(e).fontFamily")
    assert "Noto Sans CJK SC" in fonts
    assert "Microsoft YaHei" in fonts
