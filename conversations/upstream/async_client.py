"""Posting to an OpenAI-compatible `/chat/completions` with httpx's async client, for the
site's own API (conversations/api): the answer as the upstream sent it (its bytes, and
parsed), or its stream's `data:` payloads as they arrive. No Django here.

One `httpx.AsyncClient` per event loop: its pool keeps connections to the upstream
alive from one call to the next."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from . import protocol
from .protocol import ChatResponse, RetryableError, UpstreamError
from .sse import SseParser


def pooled_client(*, timeout: float, connect_timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
    )


def _transport_error(exc: httpx.HTTPError) -> UpstreamError:
    if isinstance(exc, httpx.TimeoutException):
        return RetryableError("The upstream did not answer in time.", error_type="timeout")
    return RetryableError(
        f"Could not reach the upstream ({exc.__class__.__name__}).", error_type="connection_error"
    )


class AsyncChatClient:
    """Posts to {base_url}/chat/completions with a Bearer key, on a shared pooled client."""

    def __init__(self, *, base_url: str, api_key: str, client: httpx.AsyncClient) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = api_key
        self.client = client
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    async def _refusal(self, response: httpx.Response) -> UpstreamError:
        text = (await response.aread()).decode("utf-8", "replace")
        return protocol.error_for_answer(
            response.status_code,
            protocol.message_of(text, reason=response.reason_phrase, status=response.status_code),
            retry_after=response.headers.get("Retry-After"),
            secret=self.api_key,
        )

    async def create(self, body: dict[str, Any]) -> tuple[ChatResponse, bytes]:
        """One non-streaming call: the parsed answer, and its body as sent."""
        started = time.monotonic()
        try:
            response = await self.client.post(
                self.url,
                content=json.dumps(body, ensure_ascii=False).encode(),
                headers=self.headers,
            )
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc
        if response.status_code != 200:
            raise await self._refusal(response)
        latency_ms = int((time.monotonic() - started) * 1000)
        return protocol.parse_body(response.content, latency_ms=latency_ms), response.content

    @contextlib.asynccontextmanager
    async def stream(self, body: dict[str, Any]) -> AsyncIterator[AsyncIterator[str]]:
        """A streaming call: the `data:` payloads as they come. Leaving the block early
        closes the connection, which is how the upstream learns the reader has gone."""
        request = self.client.build_request(
            "POST",
            self.url,
            content=json.dumps({**body, "stream": True}, ensure_ascii=False).encode(),
            headers=self.headers,
        )
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc
        try:
            if response.status_code != 200:
                raise await self._refusal(response)
            yield _payloads(response)
        finally:
            await response.aclose()


async def _payloads(response: httpx.Response) -> AsyncIterator[str]:
    parser = SseParser()
    try:
        async for data in response.aiter_raw():
            for payload in parser.feed(data):
                yield payload
    except httpx.HTTPError as exc:
        raise protocol.StreamInterrupted(
            f"The upstream stream broke ({exc.__class__.__name__}).",
            error_type="stream_broken",
            http_status=200,
        ) from exc
    for payload in parser.finish():
        yield payload
