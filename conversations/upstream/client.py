"""Posting to an OpenAI-compatible `/chat/completions` with `requests`: one JSON answer or
a stream of deltas, and the error a failed call means (retryable or permanent)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from . import protocol
from .protocol import (
    ChatResponse,
    RetryableError,
    StreamInterrupted,
    UpstreamError,
)
from .sse import StreamDelta, StreamState, iter_sse_data

logger = logging.getLogger(__name__)


def _upstream_message(response: requests.Response) -> str:
    return protocol.message_of(response.text, reason=response.reason, status=response.status_code)


def error_for_status(response: requests.Response, *, secret: str = "") -> UpstreamError:
    """The error a non-200 answer means; `secret` (the key) is cut out of the upstream's
    message, as some servers echo the key they refused and the message is shown and kept."""
    return protocol.error_for_answer(
        response.status_code,
        _upstream_message(response),
        retry_after=response.headers.get("Retry-After"),
        secret=secret,
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
        return protocol.parse_body(response.content, latency_ms=latency_ms)

    def stream(
        self,
        body: dict[str, Any],
        *,
        on_delta: Callable[[StreamState, list[StreamDelta]], None],
        stop: StopSignal | None = None,
    ) -> tuple[StreamState, bool]:
        """A streaming call: feeds deltas to `on_delta` as they arrive.

        Setting `stop` (from any thread) shuts the socket down, so a stop works even while
        the upstream is silent. Returns the final state and whether it was stopped.
        A stream that ends without [DONE] or a finish reason raises StreamInterrupted.
        """
        stop = stop or StopSignal()
        response = self._post({**body, "stream": True}, stream=True)
        state = StreamState()
        stop.attach(response)
        try:
            for data in iter_sse_data(response):
                deltas = state.take(data)
                if state.done:
                    break
                if deltas or state.usage:
                    on_delta(state, deltas)
                if stop.is_set():
                    break
        except requests.RequestException as exc:
            if not stop.is_set():
                raise StreamInterrupted(
                    f"The upstream stream broke ({exc.__class__.__name__}).",
                    error_type="stream_broken",
                    http_status=200,
                ) from exc
        finally:
            stop.detach()
            if state.done and not stop.is_set():
                _read_to_the_end(response)
            # Closing drops the connection unless it went back to the pool: that is how
            # the upstream learns we stopped.
            response.close()
        if stop.is_set():
            return state, True
        state.check_complete()
        return state, False


# After [DONE], how long the body's own end may take to arrive before the connection is
# dropped instead of kept (it is normally in the same packet as [DONE]).
END_OF_BODY_SECONDS = 0.25
END_OF_BODY_BYTES = 65536


def _read_to_the_end(response: requests.Response) -> None:
    """Read what follows [DONE] (a chunked body's last chunk), so the kept-alive connection
    goes back to the session's pool for the next call instead of a new TCP connection per
    stream. A server that holds the body open after [DONE] gets END_OF_BODY_SECONDS, not
    the call's read timeout; then the connection is dropped."""
    sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
    if sock is None:
        return
    timeout = sock.gettimeout()
    left = END_OF_BODY_BYTES
    try:
        sock.settimeout(END_OF_BODY_SECONDS)
        while left > 0:
            data = response.raw.read1(left)
            if not data:
                return  # the body ended: urllib3 has put the connection back in the pool
            left -= len(data)
    except Exception:  # a late or broken end only costs the connection
        return
    finally:
        with contextlib.suppress(OSError):  # closed by urllib3 after a timeout
            sock.settimeout(timeout)


class StopSignal:
    """Ends a stream from another thread: `set` shuts the stream's socket down, which
    unblocks the thread reading it (even while the upstream says nothing) and drops the
    upstream connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._response: requests.Response | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with self._lock:
            self._set = True
            self._shut_down()

    def attach(self, response: requests.Response) -> None:
        with self._lock:
            self._response = response
            if self._set:  # set while the call was connecting
                self._shut_down()

    def detach(self) -> None:
        with self._lock:
            self._response = None

    def _shut_down(self) -> None:
        if self._response is not None:
            with contextlib.suppress(Exception):
                self._response.raw.shutdown()
