"""Virtual people in browsers, over real HTTP: log in, open a chat, send, watch the reply.

Each browser does what `templates/conversations/chat.html` makes htmx do: POST the
composer with `HX-Request: true`, read the pending reply out of the returned partial,
then follow it the way that partial says: its Server-Sent Events (`sse-connect`) up to
the `done` event that carries the ended reply (polling only if the stream fails), or, without
`sse-connect`, its poll alone (`hx-get` every N, until the answer is 286).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from html import unescape

import requests

POLL_RE = re.compile(r'hx-get="(/c/\d+/completions/(\d+)/[^"]*)"')
SSE_RE = re.compile(r'sse-connect="([^"]+)"')
EVENTS_CID_RE = re.compile(r"/completions/(\d+)/")
EVERY_RE = re.compile(r'hx-trigger="[^"]*every (\d+)(ms|s)')
DEFAULT_POLL_SECONDS = 0.4
# Events that carry a reply's text: the text so far or a delta (`text-<i>`), or a choice's
# whole text for a reader that joins late (`reset-<i>`).
TEXT_EVENTS = ("text-", "reset-")


@dataclass
class Reply:
    """What one send looked like from the browser (monotonic seconds unless said)."""

    cid: int = 0
    how: str = ""  # "sse" or "poll"
    sent: float = 0.0  # the POST went out
    sent_wall: float = 0.0  # the same moment, Unix time (to line up with server rows)
    posted: float = 0.0  # the POST's answer (user message + pending reply) arrived
    first_text: float | None = None  # the first piece of the reply was visible
    done: float | None = None  # the event stream said the reply ended
    visible: float | None = None  # the whole reply was visible and marked finished
    visible_wall: float | None = None
    final_status: str = ""
    error: str = ""
    events: int = 0  # SSE events read
    received_bytes: int = 0  # bytes of the event stream read

    @property
    def ok(self) -> bool:
        return not self.error and self.visible is not None and self.final_status == "succeeded"


@dataclass
class Pending:
    """The pending reply a send answers with: where the page follows it."""

    cid: int
    poll_url: str  # the partial htmx polls (hx-get), with its query string if any
    interval: float  # seconds between polls
    events_url: str | None  # sse-connect (html-unescaped; may carry a signed token)

    @property
    def fallback_events_url(self) -> str:
        """The event stream when forced to SSE on a partial that does not name one."""
        return self.poll_url.split("?", 1)[0] + "events/"

    @classmethod
    def parse(cls, html: str) -> Pending | None:
        poll, sse = POLL_RE.search(html), SSE_RE.search(html)
        events_url = unescape(sse.group(1)) if sse else None
        cid = poll.group(2) if poll else None
        if cid is None and events_url and (found := EVENTS_CID_RE.search(events_url)):
            cid = found.group(1)
        if cid is None:
            return None
        every = EVERY_RE.search(html)
        interval = DEFAULT_POLL_SECONDS
        if every:
            interval = int(every.group(1)) / (1000 if every.group(2) == "ms" else 1)
        poll_url = unescape(poll.group(1)) if poll else ""
        return cls(int(cid), poll_url, interval, events_url)


class Browser:
    """One person's browser tab: its own cookies and connections."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.session = requests.Session()
        self._second: requests.Session | None = None

    def tab(self) -> Browser:
        """Another tab of the same browser (same cookies, its own connections)."""
        other = Browser(self.base_url, timeout=self.timeout)
        other.session.cookies.update(self.session.cookies)
        return other

    def _headers(self, htmx: bool = False) -> dict[str, str]:
        headers = {
            "X-CSRFToken": self.session.cookies.get("csrftoken", ""),
            "Referer": self.base_url,
        }
        if htmx:
            headers["HX-Request"] = "true"
        return headers

    def login(self, username: str, password: str) -> None:
        self.session.get(f"{self.base_url}/accounts/login/", timeout=self.timeout)
        response = self.session.post(
            f"{self.base_url}/accounts/login/",
            data={"username": username, "password": password},
            headers=self._headers(),
            timeout=self.timeout,
        )
        if not response.ok or "sessionid" not in self.session.cookies:
            raise RuntimeError(f"login of {username} failed: HTTP {response.status_code}")

    def get(self, path: str, *, htmx: bool = False) -> tuple[float, requests.Response]:
        """GET a page; returns (seconds until the whole body arrived, response)."""
        started = time.perf_counter()
        response = self.session.get(
            f"{self.base_url}{path}", headers=self._headers(htmx), timeout=self.timeout
        )
        _ = response.content
        return time.perf_counter() - started, response

    def converse(self, pk: int, text: str, *, how: str = "page", deadline: float = 60) -> Reply:
        """Send `text` in conversation `pk` and wait until the reply is visible and finished.

        `how`: "page" follows whatever the pending partial asks for; "sse" or "poll" force one.
        A reply not finished `deadline` seconds after the send counts as failed.
        """
        reply = Reply()
        try:
            pending = self.send(pk, text, reply)
            if pending is None:
                return reply
            if how == "sse" or (how == "page" and pending.events_url is not None):
                reply.how = "sse"
                self._follow_events(pending, reply, deadline)
            else:
                reply.how = "poll"
                self._follow_poll(pending, reply, deadline)
        except requests.RequestException as error:
            reply.error = f"{type(error).__name__}: {error}"[:300]
        return reply

    def send(self, pk: int, text: str, reply: Reply) -> Pending | None:
        """POST the composer as htmx does; the pending reply it answers with, or None (and
        `reply.error`) when there is none."""
        reply.sent_wall = time.time()
        reply.sent = time.monotonic()
        response = self.session.post(
            f"{self.base_url}/c/{pk}/messages/",
            data={"content": text},
            headers=self._headers(htmx=True),
            timeout=self.timeout,
        )
        reply.posted = time.monotonic()
        if response.status_code != 200:
            reply.error = f"send: HTTP {response.status_code}"
            return None
        pending = Pending.parse(response.text)
        if pending is None:
            reply.error = "send: no pending reply in the answer"
            return None
        reply.cid = pending.cid
        return pending

    def _poll(self, url: str, params: dict, reply: Reply) -> bool:
        """One GET of the pending partial; True once it answered 286 with the final reply."""
        session = self._poll_session()
        response = session.get(
            f"{self.base_url}{url}",
            params=params,
            headers=self._headers(htmx=True),
            timeout=self.timeout,
        )
        if response.status_code == 286:
            if reply.visible is None:
                reply.visible = time.monotonic()
                reply.visible_wall = time.time()
                reply.final_status = "failed" if "reply-failed" in response.text else "succeeded"
            return True
        if response.status_code not in (200, 204):
            reply.error = reply.error or f"poll: HTTP {response.status_code}"
            return True
        if reply.first_text is None and 'class="message-text' in response.text:
            reply.first_text = time.monotonic()
        return False

    def _poll_session(self) -> requests.Session:
        # htmx's polls run beside the open event stream: a second connection, same cookies.
        if self._second is None:
            self._second = requests.Session()
            self._second.cookies.update(self.session.cookies)
        return self._second

    def _follow_poll(self, pending: Pending, reply: Reply, deadline: float) -> None:
        """Poll the pending partial every `interval` until it answers 286, as htmx does."""
        while time.monotonic() - reply.sent < deadline:
            time.sleep(pending.interval)
            # Without the page's `live` value: the fallback poll shows the text as it grows.
            if self._poll(pending.poll_url, {}, reply):
                return
        reply.error = f"poll: no end of the reply after {deadline:.0f} s"

    def _follow_events(self, pending: Pending, reply: Reply, deadline: float) -> None:
        """What the pending partial does with htmx's SSE extension: show each `text-<i>`
        (or `reset-<i>`) event and swap in the `done` event's HTML, the ended reply, which
        is when it is visible. Only if the stream fails does the page fall back to polling."""
        done = self.read_events(pending.events_url or pending.fallback_events_url, reply, deadline)
        if done and reply.visible is None:
            reply.visible = reply.done
            reply.visible_wall = time.time()
        if reply.visible is None and not reply.error:
            if not pending.poll_url:
                reply.error = "events: the stream ended before `done`, and no poll to fall back on"
                return
            # The stream broke off: the page polls for the text and the end instead.
            self._follow_poll(pending, reply, deadline)

    def read_events(self, url: str, reply: Reply, deadline: float) -> bool:
        """Read the event stream until `done` (True) or it fails (False). Text arrives in
        `text-<i>` events (the whole reply so far, or a delta to append) and `reset-<i>`
        events (a choice's whole text, for a reader that joins late)."""
        with self.session.get(
            f"{self.base_url}{url}",
            headers={"Accept": "text/event-stream", "Cache-Control": "no-cache"},
            stream=True,
            # Between two reads; the server sends a keep-alive comment every 15 s.
            timeout=(5, 30),
        ) as response:
            if response.status_code != 200:
                reply.error = f"events: HTTP {response.status_code}"
                return False
            buffer = b""
            for chunk in response.iter_content(chunk_size=None):
                if time.monotonic() - reply.sent > deadline:
                    reply.error = f"events: no end of the reply after {deadline:.0f} s"
                    return False
                reply.received_bytes += len(chunk)
                # Lines may end in CRLF; a CR at a chunk's end meets its LF in the next one.
                buffer = (buffer + chunk).replace(b"\r\n", b"\n")
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    event, data = _parse_event(block.decode())
                    reply.events += bool(data) or event != "message"  # not a comment
                    if event.startswith(TEXT_EVENTS) and data:
                        reply.first_text = reply.first_text or time.monotonic()
                    elif event == "done":
                        reply.done = time.monotonic()
                        reply.final_status = "failed" if "reply-failed" in data else "succeeded"
                        return True
        return False


def _parse_event(block: str) -> tuple[str, str]:
    """The event name and data of one SSE block (`id:`, `retry:` and comments ignored)."""
    event, data = "message", []
    for line in block.split("\n"):
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
    return event, "\n".join(data)


# --- the upstream called directly: the baseline ---


@dataclass
class DirectCall:
    response_id: str = ""
    elapsed: float = 0.0  # request sent -> last byte of the stream
    first_token: float | None = None  # request sent -> first piece of text
    error: str = ""


def call_upstream(session: requests.Session, base_url: str, text: str) -> DirectCall:
    """One streamed Chat Completions call straight to the upstream, read to its end."""
    call = DirectCall()
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": text}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    try:
        with session.post(
            f"{base_url}/v1/chat/completions",
            json=body,
            headers={"Authorization": "Bearer sk-bench"},
            stream=True,
            timeout=(5, 120),
        ) as response:
            response.raise_for_status()
            if read_stream(response, call, started):
                return call
        call.error = "stream ended without [DONE]"
    except (requests.RequestException, ValueError) as error:
        call.error = f"{type(error).__name__}: {error}"[:300]
    return call


def read_stream(response: requests.Response, call: DirectCall, started: float) -> bool:
    """Read a Chat Completions stream to its [DONE] (True) or its end (False), noting the
    response id, the first piece of text and the whole call's time on `call`."""
    buffer = b""
    for chunk in response.iter_content(chunk_size=None):
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            data = block.decode().removeprefix("data: ").strip()
            if data == "[DONE]":
                call.elapsed = time.perf_counter() - started
                return True
            payload = json.loads(data)
            call.response_id = call.response_id or payload.get("id", "")
            choices = payload.get("choices") or []
            if call.first_token is None and any(
                (c.get("delta") or {}).get("content") for c in choices
            ):
                call.first_token = time.perf_counter() - started
    return False


def run_concurrently(workers: int, job: Callable[[int], None]) -> None:
    """Run job(0..workers-1) on as many threads at once and wait for all of them."""
    errors: list[BaseException] = []

    def target(index: int) -> None:
        try:
            job(index)
        except BaseException as error:  # surfaced below: a crashed virtual user is a bug
            errors.append(error)

    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
