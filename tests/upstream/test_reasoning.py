"""A reply's reasoning apart from its answer: `reasoning_content` beside the content, or a
leading <think> block in it; streamed and in one answer (no database)."""

import json

import pytest

from conversations.upstream import client, protocol
from conversations.upstream.simulated_text import count_tokens
from conversations.upstream.sse import StreamState
from tests.support import Simulator


def chunk(*deltas: dict, finish_reason: str | None = None) -> str:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "model": "r1",
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish_reason} for delta in deltas
            ],
        }
    )


def streamed(*deltas: dict) -> tuple[StreamState, list]:
    """The state after each delta in its own event, then a finish and [DONE]; and every
    delta the state handed out."""
    state, handed = StreamState(), []
    for delta in deltas:
        handed += state.take(chunk(delta))
    handed += state.take(chunk({}, finish_reason="stop"))
    state.take("[DONE]")
    state.check_complete()
    return state, handed


def contents(*pieces: str) -> list[dict]:
    return [{"content": piece} for piece in pieces]


def test_reasoning_content_deltas_are_the_reasoning_and_content_the_answer():
    state, handed = streamed(
        {"role": "assistant", "content": ""},
        {"reasoning_content": "Two and"},
        {"reasoning_content": " two."},
        {"content": "Four", "reasoning_content": None},
        {"content": "."},
    )
    [choice] = state.response().choices
    assert (choice.reasoning, choice.content) == ("Two and two.", "Four.")
    assert "".join(d.reasoning for d in handed) == "Two and two."
    assert "".join(d.content for d in handed) == "Four."


def test_the_tagged_text_carries_both_with_the_reasoning_first():
    _, handed = streamed(
        {"reasoning_content": "\nHmm"}, {"reasoning_content": " yes"}, {"content": "Ok"}
    )
    assert "".join(d.tagged for d in handed) == "<think>Hmm yes</think>Ok"
    assert protocol.split_reasoning("<think>Hmm yes</think>Ok") == ("Hmm yes", "Ok")


def test_an_answer_without_reasoning_is_tagged_as_it_came():
    state, handed = streamed(*contents("Just", " this"))
    assert "".join(d.tagged for d in handed) == "Just this"
    assert state.response().choices[0].reasoning == ""


def test_a_reasoning_string_field_counts_too():
    state, _ = streamed({"reasoning": "Thought"}, {"content": "Said"})
    [choice] = state.response().choices
    assert (choice.reasoning, choice.content) == ("Thought", "Said")


def test_a_non_streamed_message_keeps_its_reasoning_content_apart():
    response = protocol.parse_response(
        {
            "id": "x",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Four.",
                        "reasoning_content": "Two and two.",
                    },
                    "finish_reason": "stop",
                }
            ],
        }
    )
    [choice] = response.choices
    assert (choice.reasoning, choice.content) == ("Two and two.", "Four.")


def test_a_non_streamed_think_block_is_moved_out_of_the_content():
    response = protocol.parse_response(
        {"choices": [{"message": {"content": "\n<think>\nFirst, x.\n</think>\n\nIt is x."}}]}
    )
    [choice] = response.choices
    assert (choice.reasoning, choice.content) == ("First, x.", "It is x.")


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("<think>a</think>b", ("a", "b")),
        ("  \n<think>\n a \n</think>\n\n b ", ("a", "b ")),
        ("<think></think>Only the answer", ("", "Only the answer")),
        ("<think>never closed", ("never closed", "")),
        ("Says <think>x</think>", ("", "Says <think>x</think>")),
        ("<thinking>not the tag</thinking>", ("", "<thinking>not the tag</thinking>")),
        ("  leading space kept", ("", "  leading space kept")),
        ("<thi", ("", "<thi")),
        ("", ("", "")),
    ],
)
def test_split_reasoning_takes_only_a_leading_think_block(text, parts):
    assert protocol.split_reasoning(text) == parts


def test_a_think_block_in_one_piece_is_split():
    state, handed = streamed({"content": "<think>Let me see.</think>Yes."})
    [choice] = state.response().choices
    assert (choice.reasoning, choice.content) == ("Let me see.", "Yes.")
    assert "".join(d.tagged for d in handed) == "<think>Let me see.</think>Yes."


def test_a_think_block_split_across_deltas_never_leaks_a_tag():
    pieces = ["\n", "<th", "ink", ">\n", "Let", " me</", "see", " x", "</th", "ink>", "\n\n"]
    pieces += ["Ye", "s."]
    state, handed = streamed(*contents(*pieces))
    [choice] = state.response().choices
    assert (choice.reasoning, choice.content) == ("Let me</see x", "Yes.")
    assert "".join(d.content for d in handed) == "Yes."
    assert not any("<" in d.content or "think>" in d.reasoning for d in handed)
    # What each delta hands out adds up to the same parts as the whole text split at once.
    assert protocol.split_reasoning("".join(pieces)) == ("Let me</see x", "Yes.")


def test_an_unterminated_think_block_is_all_reasoning():
    state, _ = streamed(*contents("<think>", "Still", " thinking", " when it ended</thi"))
    [choice] = state.response().choices
    assert (choice.reasoning, choice.content) == ("Still thinking when it ended</thi", "")


def test_a_tag_start_that_goes_nowhere_is_the_answer():
    state, handed = streamed(*contents("<", "b>bold</b>"))
    assert state.response().choices[0].content == "<b>bold</b>"
    assert "".join(d.content for d in handed) == "<b>bold</b>"
    state, _ = streamed(*contents("  ", "<thi"))  # held back to the end: still the answer
    assert state.response().choices[0].content == "  <thi"


def test_an_error_after_only_reasoning_breaks_the_reply_off():
    state = StreamState()
    state.take(chunk({"reasoning_content": "Thinking"}))
    with pytest.raises(protocol.StreamInterrupted):
        state.take(json.dumps({"error": {"message": "overloaded"}}))


# --- The simulator's cues, over real HTTP ---


@pytest.fixture
def chat(simulator_server) -> client.ChatClient:
    Simulator(simulator_server.base_url).reset()
    return client.ChatClient(base_url=simulator_server.base_url, api_key="sk-abc", timeout=5)


def body(text: str, **params) -> dict:
    return protocol.build_request(
        model="gpt-4o", messages=[{"role": "user", "content": text}], **params
    )


def test_the_think_cue_streams_reasoning_content_before_the_answer(chat):
    seen = []
    state, _ = chat.stream(
        body("/think Count <b>two</b> twice. /answer Four.", stream=True),
        on_delta=lambda state, deltas: seen.extend(deltas),
    )
    [choice] = state.response().choices
    assert (choice.reasoning, choice.content) == ("Count <b>two</b> twice.", "Four.")
    reasoning_at = [i for i, d in enumerate(seen) if d.reasoning]
    answer_at = [i for i, d in enumerate(seen) if d.content]
    assert len(reasoning_at) > 1 and max(reasoning_at) < min(answer_at)
    # The reasoning is billed as the answer is.
    assert state.usage.completion_tokens == count_tokens(choice.reasoning + " " + choice.content)


def test_the_think_cue_answers_with_message_reasoning_content(chat):
    [choice] = chat.create(body("/think Count. /answer Four.")).choices
    assert (choice.reasoning, choice.content) == ("Count.", "Four.")


@pytest.mark.parametrize("stream", [True, False], ids=["streaming", "plain"])
def test_the_thinktag_cue_answers_with_a_think_block_in_the_content(chat, stream):
    asked = body("/thinktag Hmm, two plus two. /answer Four.")
    if stream:
        state, _ = chat.stream(asked, on_delta=lambda state, deltas: None)
        response = state.response()
    else:
        response = chat.create(asked)
    [choice] = response.choices
    assert (choice.reasoning, choice.content) == ("Hmm, two plus two.", "Four.")


def test_a_thinktag_reply_cut_at_max_tokens_is_all_reasoning(chat):
    asked = body("/thinktag A long line of thought /answer Done.", max_tokens=6)
    [choice] = chat.create(asked).choices
    assert choice.finish_reason == "length"
    assert (choice.reasoning, choice.content) == ("A long line", "")


def test_a_thinking_cue_without_an_answer_gets_the_usual_reply(chat):
    [choice] = chat.create(body("/think Only this")).choices
    assert choice.reasoning == "Only this"
    assert choice.content.startswith("Simulated reply 1")
