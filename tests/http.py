"""A person using the site without a browser: a logged-in session, htmx posts, the
reply's Server-Sent Events, the page as htmx and a browser read it, and one person's chat
sent through one web process and read through another."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlencode

import requests

from tests.support import WebProcess

# Log-ins at once each hash a password (PBKDF2): seconds on a busy two-core machine.
HTTP_TIMEOUT = 30
# However long a reply takes here, its stream ends well within this (seconds).
STREAM_DEADLINE = 30
HTMX = {"HTTP_HX_REQUEST": "true"}  # what htmx adds, for Django's test client


def logged_in_session(base_url: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base_url}/accounts/login/", timeout=10)
    response = session.post(
        f"{base_url}/accounts/login/",
        data={"username": username, "password": password},
        headers={"X-CSRFToken": session.cookies["csrftoken"], "Referer": base_url},
        timeout=10,
    )
    assert response.ok and "sessionid" in session.cookies
    return session


def post(
    session: requests.Session, base_url: str, path: str, *, headers: dict | None = None, **data
) -> requests.Response:
    """An htmx POST with the CSRF token, as the page sends it (and any more `headers`)."""
    return session.post(
        f"{base_url}{path}",
        data=data,
        headers={
            "X-CSRFToken": session.cookies["csrftoken"],
            "Referer": base_url,
            "HX-Request": "true",
            **(headers or {}),
        },
        timeout=10,
    )


def events(
    response: requests.Response, *, deadline: float | None = None
) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of an SSE response, as they arrive. With a `deadline` (a
    time.monotonic() value) the reading fails once it passes: keep-alive comments,
    which never end a stream, are checked too."""
    for event, data, _ in events_with_ids(response, deadline=deadline):
        yield event, data


def events_with_ids(
    response: requests.Response, *, deadline: float | None = None
) -> Iterator[tuple[str, str, str | None]]:
    """(event, data, id) triples of an SSE response, as they arrive (see `events`)."""
    parser = _Parser()
    for line in response.iter_lines(chunk_size=1, decode_unicode=True):
        if deadline is not None and time.monotonic() > deadline:
            raise AssertionError("the reply stream did not end in time")
        yield from parser.send(line)


def split_events(raw: str) -> list[tuple[str, str, str | None]]:
    """(event, data, id) triples of SSE text already read."""
    parser = _Parser()
    found = []
    for line in raw.split("\n"):
        found.extend(parser.send(line))
    return found


class _Parser:
    def __init__(self) -> None:
        self.event, self.data, self.id = "message", [], None

    def send(self, line: str) -> list[tuple[str, str, str | None]]:
        if line == "":
            found = [(self.event, "\n".join(self.data), self.id)] if self.data else []
            self.event, self.data, self.id = "message", [], None
            return found
        if line.startswith("event:"):
            self.event = line[6:].strip()
        elif line.startswith("id:"):
            self.id = line[3:].strip()
        elif line.startswith("data:"):
            self.data.append(line[6:] if line.startswith("data: ") else line[5:])
        return []


class Shown:
    """What the page shows of a live reply, event by event: `text-N` adds its data to
    choice N, `reset-N` replaces the choice's text (app.js does the same)."""

    def __init__(self) -> None:
        self.texts: dict[int, str] = {}

    def apply(self, event: str, data: str) -> str | None:
        """The choice's text after this event, or None for an event that is not text."""
        kind, _, index = event.partition("-")
        if kind not in ("text", "reset") or not index.isdigit():
            return None
        choice = int(index)
        self.texts[choice] = data if kind == "reset" else self.texts.get(choice, "") + data
        return self.texts[choice]


def visible_text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html).strip()


class Page(HTMLParser):
    """What the test reads from the app's HTML, as htmx and a browser would: elements'
    attributes, each form's fields by action, and the text of each reply choice."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.forms: dict[str, dict[str, str]] = {}
        self.choices: list[str] = []
        self._form: dict[str, str] | None = None
        self._field: tuple[str, str] | None = None  # (tag, name) of a textarea or select
        self._choice_depth = 0  # > 0 inside a choice's text
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.elements.append((tag, values))
        if self._choice_depth and tag == "div":
            self._choice_depth += 1
        elif tag == "div" and "message-text" in values.get("class", "").split():
            self._choice_depth = 1
            self.choices.append("")
        if tag == "form":
            self._form = self.forms.setdefault(values.get("action", ""), {})
        elif self._form is not None and "name" in values:
            self._add_field(tag, values)
        elif tag == "option" and self._field and self._form is not None:
            name = self._field[1]
            if "selected" in values or name not in self._form:
                self._form[name] = values.get("value", "")

    def _add_field(self, tag: str, values: dict[str, str]) -> None:
        assert self._form is not None
        kind = values.get("type", "text")
        if tag == "input" and kind != "submit":
            if kind not in ("checkbox", "radio") or "checked" in values:
                self._form[values["name"]] = values.get("value", "")
        elif tag in ("textarea", "select"):
            self._field = (tag, values["name"])
            if tag == "textarea":
                self._form[values["name"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._choice_depth:
            self._choice_depth -= 1
            if not self._choice_depth:
                self.choices[-1] = self.choices[-1].strip()
        elif tag == "form":
            self._form = None
        elif self._field and tag == self._field[0]:
            self._field = None

    def handle_data(self, data: str) -> None:
        if self._choice_depth:
            self.choices[-1] += data
        elif self._field and self._field[0] == "textarea" and self._form is not None:
            self._form[self._field[1]] += data

    def find(self, attribute: str, value: str | None = None) -> dict[str, str]:
        """The attributes of the first element that has `attribute` (with `value`)."""
        return next(
            values
            for _, values in self.elements
            if attribute in values and value in (None, values[attribute])
        )

    def csrf_header(self) -> dict[str, str]:
        """The headers htmx sends with every request (`hx-headers` on <body>)."""
        return json.loads(next(v for tag, v in self.elements if tag == "body")["hx-headers"])


@dataclass
class Chat:
    """One person in a browser: a session, and the page they have open."""

    name: str
    n: int  # choices per reply
    session: requests.Session = field(default_factory=requests.Session)
    page: Page | None = None
    path: str = ""  # the conversation page's path
    sent: list[str] = field(default_factory=list)
    text_events: int = 0

    def get(self, web: WebProcess, path: str, **kwargs) -> requests.Response:
        response = self.session.get(f"{web.url}{path}", timeout=HTTP_TIMEOUT, **kwargs)
        assert response.ok, f"{self.name}: GET {path} on {web.url}: {response.status_code}"
        return response

    def submit(self, web: WebProcess, action: str, **data: str) -> requests.Response:
        """Post a form of the open page as a browser does (no JavaScript)."""
        assert self.page is not None
        response = self.session.post(
            f"{web.url}{action}", data=self.page.forms[action] | data, timeout=HTTP_TIMEOUT
        )
        assert response.ok, f"{self.name}: POST {action} on {web.url}: {response.status_code}"
        self.page = Page(response.text)
        return response

    def open(self, web: WebProcess, path: str) -> None:
        response = self.get(web, path)
        assert "/accounts/login/" not in response.url, f"{self.name} is logged out on {web.url}"
        self.page = Page(response.text)


def send_and_read(chat: Chat, sender: WebProcess, reader: WebProcess) -> None:
    """Send through the composer on one web process; follow the reply on the other."""
    assert chat.page is not None
    number = len(chat.sent) + 1
    text = f"{chat.name} message {number} went in on port {sender.port} out on {reader.port}"
    chat.sent.append(text)
    composer = chat.page.find("id", "composer")["hx-post"]
    headers = {"HX-Request": "true", **chat.page.csrf_header()}
    response = chat.session.post(
        f"{sender.url}{composer}",
        data=chat.page.forms[composer] | {"content": f"/echo {text}"},
        headers=headers,
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200, response.text[:500]
    pending = Page(response.text).find("sse-connect")
    expected = [text] * chat.n

    # The page's fallback poll says nothing while the stream brings the reply.
    poll = pending["hx-get"]
    live = chat.session.get(
        f"{reader.url}{poll}?{urlencode(json.loads(pending['hx-vals']))}",
        headers=headers,
        timeout=HTTP_TIMEOUT,
    )
    assert live.status_code in (204, 286), live.status_code

    stream = chat.session.get(
        f"{reader.url}{pending['sse-connect']}",
        headers={"Accept": "text/event-stream"},
        stream=True,
        timeout=(5, 20),
    )
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    done = None
    shown = Shown()
    with stream:
        for event, data in events(stream, deadline=time.monotonic() + STREAM_DEADLINE):
            now = shown.apply(event, data)
            if now is not None:
                chat.text_events += 1
                assert text.startswith(now), (event, data, now)
            elif event == "done":
                done = data
                break
    assert done is not None, f"{chat.name}: the stream on {reader.url} ended without `done`"
    assert Page(done).choices == expected

    ended = chat.get(reader, poll, headers=headers)
    assert ended.status_code == 286  # htmx stops polling
    assert Page(ended.text).choices == expected

    chat.open(reader, chat.path)  # a reload
    assert chat.page.choices[-chat.n :] == expected
    assert not any("sse-connect" in values for _, values in chat.page.elements)
