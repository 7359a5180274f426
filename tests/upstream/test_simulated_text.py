"""The simulator's default replies show what the page renders (issue 17)."""

from __future__ import annotations

from conversations.shared.rendering import render_markdown
from conversations.upstream.simulated_text import SHOWCASE, reply_text

ELEMENTS = {"<h2>": "heading", "<ul>": "list", "<table>": "table", "<pre": "code", "<a ": "link"}


def conversation(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_a_rich_reply_keeps_its_first_sentence_and_adds_two_markdown_blocks():
    plain = reply_text(conversation("How do tides work?"), 0)
    rich = reply_text(conversation("How do tides work?"), 0, rich=True)
    assert rich.startswith(plain + "\n\n")
    assert rich.count("\n\n") >= 2
    assert rich == reply_text(conversation("How do tides work?"), 0, rich=True)  # the same


def test_the_blocks_vary_with_the_prompt_and_together_show_everything():
    shown = set()
    for number in range(40):
        html = str(render_markdown(reply_text(conversation(f"Question {number}"), 0, rich=True)))
        found = {name for tag, name in ELEMENTS.items() if tag in html}
        assert len(found) >= 2 or "<blockquote>" in html
        shown |= found
    assert shown == set(ELEMENTS.values())
    assert len(SHOWCASE) == 4


def test_a_prompt_with_quotes_stays_valid_python_in_the_code_block():
    text = reply_text(conversation('say "hi" \\ bye'), 0, rich=True)
    for block in text.split("```")[1::2]:
        compile(block.removeprefix("python\n"), "<reply>", "exec")


def test_echo_is_still_exact():
    assert reply_text(conversation("/echo **bold**"), 0, rich=True) == "**bold**"


def test_a_title_call_is_answered_with_a_title():
    asked = [
        {"role": "system", "content": "Write a short title, at most six words, for it."},
        {"role": "user", "content": "User: How do tides work on Earth?\n\nAssistant: The moon…"},
    ]
    assert reply_text(asked, 0) == "How do tides work on earth"
    assert reply_text(asked, 0, rich=True) == "How do tides work on earth"
