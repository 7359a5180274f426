"""A reply's reasoning ("Thinking"): stored apart from its answer, shown above it in a
collapsed section, sanitized, and never sent back to the model."""

import json
import re

import pytest
from django.urls import reverse

from conversations.chat import replies
from conversations.models import Completion, Message
from conversations.portability import exports

SCRIPT = "<script>alert('thought')</script>"
CUES = {
    "reasoning_content": f"/think First {SCRIPT} then **sum** it. /answer It is *four*.",
    "think_tag": f"/thinktag First {SCRIPT} then **sum** it. /answer It is *four*.",
}
REASONING = f"First {SCRIPT} then **sum** it."


@pytest.fixture(params=[True, False], ids=["streaming", "plain"])
def streaming(request, settings) -> bool:
    settings.UPSTREAM_STREAM = request.param
    return request.param


@pytest.fixture(params=sorted(CUES))
def cue(request) -> str:
    return CUES[request.param]


def answered(conversation, send, enqueued, text: str) -> Message:
    _, completion = send(conversation, text)
    enqueued.drain()
    return Message.objects.get(completion=completion)


def reasoning_sections(html: str) -> list[str]:
    return re.findall(r"<details class=\"reasoning\"[^>]*>.*?</details>", html, re.S)


def test_the_reasoning_is_stored_apart_from_the_answer(
    conversation, streaming, cue, simulator, enqueued, send
):
    reply = answered(conversation, send, enqueued, cue)
    assert reply.status == Message.Status.COMPLETE
    assert reply.reasoning == REASONING
    assert reply.content == "It is *four*."
    assert "think" not in reply.html and "First" not in reply.html
    assert reply.completion.status == Completion.Status.SUCCEEDED


def test_the_page_shows_the_reasoning_collapsed_above_the_answer_and_escaped(
    alice_client, conversation, cue, simulator, enqueued, send
):
    reply = answered(conversation, send, enqueued, cue)
    html = alice_client.get(reverse("conversation_detail", args=[conversation.pk])).content
    html = html.decode()
    [section] = reasoning_sections(html)
    assert section.startswith('<details class="reasoning">')  # collapsed: no `open`
    assert "<summary>Thinking</summary>" in section
    assert "First &lt;script&gt;alert('thought')&lt;/script&gt; then" in section
    assert "<strong>sum</strong>" in section  # rendered as Markdown, like the answer
    assert SCRIPT not in html
    # Above the answer, in the reply's own article.
    article = html[html.index(f'id="choice-{reply.pk}"') :]
    assert article.index('class="reasoning"') < article.index("<em>four</em>")


def test_the_ended_reply_the_stream_swaps_in_shows_it_collapsed(
    conversation, simulator, enqueued, send
):
    reply = answered(conversation, send, enqueued, CUES["reasoning_content"])
    html = replies.ended_html(reply.completion, [reply])["en"]
    [section] = reasoning_sections(html)
    assert section.startswith('<details class="reasoning">')
    assert SCRIPT not in html
    rendered = replies.render_ended(None, reply.completion)
    assert reasoning_sections(rendered) == [section]


def test_a_reply_without_reasoning_has_no_thinking_section(
    alice_client, conversation, simulator, enqueued, send
):
    reply = answered(conversation, send, enqueued, "/echo Plain <think>not leading</think>")
    assert reply.reasoning == ""
    assert reply.content == "Plain <think>not leading</think>"
    html = alice_client.get(reverse("conversation_detail", args=[conversation.pk])).content
    assert reasoning_sections(html.decode()) == []
    assert b"Thinking" not in html


def test_the_next_call_sends_the_answer_and_never_the_reasoning(
    conversation, streaming, cue, simulator, enqueued, send
):
    answered(conversation, send, enqueued, cue)
    answered(conversation, send, enqueued, "/echo And then?")
    _, second = simulator.bodies()
    assert second["messages"] == [
        {"role": "user", "content": cue},
        {"role": "assistant", "content": "It is *four*."},
        {"role": "user", "content": "/echo And then?"},
    ]
    # Only the user's own message (the cue) holds the words: no reply, no other field.
    sent = json.dumps(second["messages"][1:])
    assert "First" not in sent and "think" not in sent and "reasoning" not in json.dumps(second)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("/think One two three four /answer Five.", 3), ("/thinktag One two three four", 6)],
    ids=["reasoning_content", "think_tag"],
)
def test_a_stream_broken_while_thinking_keeps_the_reasoning_and_no_answer(
    conversation, simulator, enqueued, send, settings, text, tokens
):
    settings.UPSTREAM_STREAM = True
    simulator.control(faults=[{"kind": "break_stream", "after_tokens": tokens}])
    reply = answered(conversation, send, enqueued, text)
    assert reply.status == Message.Status.FAILED
    assert (reply.reasoning, reply.content) == ("One two three", "")


def test_a_reply_being_written_shows_its_reasoning_open_while_no_answer_has_come(
    alice_client, conversation, send
):
    asked, completion = send(conversation, "/think Hmm /answer Yes")
    # The row of a reply being written holds its tagged text (services/attempts.py).
    Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        content="<think>Still <b>thinking</b>",
        position=asked.position + 1,
        parent=asked,
        completion=completion,
        choice_index=0,
        status=Message.Status.STREAMING,
    )
    html = alice_client.get(reverse("conversation_detail", args=[conversation.pk])).content
    [section] = reasoning_sections(html.decode())
    assert section.startswith('<details class="reasoning" open>')
    assert "Still &lt;b&gt;thinking&lt;/b&gt;" in section
    assert re.search(rb'data-choice="0"[^>]*></div>', html)  # no answer yet

    Message.objects.filter(completion=completion).update(
        content="<think>Still thinking</think>The answer"
    )
    html = alice_client.get(reverse("conversation_detail", args=[conversation.pk])).content
    [section] = reasoning_sections(html.decode())
    assert section.startswith('<details class="reasoning">')  # the answer has begun
    assert re.search(rb'data-choice="0"[^>]*>The answer</div>', html)


def test_a_reply_being_written_without_reasoning_has_its_section_hidden(
    alice_client, conversation, send
):
    send(conversation, "Hello")
    html = alice_client.get(reverse("conversation_detail", args=[conversation.pk])).content
    [section] = reasoning_sections(html.decode())
    assert " hidden" in section.split(">", 1)[0]


def test_the_export_keeps_the_reasoning_of_a_reply(conversation, simulator, enqueued, send):
    answered(conversation, send, enqueued, CUES["reasoning_content"])
    user, assistant = exports.conversation_data(conversation)["messages"]
    assert "reasoning" not in user
    assert (assistant["reasoning"], assistant["content"]) == (REASONING, "It is *four*.")
