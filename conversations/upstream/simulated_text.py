"""What the simulated upstream writes: deterministic replies made from the conversation,
its stand-in tokenizer, and the text the hostile-output faults put in a reply."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

SIMULATED_MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-3.5-turbo"]
ECHO_PREFIX = "/echo "
# Reasoning on cue: "/think R /answer A" thinks R (`reasoning_content`, beside the content)
# then answers A; "/thinktag R /answer A" answers "<think>R</think>A" in the content, as
# Qwen and the DeepSeek-R1 distills do. Without "/answer", the answer is the usual reply.
THINK_PREFIX = "/think "
THINK_TAG_PREFIX = "/thinktag "
ANSWER_MARK = "/answer"
WORDS = (
    "the model considers your question carefully and answers with a short simulated "
    "reply that is made offline from the words of the conversation so every path "
    "of the application can be tried without a network connection or an api key"
).split()
TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def count_tokens(text: str) -> int:
    """A stand-in tokenizer: words and punctuation marks."""
    return len(TOKEN_RE.findall(text))


def split_tokens(text: str) -> list[str]:
    """Pieces that join back into `text`, each holding one token and its leading space."""
    return re.findall(r"\s*(?:\w+|[^\w\s])", text) or ([text] if text else [])


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(count_tokens(str(m.get("content", ""))) + 3 for m in messages) + 3


def _last_user(messages: list[dict[str, Any]]) -> str:
    return next(
        (str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), ""
    )


def _thought(text: str, prefix: str) -> tuple[str, str]:
    """A thinking cue's reasoning and answer ("" when it names none)."""
    reasoning, _, answer = text[len(prefix) :].partition(ANSWER_MARK)
    return reasoning.strip(), answer.strip()


def reasoning_text(messages: list[dict[str, Any]]) -> str:
    """The reasoning sent beside the content (`reasoning_content`): R of "/think R", else
    none."""
    last_user = _last_user(messages)
    if last_user.startswith(THINK_PREFIX):
        return _thought(last_user, THINK_PREFIX)[0]
    return ""


def reply_text(messages: list[dict[str, Any]], choice: int, *, rich: bool = False) -> str:
    """The full (uncut) reply for a conversation; `/echo X` answers exactly X; `/think R
    /answer A` answers A (R goes beside it: `reasoning_text`) and `/thinktag R /answer A`
    answers "<think>R</think>A". `rich` adds two Markdown blocks picked by the conversation
    (a list, a table, code, a link), so a new user sees what the page renders."""
    last_user = _last_user(messages)
    if last_user.startswith(ECHO_PREFIX):
        return last_user[len(ECHO_PREFIX) :]
    for prefix in (THINK_TAG_PREFIX, THINK_PREFIX):
        if last_user.startswith(prefix):
            reasoning, answer = _thought(last_user, prefix)
            if not answer:
                answer = _made_up(messages, choice, last_user, rich=rich)
            if prefix == THINK_TAG_PREFIX:
                return f"<think>\n{reasoning}\n</think>\n\n{answer}"
            return answer
    return _made_up(messages, choice, last_user, rich=rich)


def _made_up(
    messages: list[dict[str, Any]], choice: int, last_user: str, *, rich: bool = False
) -> str:
    """The usual reply: words picked by the conversation, and what it was about."""
    system = next((str(m.get("content")) for m in messages if m.get("role") == "system"), "")
    if "short title" in system.lower():
        return _title(last_user)
    digest = hashlib.sha256(
        json.dumps([messages, choice], sort_keys=True, ensure_ascii=False).encode()
    ).digest()
    words = [WORDS[b % len(WORDS)] for b in digest[:12]]
    turns = sum(1 for m in messages if m.get("role") == "user")
    topic = " ".join(last_user.split()[:8])
    text = f"Simulated reply {choice + 1} (turn {turns}) to: {topic}. " + " ".join(words) + "."
    if system:
        text += f" [system: {' '.join(system.split()[:6])}]"
    if rich:
        first = digest[12] % len(SHOWCASE)
        second = (first + 1 + digest[13] % (len(SHOWCASE) - 1)) % len(SHOWCASE)
        for index in sorted((first, second)):
            text += "\n\n" + SHOWCASE[index](topic or "your message", words)
    return text


def _title(asked: str) -> str:
    """A title call's answer (a system prompt asking for a short title): the first words
    of the question it quotes, as a model might shorten them."""
    question = asked.split("\n\n", 1)[0].removeprefix("User:").strip()
    words = question.rstrip("?.!").split()[:6]
    return " ".join(words).capitalize() if words else "A conversation"


def _list(topic: str, words: list[str]) -> str:
    return (
        f"## What to keep in mind\n\n- **{topic}** is the question\n"
        f"- *{' '.join(words[:4])}*\n- a simulated answer, made offline\n\n"
        "1. Read it\n2. Change the settings\n3. Send again"
    )


def _table(topic: str, words: list[str]) -> str:
    rows = "\n".join(f"| {word} | {len(word)} |" for word in words[:3])
    return f"| Word | Letters |\n|---|---:|\n{rows}"


def _code(topic: str, words: list[str]) -> str:
    return (
        f"```python\ndef answer(question: str) -> str:\n"
        f"    # {' '.join(words[:5])}\n    return {topic!r}\n```"
    )


def _link(topic: str, words: list[str]) -> str:
    return (
        "> This reply comes from chatsite's simulator, not a model. Set `OPENAI_API_KEY` "
        "for a real one; [CommonMark](https://commonmark.org/help/) is what replies "
        "may use."
    )


SHOWCASE = (_list, _table, _code, _link)


def cut_reply(text: str, *, stop: Any, max_tokens: int | None) -> tuple[str, str]:
    """Apply `stop` then `max_tokens`; return the text and its finish reason."""
    finish = "stop"
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    cuts = [text.find(s) for s in stops if s and s in text]
    if cuts:
        text = text[: min(cuts)]
    if max_tokens is not None:
        pieces = split_tokens(text)
        if len(pieces) > max_tokens:
            text = "".join(pieces[:max_tokens])
            finish = "length"
    return text, finish


INVALID_UTF8_MARK = "NOTUTF8"  # one word, so a stream sends it in one piece
INVALID_UTF8_BYTES = b"\xff\xfe\xc3"


def replies_for(
    body: dict[str, Any], fault: dict[str, Any] | None, *, rich: bool = False
) -> list[tuple[Any, str]]:
    """Each choice's text (any JSON value under the "content" fault) and finish reason."""
    messages = body["messages"]
    kind = fault.get("kind") if fault else None
    replies = []
    for i in range(int(body.get("n") or 1)):
        text = reply_text(messages, i, rich=rich)
        if kind == "tokens":
            count = int(fault.get("tokens", 1000))
            text = " ".join(WORDS[k % len(WORDS)] for k in range(count)) + "."
        elif kind == "invalid_utf8":
            text = f"{text} {INVALID_UTF8_MARK} end."
        text, finish = cut_reply(text, stop=body.get("stop"), max_tokens=body.get("max_tokens"))
        if kind == "content":
            text = fault.get("content")
        elif kind == "finish_reason":
            finish = fault.get("finish_reason")
        replies.append((text, finish))
    return replies


def error_object(fault: dict[str, Any]) -> dict[str, Any]:
    message = fault.get("message") or "Simulated failure."
    return {"error": {"message": message, "type": "server_error", "code": None}}
