"""The interface in Simplified Chinese: the catalogue, language negotiation and the switcher."""

from __future__ import annotations

import gettext
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

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
