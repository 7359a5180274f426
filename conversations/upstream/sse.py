"""A streamed reply: the `data:` payloads of Server-Sent Events as they arrive, and the
reply they add up to (each choice's reasoning apart from its answer)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from .protocol import (
    ID_LENGTH,
    MODEL_LENGTH,
    OBJECT_LENGTH,
    THINK_CLOSE,
    THINK_OPEN,
    ChatResponse,
    Choice,
    StreamInterrupted,
    ThinkSplitter,
    Usage,
    choice_index,
    clean_text,
    error_in_body,
    finish_reason_of,
    join_reasoning,
    parse_usage,
    reasoning_field,
    short_text,
    whole_number,
)


@dataclass
class StreamDelta:
    """One piece of a streamed reply: text added to choice `index`, its answer (`content`)
    and its reasoning apart. `tagged` is the piece of the choice's one text with both:
    the reasoning in a leading <think> block, then the answer (what a live copy carries)."""

    index: int
    content: str = ""
    finish_reason: str | None = None
    reasoning: str = ""
    tagged: str = ""


# Where a choice's tagged text is: no <think> block yet, inside it, or past it (the answer).
UNTAGGED, IN_THOUGHT, ANSWERING = range(3)


@dataclass
class StreamState:
    """What a stream has told so far; complete once every choice has a finish reason."""

    id: str = ""
    created: int | None = None
    model: str = ""
    object: str = ""
    contents: dict[int, str] = field(default_factory=dict)  # answers only
    reasonings: dict[int, str] = field(default_factory=dict)
    finish_reasons: dict[int, str | None] = field(default_factory=dict)
    usage: Usage | None = None
    done: bool = False
    # Each choice's content split as it comes (a <think> block in it is reasoning).
    splitters: dict[int, ThinkSplitter] = field(default_factory=dict)
    tags: dict[int, int] = field(default_factory=dict)

    def apply(self, chunk: dict[str, Any]) -> list[StreamDelta]:
        """Take one chunk in (cleaned as `parse_response` cleans); ValueError, TypeError,
        KeyError or AttributeError when it has the wrong shape."""
        self.id = self.id or short_text(chunk.get("id") or "", ID_LENGTH)
        if self.created is None:
            self.created = whole_number(chunk.get("created"))
        self.model = self.model or short_text(chunk.get("model") or "", MODEL_LENGTH)
        self.object = self.object or short_text(chunk.get("object") or "", OBJECT_LENGTH)
        if chunk.get("usage"):
            self.usage = parse_usage(chunk["usage"])
        deltas = []
        for position, choice in enumerate(chunk.get("choices") or []):
            index = choice_index(choice.get("index", position))
            delta = choice.get("delta") or {}
            splitter = self.splitters.setdefault(index, ThinkSplitter())
            thought, text = splitter.feed(clean_text(delta.get("content")))
            reasoning = reasoning_field(delta) + thought
            finish_reason = finish_reason_of(choice.get("finish_reason"))
            self.contents[index] = self.contents.get(index, "") + text
            self.reasonings[index] = self.reasonings.get(index, "") + reasoning
            self.finish_reasons.setdefault(index, None)
            if finish_reason:
                self.finish_reasons[index] = finish_reason
            tagged = self._tagged(index, reasoning, text)
            deltas.append(StreamDelta(index, text, finish_reason, reasoning, tagged))
        return deltas

    def _tagged(self, index: int, reasoning: str, text: str) -> str:
        """The piece of the choice's tagged text. Reasoning that comes after the answer has
        begun is kept (`reasonings`) but left out of it: it would no longer lead."""
        tag, piece = self.tags.get(index, UNTAGGED), ""
        if tag == UNTAGGED:
            reasoning = reasoning.lstrip()  # as a <think> block's line break is dropped
        if reasoning and tag == UNTAGGED:
            piece, tag = THINK_OPEN + reasoning, IN_THOUGHT
        elif reasoning and tag == IN_THOUGHT:
            piece = reasoning
        if text:
            piece += (THINK_CLOSE if tag == IN_THOUGHT else "") + text
            tag = ANSWERING
        self.tags[index] = tag
        return piece

    @property
    def has_text(self) -> bool:
        """Whether any of the reply has come (its reasoning counts)."""
        return any(self.contents.values()) or any(self.reasonings.values())

    def take(self, data: str) -> list[StreamDelta]:
        """One event's `data:` payload: "[DONE]" ends the stream (`done`); a chunk adds its
        deltas; an `error` object raises it (StreamInterrupted once text has come, as the
        reply broke off), and so does a payload that is not a chunk."""
        if data == "[DONE]":
            self.done = True
            return []
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise StreamInterrupted(
                "The upstream sent a stream event that is not JSON.",
                error_type="bad_response",
                http_status=200,
            ) from exc
        if isinstance(chunk, dict) and chunk.get("error"):
            error = error_in_body(chunk["error"])
            if self.has_text:
                raise StreamInterrupted(error.message, error_type="stream_error")
            raise error
        try:
            return self.apply(chunk)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StreamInterrupted(
                f"The upstream sent a stream event of the wrong shape ({exc.__class__.__name__}).",
                error_type="bad_response",
                http_status=200,
            ) from exc

    def check_complete(self) -> None:
        """A stream that ended without [DONE] and without every choice's finish reason
        broke off."""
        if self.done or (self.finish_reasons and all(self.finish_reasons.values())):
            return
        raise StreamInterrupted(
            "The upstream stream ended before the reply was complete.",
            error_type="stream_broken",
            http_status=200,
        )

    def response(self, *, latency_ms: int = 0) -> ChatResponse:
        """The reply so far as one answer; text a splitter held back (a tag's start that
        never went on) is in it."""
        choices = []
        for i in sorted(self.contents):
            held = self.splitters[i].finish() if i in self.splitters else ("", "")
            choices.append(
                Choice(
                    index=i,
                    content=self.contents[i] + held[1],
                    finish_reason=self.finish_reasons[i],
                    reasoning=join_reasoning(self.reasonings[i] + held[0]),
                )
            )
        return ChatResponse(
            id=self.id,
            created=self.created,
            model=self.model,
            object="chat.completion",
            choices=choices,
            usage=self.usage,
            latency_ms=latency_ms,
        )


class SseParser:
    """Bytes of a Server-Sent Events body in, the `data:` payload of each complete event
    out (plain: the sync and the async client both feed it)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.lines: list[str] = []

    def feed(self, data: bytes) -> list[str]:
        events = []
        self.buffer += data
        *complete, self.buffer = self.buffer.split(b"\n")
        for raw in complete:
            # Bytes that are not UTF-8 become U+FFFD rather than ending the stream.
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if line == "":
                if self.lines:
                    events.append("\n".join(self.lines))
                    self.lines = []
            elif line.startswith("data:"):
                value = line[5:]
                self.lines.append(value[1:] if value.startswith(" ") else value)
        return events

    def finish(self) -> list[str]:
        """The last event of a body that ended without its blank line."""
        if self.buffer.strip().startswith(b"data:"):
            value = self.buffer.strip().decode("utf-8", "replace")[5:]
            self.lines.append(value[1:] if value.startswith(" ") else value)
        self.buffer = b""
        events, self.lines = (["\n".join(self.lines)] if self.lines else []), []
        return events


def iter_sse_data(response: requests.Response) -> Iterator[str]:
    """The `data:` payloads of a Server-Sent Events body, one per event, as they arrive.

    Reads with read1() so each event is handed on as soon as its bytes are in, whether
    the body is chunked or delimited by the connection closing."""
    parser = SseParser()
    while True:
        try:
            data = response.raw.read1(65536)
        except Exception as exc:  # urllib3 wraps socket errors in its own types
            raise requests.ConnectionError(str(exc)) from exc
        if not data:
            break
        yield from parser.feed(data)
    yield from parser.finish()
