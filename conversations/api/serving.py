"""The site's OpenAI-compatible API: `POST /v1/chat/completions` and `GET /v1/models`
(also under `/api/v1/`), with a personal key as the Bearer token.

Served ahead of Django's handler (chatsite/asgi.py), like a reply's event stream: a call
carries its own key, so no session, CSRF or middleware runs. The client holds the
connection while the upstream answers, so there is no broker hop: this process calls the
upstream itself on a pooled async client, and the database writes around the call (open:
the key, the limits and the budget reservation in one transaction; settle: the reply, its
usage and cost, and the budget) run on a thread each. The call's row holds a lease this
process renews; if the process dies, the sweep gives the call up and releases its budget.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from functools import cache

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from chatsite import logs
from conversations.accounts.selectors import site_settings
from conversations.providers import services as providers
from conversations.shared.asgi import disconnected, header
from conversations.upstream import protocol
from conversations.upstream.async_client import AsyncChatClient, pooled_client
from conversations.upstream.sse import StreamState

from . import contract, services
from .errors import ApiError

logger = logging.getLogger(__name__)

PREFIXES = ("/v1/", "/api/v1/")
JSON = (b"content-type", b"application/json")
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store, private"),
    (b"x-accel-buffering", b"no"),
]


def application(*, fallback):
    """Serve the API's URLs; hand everything else to `fallback`."""

    async def app(scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIXES):
            await serve(scope, receive, send)
            return
        await fallback(scope, receive, send)

    return app


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=settings.API_THREADS, thread_name_prefix="api")


def _in_thread(function):
    """`function` on one of the API's threads, its database connection given back after
    (to the pool, with PostgreSQL) as a request's is."""

    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=False, executor=_pool())


_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _upstream(route: providers.Route) -> AsyncChatClient:
    """This event loop's client of the call's provider (its connections are kept alive);
    a provider whose address, key or timeouts change gets a new one."""
    loop = asyncio.get_running_loop()
    clients = _clients.setdefault(loop, {})
    where = (route.provider_id, route.base_url, route.api_key, route.timeout, route.connect_timeout)
    client = clients.get(where)
    if client is None:
        client = clients[where] = AsyncChatClient(
            base_url=route.base_url,
            api_key=route.api_key,
            client=pooled_client(timeout=route.timeout, connect_timeout=route.connect_timeout),
        )
    return client


async def serve(scope, receive, send) -> None:
    request_id = logs.request_id_from(header(scope, b"x-request-id"))
    extra = [(b"x-request-id", request_id.encode())]
    with logs.request_id_bound(request_id):
        path = scope["path"].removeprefix("/api")
        try:
            if path.rstrip("/") == "/v1/models":
                if scope["method"] not in ("GET", "HEAD"):
                    raise _not_allowed("GET")
                listed = await _in_thread(_models)(header(scope, b"authorization"))
                await _answer(send, 200, json.dumps(listed).encode(), extra)
            elif path.rstrip("/") == "/v1/chat/completions":
                if scope["method"] != "POST":
                    raise _not_allowed("POST")
                raw = await _body(receive)
                await _completion(scope, receive, send, raw, extra)
            else:
                raise ApiError(404, f"Unknown API URL: {scope['path']}", code="unknown_url")
        except ApiError as error:
            if error.retry_after:
                extra.append((b"retry-after", str(error.retry_after).encode()))
            await _answer(send, error.status, error.body(), extra)
        except _ClientGone:
            pass


class _ClientGone(Exception):
    pass


def _not_allowed(method: str) -> ApiError:
    return ApiError(405, f"Use {method} on this URL.", code="method_not_allowed")


async def _answer(send, status: int, body: bytes, extra: list) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [JSON, *extra]})
    await send({"type": "http.response.body", "body": body})


async def _body(receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > settings.API_MAX_REQUEST_BYTES:
            raise ApiError(
                413,
                f"The request is larger than {settings.API_MAX_REQUEST_BYTES} bytes.",
                code="request_too_large",
            )
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _models(authorization: str) -> dict:
    key = services.key_authenticate(authorization)
    return {
        "object": "list",
        "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": "chatsite"}
            for model in services.models_for(key)
        ],
    }


def _open(authorization: str, raw: bytes) -> services.Opened:
    """One thread hop before the call: the key, the request, the limits and the budget."""
    site = site_settings()
    key = services.key_authenticate(authorization, site=site)
    asked = contract.asked(raw, models=services.models_for(key), max_choices=site.max_choices)
    return services.call_open(key=key, asked=asked)


def _upstream_error(error: protocol.UpstreamError) -> ApiError:
    """What the client is told of an upstream failure: never the upstream's 401 or 429 as
    its own (those are about the site's key, not the caller's)."""
    if error.error_type == "timeout":
        return ApiError(
            504, "The model service did not answer in time.", type="upstream_error",
            code="upstream_timeout",
        )  # fmt: skip
    if error.http_status in (400, 404, 413, 422):
        return ApiError(
            error.http_status,
            f"The model service rejected the request: {error.message}",
            code="upstream_rejected",
        )
    return ApiError(
        502, f"The model service failed: {error.message}", type="upstream_error",
        code="upstream_error",
    )  # fmt: skip


async def _completion(scope, receive, send, raw: bytes, extra: list) -> None:
    opened = await _in_thread(_open)(header(scope, b"authorization"), raw)
    started = time.monotonic()
    renewing = asyncio.ensure_future(_renew(opened))
    try:
        if opened.asked.stream:
            await _stream(opened, receive, send, started, extra)
        else:
            await _plain(opened, send, started, extra)
    finally:
        renewing.cancel()


def _elapsed(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


async def _renew(opened: services.Opened) -> None:
    every = max(1.0, settings.COMPLETION_LEASE_SECONDS / 3)
    while True:
        await asyncio.sleep(every)
        try:
            await _in_thread(services.call_renew)(opened=opened)
        except Exception:  # the database is away a moment: the next renewal tries again
            logger.warning("API call %s: could not renew its lease", opened.completion_id)


async def _plain(opened: services.Opened, send, started: float, extra: list) -> None:
    try:
        response, content = await _upstream(opened.route).create(opened.asked.body)
    except protocol.UpstreamError as error:
        await _in_thread(services.call_fail)(
            opened=opened, error=error, latency_ms=_elapsed(started)
        )
        raise _upstream_error(error) from None
    # Counted before the client has the answer: what it reads next (its usage) includes it.
    await _in_thread(services.call_settle)(
        opened=opened, response=response, latency_ms=_elapsed(started)
    )
    await _answer(send, 200, content, extra)


class _Relay:
    """Forwards the upstream's stream to the client as it comes, keeping what it told."""

    def __init__(self, opened: services.Opened, send, extra: list) -> None:
        self.opened = opened
        self.send = send
        self.extra = extra
        self.state = StreamState()
        self.started = False

    async def run(self) -> None:
        async with _upstream(self.opened.route).stream(self.opened.asked.body) as payloads:
            await self.send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*STREAM_HEADERS, *self.extra],
                }
            )
            self.started = True
            async for data in payloads:
                usage = self.state.usage
                deltas = self.state.take(data)
                if self.state.done:
                    return
                # The usage chunk is always asked of the upstream (to bill the call); a
                # client that did not ask for it does not get it.
                usage_only = self.state.usage is not usage and not deltas
                if usage_only and not self.opened.asked.wants_usage:
                    continue
                body = f"data: {data}\n\n".encode()
                await self.send({"type": "http.response.body", "body": body, "more_body": True})
        self.state.check_complete()


async def _stream(opened: services.Opened, receive, send, started: float, extra: list) -> None:
    relay = _Relay(opened, send, extra)
    relaying = asyncio.ensure_future(relay.run())
    gone = asyncio.ensure_future(disconnected(receive))
    done, _pending = await asyncio.wait(
        [relaying, gone],
        return_when=asyncio.FIRST_COMPLETED,
        timeout=settings.COMPLETION_MAX_SECONDS,
    )
    for task in (relaying, gone):
        task.cancel()
    await asyncio.gather(relaying, gone, return_exceptions=True)
    closed_by_client = relaying not in done and gone in done
    error = None
    if relaying in done and not relaying.cancelled():
        error = relaying.exception()
    elif not done:
        error = protocol.StreamInterrupted(
            "The reply was cut at the time limit.", error_type="time_limit", http_status=200
        )
    if error is not None and not isinstance(error, protocol.UpstreamError):
        logger.error("API call %s failed", opened.completion_id, exc_info=error)
        error = protocol.RetryableError(
            "chatsite could not relay the stream.", error_type="internal_error"
        )
    latency_ms = _elapsed(started)
    if error is not None and not relay.started:
        await _in_thread(services.call_fail)(opened=opened, error=error, latency_ms=latency_ms)
        raise _upstream_error(error)
    await _in_thread(services.call_settle)(
        opened=opened,
        response=relay.state.response(latency_ms=latency_ms),
        latency_ms=latency_ms,
        closed_by_client=closed_by_client,
        broken=error,
    )
    if closed_by_client:
        return
    end = b"data: [DONE]\n\n"
    if error is not None:
        end = b"data: " + _upstream_error(error).body() + b"\n\n"
    await send({"type": "http.response.body", "body": end})
