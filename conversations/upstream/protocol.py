"""The Chat Completions protocol as plain data (no Django, no HTTP here): parameters and
their ranges, the request body, the response and its errors, cleaning what a server
sent so that any database can store it, and telling a reply's reasoning from its answer."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

PARAMETERS = (
    "temperature",
    "top_p",
    "max_tokens",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
)
MAX_STOP_SEQUENCES = 4
# The contract's largest n, and the most tokens a reply may be asked for here.
MAX_CHOICES = 128
MAX_TOKENS_LIMIT = 1_000_000
# What is kept of the response's short fields (their columns' sizes).
ID_LENGTH = 200
MODEL_LENGTH = 100
OBJECT_LENGTH = 64
FINISH_REASON_LENGTH = 32
# Token counts and `created` beyond these are nonsense, and would not fit their columns.
MAX_COUNT = 2**31 - 1
MAX_TIMESTAMP = 2**53


class ParameterError(ValueError):
    """A parameter is out of the contract's range; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(value: Any) -> str:
    """Model output as text a database stores: a string as it is, content parts joined,
    any other JSON value spelled as JSON; NUL removed and broken UTF-16 replaced."""
    if value is None:
        return ""
    if isinstance(value, list) and all(
        isinstance(part, dict) and isinstance(part.get("text"), str) for part in value
    ):
        value = "".join(part["text"] for part in value)
    elif not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False)
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" is valid JSON)
        value = SURROGATES.sub("\ufffd", value)
    return value


def short_text(value: Any, length: int) -> str:
    return clean_text(value)[:length]


def finish_reason_of(value: Any) -> str | None:
    return None if value is None else short_text(value, FINISH_REASON_LENGTH)


def whole_number(value: Any) -> int | None:
    """A token count or timestamp as the upstream sent it, or None when it is not one."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if 0 <= number <= MAX_TIMESTAMP else None


def choice_index(value: Any) -> int:
    index = whole_number(value)
    if index is None or index >= MAX_CHOICES:
        raise ValueError(f"choice index {value!r}")
    return index


class UpstreamError(Exception):
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        error_type: str,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        message = clean_text(message)
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.http_status = http_status
        self.retry_after = retry_after


class RetryableError(UpstreamError):
    """Worth trying again: connection trouble, timeouts, 408/409/429, 5xx, garbled 200."""

    retryable = True


class PermanentError(UpstreamError):
    """Trying again gives the same answer: 400, 401, 403, 404 and other 4xx."""


class StreamInterrupted(RetryableError):
    """The stream broke after some of the reply had arrived."""


@dataclass
class Choice:
    index: int
    content: str  # the answer only
    finish_reason: str | None
    role: str = "assistant"
    # What the model thought before answering ("Thinking"): never sent back to it.
    reasoning: str = ""


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass
class ChatResponse:
    id: str
    created: int | None
    model: str
    object: str
    choices: list[Choice]
    usage: Usage | None
    http_status: int = 200
    latency_ms: int = 0


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(name, f"must be a number between {low:g} and {high:g}")
    if not low <= value <= high:
        raise ParameterError(name, f"must be between {low:g} and {high:g}")
    return value


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(name, f"must be a whole number from {low} to {high}")
    if not low <= value <= high:
        raise ParameterError(name, f"must be from {low} to {high}")
    return value


def validate_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """Check each set parameter against the contract; return only the set ones."""
    clean: dict[str, Any] = {}
    for name in PARAMETERS:
        value = params.get(name)
        if value is None:
            continue
        if name == "temperature":
            clean[name] = _number(name, value, 0, 2)
        elif name == "top_p":
            clean[name] = _number(name, value, 0, 1)
        elif name in ("presence_penalty", "frequency_penalty"):
            clean[name] = _number(name, value, -2, 2)
        elif name == "max_tokens":
            clean[name] = _integer(name, value, 1, MAX_TOKENS_LIMIT)
        elif name == "n":
            clean[name] = _integer(name, value, 1, MAX_CHOICES)
        elif name == "stop":
            clean[name] = _stop(value)
    return clean


def _stop(value: Any) -> str | list[str]:
    if isinstance(value, str):
        if not value:
            raise ParameterError("stop", "must not be empty")
        return value
    if isinstance(value, Sequence) and all(isinstance(item, str) and item for item in value):
        items = list(value)
        if not items:
            raise ParameterError("stop", "must have at least one sequence")
        if len(items) > MAX_STOP_SEQUENCES:
            raise ParameterError("stop", f"takes at most {MAX_STOP_SEQUENCES} sequences")
        return items
    raise ParameterError("stop", "must be a string or a list of non-empty strings")


def build_request(
    *, model: str, messages: list[dict[str, str]], stream: bool = False, **params: Any
) -> dict[str, Any]:
    """The JSON body for POST /chat/completions, with only the parameters that are set."""
    if not model:
        raise ParameterError("model", "is required")
    if not messages:
        raise ParameterError("messages", "must have at least one message")
    for message in messages:
        if message.get("role") not in ("system", "user", "assistant"):
            raise ParameterError("messages", f"unknown role {message.get('role')!r}")
        if not isinstance(message.get("content"), str):
            raise ParameterError("messages", "content must be text")
    unknown = set(params) - set(PARAMETERS)
    if unknown:
        raise ParameterError(sorted(unknown)[0], "is not a Chat Completions parameter")
    body: dict[str, Any] = {"model": model, "messages": messages}
    body.update(validate_parameters(params))
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


RETRYABLE_STATUSES = {408, 409, 429}


def message_of(text: str, *, reason: str = "", status: int = 0) -> str:
    """What a failed answer's body says: its `error.message` (or `error` string), else the
    start of its text, else the status line's reason."""
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str) and error:
        return error
    text = text.strip()
    return text[:300] if text else (reason or f"HTTP {status}")


def error_for_answer(
    status: int, message: str, *, retry_after: str | None = None, secret: str = ""
) -> UpstreamError:
    """The error a non-200 answer means: retryable for 408/409/429 and 5xx."""
    if secret:
        message = message.replace(secret, "[redacted]")
    if status in RETRYABLE_STATUSES or status >= 500:
        return RetryableError(
            message,
            error_type="rate_limited" if status == 429 else f"http_{status}",
            http_status=status,
            retry_after=parse_retry_after(retry_after),
        )
    return PermanentError(message, error_type=f"http_{status}", http_status=status)


# --- Reasoning: `reasoning_content` beside the content, or a leading <think> block in it ---

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def _tag_start_at_end(text: str, tag: str) -> int:
    """How many of `text`'s last characters are the start of `tag` (0 when none are)."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ThinkSplitter:
    """A reply's content as it comes, told apart: a leading `<think>…</think>` block (after
    any whitespace) is reasoning, the rest the answer; a block that never ends is all
    reasoning. Text that may still turn out to be a tag waits for the next piece."""

    START, OPENING, THINKING, CLOSING, ANSWER = range(5)

    def __init__(self) -> None:
        self.state = self.START
        self.held = ""

    def feed(self, text: str) -> tuple[str, str]:
        """The reasoning and the answer that `text` adds."""
        reasoning = answer = ""
        text, self.held = self.held + text, ""
        while text:
            if self.state == self.START:
                head = text.lstrip()
                if head.startswith(THINK_OPEN):
                    self.state, text = self.OPENING, head[len(THINK_OPEN) :]
                elif THINK_OPEN.startswith(head):  # only whitespace, or the tag's start
                    self.held, text = text, ""
                else:
                    self.state = self.ANSWER
            elif self.state in (self.OPENING, self.CLOSING):
                # The line breaks that follow either tag are not part of what they bound.
                text = text.lstrip()
                if text:
                    self.state = self.THINKING if self.state == self.OPENING else self.ANSWER
            elif self.state == self.THINKING:
                end = text.find(THINK_CLOSE)
                if end >= 0:
                    reasoning += text[:end]
                    self.state, text = self.CLOSING, text[end + len(THINK_CLOSE) :]
                else:
                    keep = _tag_start_at_end(text, THINK_CLOSE)
                    reasoning += text[: len(text) - keep]
                    self.held, text = text[len(text) - keep :], ""
            else:
                answer, text = answer + text, ""
        return reasoning, answer

    def finish(self) -> tuple[str, str]:
        """What was held back, once the content has ended: the reasoning and the answer."""
        held = self.held
        if self.state == self.THINKING:
            return held, ""
        return "", held if self.state == self.START else ""


def split_reasoning(text: str) -> tuple[str, str]:
    """A whole content's reasoning (its leading <think> block) and its answer."""
    splitter = ThinkSplitter()
    reasoning, answer = splitter.feed(text)
    more_reasoning, more_answer = splitter.finish()
    return (reasoning + more_reasoning).strip(), answer + more_answer


def reasoning_field(fields: dict[str, Any]) -> str:
    """The reasoning a message or a delta carries beside its content: `reasoning_content`
    (DeepSeek, vLLM and most servers) or a `reasoning` string (OpenRouter, newer vLLM)."""
    value = fields.get("reasoning_content")
    if value is None and isinstance(fields.get("reasoning"), str):
        value = fields["reasoning"]
    return clean_text(value)


def join_reasoning(*parts: str) -> str:
    return "\n\n".join(part for part in (p.strip() for p in parts) if part)


def _choice(choice: dict[str, Any], position: int) -> Choice:
    message = choice.get("message") or {}
    thought, content = split_reasoning(clean_text(message.get("content")))
    return Choice(
        index=choice_index(choice.get("index", position)),
        content=content,
        role=short_text(message.get("role") or "assistant", 16),
        finish_reason=finish_reason_of(choice.get("finish_reason")),
        reasoning=join_reasoning(reasoning_field(message), thought),
    )


def parse_response(data: Any, *, http_status: int = 200, latency_ms: int = 0) -> ChatResponse:
    """Turn a decoded JSON body into a ChatResponse, its text cleaned (`clean_text`), each
    choice's reasoning apart from its answer, and its short fields cut to size. A 200
    carrying an `error` object raises it with the upstream's own message; a body of the
    wrong shape is retryable."""
    if isinstance(data, dict) and data.get("error") and not data.get("choices"):
        raise error_in_body(data["error"], http_status=http_status)
    try:
        choices = [_choice(choice, position) for position, choice in enumerate(data["choices"])]
        return ChatResponse(
            id=short_text(data.get("id") or "", ID_LENGTH),
            created=whole_number(data.get("created")),
            model=short_text(data.get("model") or "", MODEL_LENGTH),
            object=short_text(data.get("object") or "", OBJECT_LENGTH),
            choices=choices,
            usage=parse_usage(data.get("usage")),
            http_status=http_status,
            latency_ms=latency_ms,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RetryableError(
            f"The upstream answered with an unexpected body ({exc.__class__.__name__}).",
            error_type="bad_response",
            http_status=http_status,
        ) from exc


def parse_body(content: bytes, *, latency_ms: int = 0) -> ChatResponse:
    """A 200 answer's body as a ChatResponse (`parse_response`); retryable when it is not
    JSON."""
    try:
        # JSON is UTF-8 (RFC 8259): bytes that are not become U+FFFD, not a guess at
        # another encoding for the whole body.
        data = json.loads(content.decode("utf-8", "replace"))
    except ValueError as exc:
        raise RetryableError(
            "The upstream answered 200 with a body that is not JSON.",
            error_type="bad_response",
            http_status=200,
        ) from exc
    return parse_response(data, http_status=200, latency_ms=latency_ms)


def error_in_body(error: Any, *, http_status: int = 200) -> UpstreamError:
    """An `error` object sent with status 200 (or inside a stream): the upstream's own
    message; retryable unless its code says the request itself is at fault."""
    message = error.get("message") if isinstance(error, dict) else error
    code = whole_number(error.get("code")) if isinstance(error, dict) else None
    cls = RetryableError
    if code is not None and 400 <= code < 500 and code not in RETRYABLE_STATUSES:
        cls = PermanentError
    return cls(
        clean_text(message)[:2000] or "The upstream reported an error without a message.",
        error_type="upstream_error",
        http_status=http_status,
    )


def parse_usage(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    prompt = min(whole_number(usage.get("prompt_tokens")) or 0, MAX_COUNT)
    completion = min(whole_number(usage.get("completion_tokens")) or 0, MAX_COUNT)
    total = min(whole_number(usage.get("total_tokens")) or prompt + completion, MAX_COUNT)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def estimate_tokens(text: str) -> int:
    """About four characters a token: for usage the upstream did not report, and for
    reserving a budget before the call."""
    return (len(text) + 3) // 4
