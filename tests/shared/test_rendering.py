"""Model output as sanitized Markdown; user text as plain text."""

from __future__ import annotations

import importlib
import re
from html import unescape

import pytest

from conversations.chat.services import conversations as chat_services
from conversations.models import Message
from conversations.shared.rendering import render_markdown, render_plain


@pytest.mark.parametrize(
    "attack",
    [
        "<script>alert(1)</script>",
        '<img src="x" onerror="alert(1)">',
        "<iframe src=https://evil.example></iframe>",
        '<a href="javascript:alert(1)">x</a>',
        "<div onclick=alert(1)>x</div>",
        '<svg onload="alert(1)"></svg>',
        '<button hx-get="/admin/" hx-trigger="load">x</button>',
    ],
)
def test_raw_html_in_model_output_is_shown_as_text(attack):
    html = render_markdown(f"Look: {attack} done")
    # The only element is the paragraph; the attack is its text.
    assert re.findall(r"<\s*([a-zA-Z]+)", html) == ["p"]
    assert unescape(html) == f"<p>Look: {attack} done</p>\n"


def test_markdown_links_are_sanitized_and_marked_nofollow():
    html = render_markdown("[ok](https://example.com) and [bad](javascript:alert(1))")
    assert '<a href="https://example.com" rel="noopener noreferrer nofollow">ok</a>' in html
    assert "javascript:" not in html.split("[bad]")[0]
    assert 'href="javascript' not in html


def test_images_become_links_so_no_third_party_request_is_made():
    html = render_markdown("![a cat](https://example.com/cat.png)")
    assert "<img" not in html
    assert '<a href="https://example.com/cat.png" rel="noopener noreferrer nofollow">a cat</a>' in (
        html
    )


def test_code_blocks_are_highlighted_server_side_with_a_copy_button():
    html = render_markdown('```python\ndef f():\n    return "<b>"\n```')
    assert '<pre class="highlight"><code>' in html
    assert '<span class="k">def</span>' in html
    assert "&lt;b&gt;" in html
    assert '<button class="copy-code" type="button">Copy</button>' in html
    assert '<span class="codeblock-lang">python</span>' in html


def test_unknown_languages_and_indented_code_are_escaped_plain_code():
    html = render_markdown("```nosuchlang\n<x onerror=1>\n```\n\n    <y>\n")
    assert "&lt;x onerror=1&gt;" in html
    assert "&lt;y&gt;" in html
    assert html.count('<pre class="highlight">') == 2


def test_tables_strikethrough_and_emphasis_render():
    html = render_markdown("| a | b | c |\n|--:|:-:|---|\n| 1 | ~~2~~ | 3 |\n\n**bold** _it_")
    # Alignment as classes: the Content-Security-Policy refuses style="" attributes.
    assert '<th class="align-right">a</th>\n<th class="align-center">b</th>\n<th>c</th>' in html
    assert '<td class="align-right">1</td>' in html
    assert "style=" not in html
    assert "<s>2</s>" in html
    assert "<strong>bold</strong>" in html
    assert "<em>it</em>" in html


def test_plain_text_is_escaped_with_line_breaks():
    assert render_plain("a <b>\n& c\r\nd") == "a &lt;b&gt;<br>&amp; c<br>d"


def test_empty_text_renders_empty():
    assert render_markdown("") == ""
    assert render_plain("") == ""


def test_a_saved_reply_keeps_its_sanitized_html(alice, simulator, enqueued, send):
    from conversations.chat.services import conversations as chat_services
    from conversations.models import Message

    conversation = chat_services.conversation_create(owner=alice)
    send(conversation, "/echo **bold** <img src=x onerror=alert(1)>\n\n```python\nx = 1\n```")
    enqueued.drain()
    reply = Message.objects.get(role="assistant")
    assert "<strong>bold</strong>" in reply.html
    assert "<img" not in reply.html
    assert "&lt;img src=x onerror=alert(1)&gt;" in reply.html  # shown as text
    assert str(reply.rendered()) == reply.html  # shown as stored, not rendered again


def test_stored_html_shows_the_copy_button_in_the_readers_language():
    from django.utils import translation

    from conversations.shared.rendering import localize, render_markdown_for_storage

    stored = render_markdown_for_storage("```\ncode\n```")
    assert ">Copy</button>" in stored
    with translation.override("zh-hans"):
        assert ">复制</button>" in localize(stored)


def test_replies_stored_with_inline_alignment_get_classes(alice):
    """Migration 0005: replies rendered before the CSP kept style="" on table cells."""
    from django.apps import apps

    migration = importlib.import_module("conversations.migrations.0005_completion_request_id")
    conversation = chat_services.conversation_create(owner=alice)
    legacy = '<table><tr><th style="text-align:right">a</th><td>b</td></tr></table>'
    message = Message.objects.create(
        conversation=conversation, role="assistant", content="| a |", position=0, html=legacy
    )
    migration.table_alignment_as_classes(apps, None)
    message.refresh_from_db()
    assert message.html == '<table><tr><th class="align-right">a</th><td>b</td></tr></table>'
