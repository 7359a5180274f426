"""The interface in Simplified Chinese: the catalogue (complete and up to date with the
source), language negotiation and the switcher, every page without an English label left,
CSV files that keep Chinese intact, and dates in the language's own formats."""

from __future__ import annotations

import gettext
import os
import re
import shutil
import subprocess
import sys
from datetime import date, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import formats, timezone, translation

from conversations.models import Completion, Message, UserBudget
from conversations.usage import charts, reports
from tests.factories import csv_rows, make_conversation

PO_FILE = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
MO_FILE = PO_FILE.with_suffix(".mo")


@pytest.fixture(autouse=True)
def _back_to_the_default_language():
    """Requests activate a language in this thread; don't let Chinese leak into later tests."""
    yield
    translation.deactivate()


def _unquote(text: str) -> str:
    body = text.strip()[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def parse_po(path: Path) -> list[dict]:
    """Entries of a .po file as dicts: 'flags', 'msgctxt', 'msgid', 'msgid_plural', 'msgstr…'."""
    entries = []
    for block in path.read_text(encoding="utf-8").strip().split("\n\n"):
        entry: dict = {"flags": set()}
        key = None
        for line in block.splitlines():
            if line.startswith("#,"):
                entry["flags"].update(f.strip() for f in line[2:].split(","))
            elif line.startswith("#~"):
                entry["obsolete"] = True
            elif line.startswith("#"):
                continue
            elif line.startswith('"'):
                entry[key] += _unquote(line)
            else:
                key, _, value = line.partition(" ")
                entry[key] = _unquote(value)
        if "msgid" in entry or entry.get("obsolete"):
            entries.append(entry)
    return entries


def translated_entries() -> list[dict]:
    return [e for e in parse_po(PO_FILE) if e.get("msgid") and not e.get("obsolete")]


def test_the_catalogue_has_no_untranslated_or_fuzzy_entries():
    entries = parse_po(PO_FILE)
    header = entries[0]
    assert header["msgid"] == ""
    assert "fuzzy" not in header["flags"]
    assert "Language: zh_Hans\n" in header["msgstr"]
    assert "charset=UTF-8" in header["msgstr"]
    assert "Plural-Forms: nplurals=1; plural=0;" in header["msgstr"]

    messages = translated_entries()
    assert len(messages) > 200
    fuzzy = [e["msgid"] for e in messages if "fuzzy" in e["flags"]]
    untranslated = [
        e["msgid"] for e in messages if not (e.get("msgstr") or e.get("msgstr[0]", "")).strip()
    ]
    assert fuzzy == [], "fuzzy entries: review them and drop the flag"
    assert untranslated == [], "untranslated entries: run makemessages and translate them"


SOURCE_TREE = ("manage.py", "chatsite", "conversations", "templates", "static", "locale")


def messages_ignore_flags() -> list[str]:
    """The --ignore flags the Makefile's `messages` target gives makemessages."""
    makefile = (Path(settings.BASE_DIR) / "Makefile").read_text()
    command = next(line for line in makefile.splitlines() if "makemessages" in line)
    return re.findall(r"--ignore=\S+", command)


def active_msgids(entries: list[dict]) -> set[tuple[str, str]]:
    return {(e.get("msgctxt", ""), e["msgid"]) for e in entries if e.get("msgid")}


def test_makemessages_finds_nothing_new_in_the_source(tmp_path):
    """makemessages on a copy of the source leaves no untranslated or fuzzy entry, and
    finds exactly the committed msgids: the catalogue is up to date with the code."""
    if not shutil.which("xgettext") or not shutil.which("msgmerge"):
        if os.environ.get("CI"):
            pytest.fail("GNU gettext is missing; the catalogue check must run in CI")
        pytest.skip("GNU gettext (xgettext, msgmerge) is missing")
    root = Path(settings.BASE_DIR)
    for name in SOURCE_TREE:
        if (root / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(root / name, tmp_path / name, ignore=ignore)
        else:
            shutil.copy2(root / name, tmp_path / name)
    command = [sys.executable, "manage.py", "makemessages", "-l", "zh_Hans"]
    result = subprocess.run(
        [*command, *messages_ignore_flags()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr

    regenerated = [e for e in parse_po(tmp_path / PO_FILE.relative_to(root)) if e.get("msgid")]
    current = [e for e in regenerated if not e.get("obsolete")]
    fuzzy = [e["msgid"] for e in current if "fuzzy" in e["flags"]]
    untranslated = [
        e["msgid"] for e in current if not (e.get("msgstr") or e.get("msgstr[0]", "")).strip()
    ]
    assert fuzzy == [], "run `make messages` and review the fuzzy entries"
    assert untranslated == [], "run `make messages` and translate the new entries"
    assert active_msgids(current) == active_msgids(translated_entries())


def test_translations_keep_every_placeholder():
    placeholder = re.compile(r"%\(\w+\)[sd]|%[sd]|<[^>]+>")
    for entry in translated_entries():
        translation_text = entry.get("msgstr", entry.get("msgstr[0]"))
        wanted = sorted(placeholder.findall(entry.get("msgid_plural", entry["msgid"])))
        assert sorted(placeholder.findall(translation_text)) == wanted, entry["msgid"]


def test_the_compiled_catalogue_matches_the_po_file():
    """The .mo is committed; it must be recompiled whenever the .po changes."""
    with MO_FILE.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    for entry in translated_entries():
        if "msgid_plural" in entry:
            got = compiled.ngettext(entry["msgid"], entry["msgid_plural"], 1)
            want = entry["msgstr[0]"]
        elif "msgctxt" in entry:
            got = compiled.pgettext(entry["msgctxt"], entry["msgid"])
            want = entry["msgstr"]
        else:
            got, want = compiled.gettext(entry["msgid"]), entry["msgstr"]
        assert got == want, f"{entry['msgid']!r}: run manage.py compilemessages"


def test_the_login_page_in_chinese(client, db):
    page = client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert '<html lang="zh-hans">' in page
    assert "登录" in page
    assert "注册" in page


def test_the_login_page_stays_english_by_default(client, db):
    page = client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Log in" in page
    assert "登录" not in page


def test_the_chat_page_in_chinese(client, alice):
    client.force_login(alice)
    page = client.get(reverse("chat_home"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "新对话" in page
    assert "发送" in page
    assert "退出登录" in page
    assert "New chat" not in page


def test_the_header_offers_both_languages(client, alice):
    client.force_login(alice)
    page = client.get(reverse("chat_home"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f'action="{reverse("set_language")}"' in page
    assert '<option value="en" lang="en" selected>English</option>' in page
    assert '<option value="zh-hans" lang="zh-hans">简体中文</option>' in page
    assert ">Change</button>" in page


def test_switching_the_language_in_the_header(client, alice):
    client.force_login(alice)
    chat_url = reverse("chat_home")
    response = client.post(reverse("set_language"), {"language": "zh-hans", "next": chat_url})
    assert response.status_code == 302
    assert response["Location"] == chat_url

    page = client.get(chat_url).content.decode()
    assert "新对话" in page
    assert "发送" in page
    assert '<option value="zh-hans" lang="zh-hans" selected>简体中文</option>' in page

    client.post(reverse("set_language"), {"language": "en", "next": chat_url})
    page = client.get(chat_url).content.decode()
    assert "New chat" in page
    assert "新对话" not in page


# --- Every page in Chinese: none of its key English labels left ---

# Attributes people read (shown on hover, spoken by screen readers, shown in empty fields).
READ_ATTRIBUTES = ("placeholder", "title", "aria-label", "alt")
BUTTON_INPUTS = ("submit", "button", "reset")


class ReadableText(HTMLParser):
    """The text a person reads on a page: text outside <script> and <style>, the
    attributes above, and the value of input buttons."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._hidden += 1
        found = dict(attrs)
        self.parts += [found[name] for name in READ_ATTRIBUTES if found.get(name)]
        if tag == "input" and found.get("type") in BUTTON_INPUTS and found.get("value"):
            self.parts.append(found["value"])

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden and data.strip():
            self.parts.append(data.strip())


def readable_text(response) -> str:
    parser = ReadableText()
    parser.feed(response.content.decode())
    return "\n".join(parser.parts)


def assert_page_in_chinese(response, labels: dict[str, str], *, status: int = 200) -> str:
    """No English label of `labels` is left as a word on the page; each translation is there."""
    assert response.status_code == status
    assert re.search(r'<html lang="zh-hans"[ >]', response.content.decode())
    text = readable_text(response)
    untranslated = [
        english
        for english in labels
        if re.search(rf"(?<![\w-]){re.escape(english)}(?![\w-])", text)
    ]
    missing = [chinese for chinese in labels.values() if chinese not in text]
    assert untranslated == [], f"English left on the page:\n{text}"
    assert missing == [], f"translations not on the page:\n{text}"
    return text


ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}

HEADER = {
    "Skip to content": "跳到主要内容",
    "Site": "站点",
    "Simulated upstream": "模拟上游",
    "Language": "语言",
    "Change": "切换",
}
SIGNED_IN_HEADER = {**HEADER, "My usage": "我的用量", "Log out": "退出登录"}
COMPOSER = {
    "Message": "消息",
    "Send": "发送",
    "Enter sends, Shift+Enter adds a line, Esc stops a reply.": (
        "按 Enter 发送，Shift+Enter 换行，Esc 停止回复。"
    ),
}
SIDEBAR = {"New chat": "新对话", "Your conversations": "你的对话", "Conversations": "对话"}
SETTINGS_PANEL = {
    "Settings": "设置",
    "Model": "模型",
    "System prompt": "系统提示词",
    "Temperature": "温度",
    "Top P": "核采样（top_p）",
    "Max tokens": "最大令牌数",
    "Choices": "候选回复数",
    "Stop sequences": "停止序列",
    "Presence penalty": "存在惩罚",
    "Frequency penalty": "频率惩罚",
    "One per line, up to 4.": "每行一个，最多 4 个。",
    "model default": "模型默认值",
    "Save settings": "保存设置",
}
CONVERSATION = {
    **SIGNED_IN_HEADER,
    **SIDEBAR,
    **COMPOSER,
    **SETTINGS_PANEL,
    "Rename": "重命名",
    "Title": "标题",
    "Save title": "保存标题",
    "Delete": "删除",
    "Delete conversation": "删除对话",
    "Delete this conversation and all its messages? This cannot be undone.": (
        "删除此对话及其所有消息？此操作无法撤销。"
    ),
    "Transcript": "对话记录",
    "Send a message to start.": "发送一条消息即可开始。",
}
USAGE_TOTALS = {
    "Totals": "合计",
    "Requests": "请求数",
    "Failed": "失败",
    "Prompt tokens": "提示令牌",
    "Completion tokens": "补全令牌",
    "Total tokens": "总令牌数",
    "Cost": "费用",
}
USAGE_RANGE = {"From": "开始日期", "To": "结束日期", "Show": "显示"}
USAGE_TABLES = {
    "Per model": "按模型",
    "Usage per model": "按模型统计的用量",
    "Model": "模型",
    "Currency": "币种",
    "Requests without a price": "无价格的请求",
    "Per day": "按天",
    "Usage per day": "按天统计的用量",
    "Day": "日期",
    "Tokens per day": "每日令牌数",
    "prompt tokens": "提示令牌",
    "completion tokens": "补全令牌",
    "tokens": "令牌",
    "day": "日期",
}
BUDGET = {
    "Budget for": "预算",
    "tokens used or reserved": "个令牌",
    "cost used or reserved": "已用或预留费用",
}


def chinese_date(day) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


@pytest.fixture
def chats(alice):
    """alice's conversations: a reply (with code) then a failed call; a reply with two
    choices; a call still waiting. Each call has usage, so /usage/ has numbers too."""
    failed = make_conversation(
        alice,
        ("写一段代码", "好的：\n\n```python\nprint('你好')\n```"),
        title="代码",
        failed="超时",
    )
    choices = make_conversation(alice, ("讲个笑话", "第一个笑话"), title="笑话")
    first = choices.messages.get(role="assistant")
    first.completion.choices = [{"index": 0}, {"index": 1}]
    first.completion.save(update_fields=["choices"])
    Message.objects.create(
        conversation=choices,
        role="assistant",
        content="第二个笑话",
        position=first.position,
        parent=first.parent,
        completion=first.completion,
        choice_index=1,
        is_selected=False,
    )
    waiting = make_conversation(alice, title="等待")
    asked = Message.objects.create(conversation=waiting, role="user", content="在吗？", position=0)
    Completion.objects.create(
        conversation=waiting, user=alice, request_message=asked, model="gpt-4o-mini"
    )
    UserBudget.objects.create(
        user=alice, monthly_token_limit=100_000, monthly_cost_limit=Decimal("5")
    )
    return {"failed": failed, "choices": choices, "waiting": waiting}


def test_the_login_page_has_no_english_label_left(client, db):
    assert_page_in_chinese(
        client.get(reverse("login"), **ZH),
        {
            **HEADER,
            "Log in": "登录",
            "Sign up": "注册",
            "Username": "用户名",
            "Password": "密码",
            "No account yet?": "还没有账号？",
        },
    )
    wrong = client.post(reverse("login"), {"username": "nobody", "password": "x"}, **ZH)
    assert_page_in_chinese(
        wrong,
        {"Please enter a correct": "请输入一个正确的用户名和密码。注意，两者都区分大小写。"},
    )


def test_the_signup_page_has_no_english_label_left(client, db):
    assert_page_in_chinese(
        client.get(reverse("signup"), **ZH),
        {
            **HEADER,
            "Sign up": "注册",
            "Log in": "登录",
            "Username": "用户名",
            "Password": "密码",
            "Password confirmation": "密码确认",
            "Already have an account?": "已有账号？",
            "Required. 150 characters or fewer.": "必填；长度为150个字符或以下",
        },
    )
    mismatch = client.post(
        reverse("signup"),
        {"username": "dora", "password1": "a-long-pass-phrase", "password2": "another-one"},
        **ZH,
    )
    assert_page_in_chinese(
        mismatch, {"The two password fields didn’t match.": "输入的两个密码不一致。"}
    )


def test_the_chat_home_has_no_english_label_left(client, alice):
    client.force_login(alice)
    assert_page_in_chinese(
        client.get(reverse("chat_home"), **ZH),
        {
            **SIGNED_IN_HEADER,
            **SIDEBAR,
            **COMPOSER,
            "Chat": "聊天",
            "No conversations yet.": "还没有对话。",
            "What would you like to talk about?": "想聊点什么？",
            "Write a message below to start a new conversation, or pick one from the list.": (
                "在下方输入消息开始新对话，或从列表中选择一个对话。"
            ),
        },
    )


def test_a_conversation_with_a_reply_and_a_failed_call_has_no_english_label_left(
    client, alice, chats
):
    client.force_login(alice)
    url = reverse("conversation_detail", args=[chats["failed"].pk])
    assert_page_in_chinese(
        client.get(url, **ZH),
        {
            **CONVERSATION,
            "You said:": "你说：",
            "Assistant replied:": "助手回复：",
            "Copy": "复制",
            "No reply: the request failed.": "没有回复：请求失败。",
            "Retry": "重试",
        },
    )


def test_a_reply_with_choices_and_a_waiting_reply_have_no_english_label_left(client, alice, chats):
    client.force_login(alice)
    choices = client.get(reverse("conversation_detail", args=[chats["choices"].pk]), **ZH)
    assert_page_in_chinese(
        choices,
        {
            **CONVERSATION,
            "2 choices": "2 个候选回复",
            "pick the one that continues the conversation": "选择一个用来继续对话",
            "Choice 1": "候选回复 1",
            "Choice 2": "候选回复 2",
            "In use": "使用中",
            "Use this reply": "使用此回复",
        },
    )
    waiting = client.get(reverse("conversation_detail", args=[chats["waiting"].pk]), **ZH)
    assert_page_in_chinese(waiting, {"Waiting for the model…": "正在等待模型…", "Stop": "停止"})


def test_form_errors_and_flash_messages_are_in_chinese(client, alice, chats):
    client.force_login(alice)
    conversation = chats["failed"]
    settings_url = reverse("conversation_settings", args=[conversation.pk])
    invalid = client.post(
        settings_url,
        {
            "settings-model": "gpt-4o-mini",
            "settings-temperature": "5",
            "settings-stop": "a\nb\nc\nd\ne",
        },
        **ZH,
    )
    assert_page_in_chinese(
        invalid,
        {
            "Ensure this value is less than or equal to": "确保该值小于或等于2。",
            "Enter at most 4 stop sequences (one per line).": "最多输入 4 个停止序列（每行一个）。",
            "Nothing was saved: fix the fields marked below their label.": (
                "未保存：请修正标签下方标出错误的字段。"
            ),
        },
        status=400,
    )
    saved = client.post(settings_url, {"settings-model": "gpt-4o-mini"}, follow=True, **ZH)
    assert_page_in_chinese(saved, {"Settings saved.": "设置已保存。"})
    empty = client.post(reverse("message_send", args=[conversation.pk]), {"content": "  "}, **ZH)
    assert_page_in_chinese(empty, {"Write a message first.": "请先输入消息。"}, status=400)


def test_my_usage_has_no_english_label_left(client, alice, chats):
    client.force_login(alice)
    today = timezone.localdate()
    text = assert_page_in_chinese(
        client.get(reverse("usage_mine"), **ZH),
        {
            **SIGNED_IN_HEADER,
            **USAGE_RANGE,
            **USAGE_TOTALS,
            **USAGE_TABLES,
            **BUDGET,
            "My usage": "我的用量",
            "Totals from": "合计",
            "Download CSV (per model)": "下载 CSV（按模型）",
            "Show the table per day": "显示按天统计的表格",
            "Download CSV (per day)": "下载 CSV（按天）",
        },
    )
    assert f"{today.year}年{today.month}月 预算" in text
    assert f"{chinese_date(today.replace(day=1))} 至 {chinese_date(today)} 合计" in text
    bad_range = client.get(
        reverse("usage_mine"), {"start": "2025-06-10", "end": "2025-06-01"}, **ZH
    )
    assert_page_in_chinese(
        bad_range,
        {"The end date must not be before the start date.": "结束日期不能早于开始日期。"},
    )


def test_all_users_usage_and_the_drill_down_have_no_english_label_left(
    client, charlie, alice, chats
):
    client.force_login(charlie)
    all_users = {
        **SIGNED_IN_HEADER,
        **USAGE_RANGE,
        **USAGE_TOTALS,
        "Usage of all users": "所有用户的用量",
        "Download CSV": "下载 CSV",
        "Users without requests in this range are not listed.": (
            "此时间范围内没有请求的用户不会列出。"
        ),
        "User": "用户",
    }
    assert_page_in_chinese(
        client.get(reverse("usage_all"), **ZH),
        {
            **all_users,
            "Per user": "按用户",
            "One row per user and model": "每个用户和模型一行",
            "Usage per user": "按用户统计的用量",
        },
    )
    assert_page_in_chinese(
        client.get(reverse("usage_all"), {"by": "model"}, **ZH),
        {**all_users, "Per user and model": "按用户和模型", "One row per user": "每个用户一行"},
    )
    assert_page_in_chinese(
        client.get(reverse("usage_user", args=[alice.pk]), **ZH),
        {
            **SIGNED_IN_HEADER,
            **USAGE_RANGE,
            **USAGE_TOTALS,
            **USAGE_TABLES,
            **BUDGET,
            "Usage of alice": "alice 的用量",
            "All users": "← 所有用户",
        },
    )


def test_the_admin_review_pages_have_no_english_label_left(client, superuser, chats):
    client.force_login(superuser)
    conversations = client.get(reverse("admin:conversations_conversation_changelist"), **ZH)
    assert_page_in_chinese(
        conversations,
        {
            "Export selected as JSON": "将所选对话导出为 JSON",
            "Export selected as Markdown": "将所选对话导出为 Markdown",
            "Export selected as CSV": "将所选对话导出为 CSV",
            "Flag selected conversations": "标记所选对话",
            "failed completions": "失败的补全",
            "title": "标题",
            "messages": "消息",
            "tokens": "令牌",
        },
    )
    conversation = chats["failed"]
    transcript = assert_page_in_chinese(
        client.get(
            reverse("admin:conversations_conversation_change", args=[conversation.pk]), **ZH
        ),
        {
            "Review conversation": "审阅对话",
            "Transcript": "对话记录",
            "Completions of this conversation": "此对话的补全",
            "Who opened or exported it": "谁打开或导出过",
            "Parameters sent": "发送的参数",
            "Model asked for": "请求的模型",
            "Model returned": "返回的模型",
            "Finish reason": "结束原因",
            "Latency": "延迟",
            "Attempts": "尝试次数",
            "Queued / finished": "排队 / 结束时间",
            "Open the completion": "打开补全",
        },
    )
    # Times follow the language too.
    created = timezone.localtime(conversation.created_at)
    assert chinese_date(created) in transcript


def test_csv_files_open_in_spreadsheets_with_chinese_intact_and_english_headers(client, charlie):
    zhang = User.objects.create_user("张伟", password="zhang-password-1")
    make_conversation(zhang, ("你好", "你好！"))
    client.force_login(charlie)
    response = client.get(reverse("usage_all_csv"), **ZH)
    assert response.content.startswith(b"\xef\xbb\xbf")  # a UTF-8 BOM, once
    assert not response.content[3:].startswith(b"\xef\xbb\xbf")
    rows = csv_rows(response)
    assert rows[0][:3] == ["User", "Source", "Requests"]  # stable, not translated
    assert rows[1][:2] == ["张伟", "浏览器"]  # cells as the page shows them


# --- Dates and numbers in the language's own formats ---


def test_usage_dates_follow_the_language(client, alice):
    UserBudget.objects.create(user=alice, monthly_token_limit=1000)
    client.force_login(alice)
    june = {"start": "2025-06-01", "end": "2025-06-30"}
    month = timezone.localdate()

    english = readable_text(client.get(reverse("usage_mine"), june, HTTP_ACCEPT_LANGUAGE="en"))
    assert "Totals from June 1, 2025 to June 30, 2025" in english
    assert f"Budget for {formats.date_format(month, 'F Y')}" in english

    chinese = readable_text(client.get(reverse("usage_mine"), june, **ZH))
    assert "2025年6月1日 至 2025年6月30日 合计" in chinese
    assert f"{month.year}年{month.month}月 预算" in chinese


def test_chart_tooltips_and_day_labels_follow_the_language():
    days = [
        {"day": date(2025, 6, 2) + timedelta(days=i), **dict.fromkeys(reports.METRICS, 0)}
        for i in range(40)
    ]
    days[0] |= {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150, "requests": 2}
    english = str(charts.tokens_per_day_svg(days))
    assert "<title>June 2, 2025: 150 tokens (100 prompt, 50 completion), 2 requests" in english
    assert ">Jun 2</text>" in english
    with translation.override("zh-hans"):
        chinese = str(charts.tokens_per_day_svg(days))
    assert "<title>2025年6月2日：150 个令牌" in chinese
    assert ">6月2日</text>" in chinese
    assert "Jun" not in chinese
