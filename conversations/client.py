"""The Chat Completions protocol: plain data in, plain data out (no Django here).

`build_request` validates parameters with the contract's ranges and keeps only the
ones that are set; `ChatClient.create` posts it and parses the answer, raising
`RetryableError` or `PermanentError` for failures.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import requests

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


# json.loads joins a valid pair into one character: any surrogate left in a str is lone.
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


def _short(value: Any, length: int) -> str:
    return clean_text(value)[:length]


def _finish_reason(value: Any) -> str | None:
    return None if value is None else _short(value, FINISH_REASON_LENGTH)


def _count(value: Any) -> int | None:
    """A token count or timestamp as the upstream sent it, or None when it is not one."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if 0 <= number <= MAX_TIMESTAMP else None


def _choice_index(value: Any) -> int:
    index = _count(value)
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
    content: str
    finish_reason: str | None
    role: str = "assistant"


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


def _upstream_message(response: requests.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str) and error:
        return error
    text = response.text.strip()
    return text[:300] if text else (response.reason or f"HTTP {response.status_code}")


RETRYABLE_STATUSES = {408, 409, 429}


def error_for_status(response: requests.Response, *, secret: str = "") -> UpstreamError:
    """The error a non-200 answer means; `secret` (the key) is cut out of the upstream's
    message, as some servers echo the key they refused and the message is shown and kept."""
    status = response.status_code
    message = _upstream_message(response)
    if secret:
        message = message.replace(secret, "[redacted]")
    if status in RETRYABLE_STATUSES or status >= 500:
        return RetryableError(
            message,
            error_type="rate_limited" if status == 429 else f"http_{status}",
            http_status=status,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    return PermanentError(message, error_type=f"http_{status}", http_status=status)


def parse_response(data: Any, *, http_status: int = 200, latency_ms: int = 0) -> ChatResponse:
    """Turn a decoded JSON body into a ChatResponse, its text cleaned (`clean_text`) and its
    short fields cut to size. A 200 carrying an `error` object raises it with the upstream's
    own message; a body of the wrong shape is retryable."""
    if isinstance(data, dict) and data.get("error") and not data.get("choices"):
        raise error_in_body(data["error"], http_status=http_status)
    try:
        choices = [
            Choice(
                index=_choice_index(choice.get("index", position)),
                content=clean_text((choice.get("message") or {}).get("content")),
                role=_short((choice.get("message") or {}).get("role") or "assistant", 16),
                finish_reason=_finish_reason(choice.get("finish_reason")),
            )
            for position, choice in enumerate(data["choices"])
        ]
        return ChatResponse(
            id=_short(data.get("id") or "", ID_LENGTH),
            created=_count(data.get("created")),
            model=_short(data.get("model") or "", MODEL_LENGTH),
            object=_short(data.get("object") or "", OBJECT_LENGTH),
            choices=choices,
            usage=_parse_usage(data.get("usage")),
            http_status=http_status,
            latency_ms=latency_ms,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RetryableError(
            f"The upstream answered with an unexpected body ({exc.__class__.__name__}).",
            error_type="bad_response",
            http_status=http_status,
        ) from exc


def error_in_body(error: Any, *, http_status: int = 200) -> UpstreamError:
    """An `error` object sent with status 200 (or inside a stream): the upstream's own
    message; retryable unless its code says the request itself is at fault."""
    message = error.get("message") if isinstance(error, dict) else error
    code = _count(error.get("code")) if isinstance(error, dict) else None
    cls = RetryableError
    if code is not None and 400 <= code < 500 and code not in RETRYABLE_STATUSES:
        cls = PermanentError
    return cls(
        clean_text(message)[:2000] or "The upstream reported an error without a message.",
        error_type="upstream_error",
        http_status=http_status,
    )


def _parse_usage(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    prompt = min(_count(usage.get("prompt_tokens")) or 0, MAX_COUNT)
    completion = min(_count(usage.get("completion_tokens")) or 0, MAX_COUNT)
    total = min(_count(usage.get("total_tokens")) or prompt + completion, MAX_COUNT)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


@dataclass
class StreamDelta:
    """One piece of a streamed reply: text added to choice `index`."""

    index: int
    content: str = ""
    finish_reason: str | None = None


@dataclass
class StreamState:
    """What a stream has told so far; complete once every choice has a finish reason."""

    id: str = ""
    created: int | None = None
    model: str = ""
    object: str = ""
    contents: dict[int, str] = field(default_factory=dict)
    finish_reasons: dict[int, str | None] = field(default_factory=dict)
    usage: Usage | None = None
    done: bool = False

    def apply(self, chunk: dict[str, Any]) -> list[StreamDelta]:
        """Take one chunk in (cleaned as `parse_response` cleans); ValueError, TypeError,
        KeyError or AttributeError when it has the wrong shape."""
        self.id = self.id or _short(chunk.get("id") or "", ID_LENGTH)
        if self.created is None:
            self.created = _count(chunk.get("created"))
        self.model = self.model or _short(chunk.get("model") or "", MODEL_LENGTH)
        self.object = self.object or _short(chunk.get("object") or "", OBJECT_LENGTH)
        if chunk.get("usage"):
            self.usage = _parse_usage(chunk["usage"])
        deltas = []
        for position, choice in enumerate(chunk.get("choices") or []):
            index = _choice_index(choice.get("index", position))
            text = clean_text((choice.get("delta") or {}).get("content"))
            finish_reason = _finish_reason(choice.get("finish_reason"))
            self.contents[index] = self.contents.get(index, "") + text
            self.finish_reasons.setdefault(index, None)
            if finish_reason:
                self.finish_reasons[index] = finish_reason
            deltas.append(StreamDelta(index, text, finish_reason))
        return deltas

    def response(self, *, latency_ms: int = 0) -> ChatResponse:
        return ChatResponse(
            id=self.id,
            created=self.created,
            model=self.model,
            object="chat.completion",
            choices=[
                Choice(index=i, content=self.contents[i], finish_reason=self.finish_reasons[i])
                for i in sorted(self.contents)
            ],
            usage=self.usage,
            latency_ms=latency_ms,
        )


class ChatClient:
    """Posts to {base_url}/chat/completions with a Bearer key."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = api_key
        self.timeout = (connect_timeout, timeout)
        self.session = session or requests.Session()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}

    def _post(self, body: dict[str, Any], *, stream: bool) -> requests.Response:
        try:
            response = self.session.post(
                self.url, json=body, headers=self._headers(), timeout=self.timeout, stream=stream
            )
        except requests.Timeout as exc:
            raise RetryableError(
                "The upstream did not answer in time.", error_type="timeout"
            ) from exc
        except requests.RequestException as exc:
            raise RetryableError(
                f"Could not reach the upstream ({exc.__class__.__name__}).",
                error_type="connection_error",
            ) from exc
        if response.status_code != 200:
            error = error_for_status(response, secret=self.api_key)
            response.close()
            raise error
        return response

    def create(self, body: dict[str, Any]) -> ChatResponse:
        """One non-streaming call."""
        started = time.monotonic()
        response = self._post(body, stream=False)
        latency_ms = int((time.monotonic() - started) * 1000)
        try:
            # JSON is UTF-8 (RFC 8259): bytes that are not become U+FFFD, not a guess at
            # another encoding for the whole body.
            data = json.loads(response.content.decode("utf-8", "replace"))
        except ValueError as exc:
            raise RetryableError(
                "The upstream answered 200 with a body that is not JSON.",
                error_type="bad_response",
                http_status=200,
            ) from exc
        return parse_response(data, http_status=200, latency_ms=latency_ms)

    def stream(
        self,
        body: dict[str, Any],
        *,
        on_delta: Callable[[StreamState, list[StreamDelta]], None],
        should_stop: Callable[[], bool] | None = None,
        stop_check_interval: float = 0.2,
        on_watcher_exit: Callable[[], None] | None = None,
    ) -> tuple[StreamState, bool]:
        """A streaming call: feeds deltas to `on_delta` as they arrive.

        `should_stop` is polled on a watcher thread every `stop_check_interval` seconds;
        when it says yes the socket is shut down, so a stop works even while the
        upstream is silent. Returns the final state and whether it was stopped.
        A stream that ends without [DONE] or a finish reason raises StreamInterrupted.
        """
        response = self._post({**body, "stream": True}, stream=True)
        state = StreamState()
        stopped = threading.Event()
        finished = threading.Event()

        def watch() -> None:
            try:
                while not finished.wait(stop_check_interval):
                    if should_stop and should_stop():
                        stopped.set()
                        # Unblocks the reading thread and drops the upstream connection.
                        with contextlib.suppress(Exception):
                            response.raw.shutdown()
                        return
            finally:
                if on_watcher_exit:
                    on_watcher_exit()

        watcher = None
        if should_stop is not None:
            watcher = threading.Thread(target=watch, name="stream-stop-watcher", daemon=True)
            watcher.start()
        try:
            for data in iter_sse_data(response):
                if data == "[DONE]":
                    state.done = True
                    break
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
                    if state.contents and any(state.contents.values()):
                        # Text came first: the reply broke off (its partial text is kept).
                        raise StreamInterrupted(error.message, error_type="stream_error")
                    raise error
                try:
                    deltas = state.apply(chunk)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    raise StreamInterrupted(
                        "The upstream sent a stream event of the wrong shape "
                        f"({exc.__class__.__name__}).",
                        error_type="bad_response",
                        http_status=200,
                    ) from exc
                if deltas or state.usage:
                    on_delta(state, deltas)
                if stopped.is_set():
                    break
        except requests.RequestException as exc:
            if not stopped.is_set():
                raise StreamInterrupted(
                    f"The upstream stream broke ({exc.__class__.__name__}).",
                    error_type="stream_broken",
                    http_status=200,
                ) from exc
        finally:
            finished.set()
            # Closing drops the connection, which is how the upstream learns we stopped.
            response.close()
            if watcher is not None:
                watcher.join(timeout=5)
        if stopped.is_set():
            return state, True
        if not state.done:
            finished_all = state.finish_reasons and all(state.finish_reasons.values())
            if not finished_all:
                raise StreamInterrupted(
                    "The upstream stream ended before the reply was complete.",
                    error_type="stream_broken",
                    http_status=200,
                )
        return state, False


def iter_sse_data(response: requests.Response) -> Iterator[str]:
    """The `data:` payloads of a Server-Sent Events body, one per event, as they arrive.

    Reads with read1() so each event is handed on as soon as its bytes are in, whether
    the body is chunked or delimited by the connection closing."""
    buffer = b""
    lines: list[str] = []
    while True:
        try:
            data = response.raw.read1(65536)
        except Exception as exc:  # urllib3 wraps socket errors in its own types
            raise requests.ConnectionError(str(exc)) from exc
        if not data:
            break
        buffer += data
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            # Bytes that are not UTF-8 become U+FFFD rather than ending the stream.
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if line == "":
                if lines:
                    yield "\n".join(lines)
                    lines = []
            elif line.startswith("data:"):
                value = line[5:]
                lines.append(value[1:] if value.startswith(" ") else value)
    if buffer.strip().startswith(b"data:"):
        value = buffer.strip().decode("utf-8", "replace")[5:]
        lines.append(value[1:] if value.startswith(" ") else value)
    if lines:
        yield "\n".join(lines)
