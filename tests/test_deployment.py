"""Acceptance test of issue 9 (production hardening): a multi-process deployment.

Two uvicorn web processes and two Celery workers (one running beat, as production runs
one) share one database and broker, as web and worker hosts do behind a proxy. Users log
in on one web process and keep their session cookie on the other; each message is sent
through one web process and its reply read on the other (the SSE stream and poll the page
asks for, then a reload). The test shows that no reply is lost or doubled: one upstream
call per message, one reply row per choice, the text the upstream wrote, and both workers
answered. CI runs it on the embedded default (SQLite file, filesystem broker) and on
PostgreSQL + Redis (.ci/run).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from django.contrib.auth.models import User

from conversations.models import Completion, Message

from .conftest import WebProcess
from .support import Simulator, WorkerProcess, subprocess_env, wait_for
from .test_streaming_web import events, visible_text

pytestmark = pytest.mark.worker

USERS = ["alice", "bob", "carol", "dave", "erin", "frank"]
PASSWORD = "deployment-password-1"
ROUNDS = 2  # messages per user: 6 users x 2 = 12 messages
# Replies last about a second, so a round's six calls overlap and exceed what one worker
# takes at once (concurrency 4, prefetch 1): both workers must answer.
TOKEN_DELAY = 0.08
# Six log-ins at once each hash a password (PBKDF2): seconds on a busy two-core machine.
HTTP_TIMEOUT = 30
# However long a reply takes here, its stream ends well within this (seconds).
STREAM_DEADLINE = 30
RECEIVED = re.compile(r"Task conversations\.tasks\.run_completion\[[^\]]+\] received")
ANSWERED = re.compile(
    r"Task conversations\.tasks\.run_completion\[[^\]]+\] succeeded in \S+: 'succeeded'"
)
BEAT_SENT = "Sending due task sweep-completions"


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
class Deployment:
    webs: tuple[WebProcess, WebProcess]
    workers: tuple[WorkerProcess, WorkerProcess]
    simulator: Simulator

    def logs(self) -> str:
        processes = [*self.webs, *self.workers]
        return "\n".join(
            f"--- {p.log_path.name}\n{p.log_path.read_text()[-3000:]}" for p in processes
        )


@pytest.fixture
def deployment(transactional_db, simulator: Simulator, tmp_path: Path) -> Iterator[Deployment]:
    # One secret for every process, from the environment as on separate hosts (not the
    # var/secret_key file a single checkout would share); beat sweeps every second.
    env = subprocess_env(
        simulator,
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        COMPLETION_SWEEP_INTERVAL="1",
        # Quiet streams say so every second, so a reader's deadline is checked that often.
        STREAM_HEARTBEAT_SECONDS="1",
    )
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    webs = (WebProcess(env, tmp_path / "web-a.log"), WebProcess(env, tmp_path / "web-b.log"))
    workers = (
        WorkerProcess(env, tmp_path / "worker-1.log", beat=True),
        WorkerProcess(env, tmp_path / "worker-2.log"),
    )
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            for started in [pool.submit(p.start) for p in (*workers, *webs)]:
                started.result()
        yield Deployment(webs=webs, workers=workers, simulator=simulator)
    finally:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda process: process.stop(), (*webs, *workers)))


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


def start_chat(deployment: Deployment, index: int) -> Chat:
    """Log in on one web process and open a conversation there; with n > 1, set the
    choices on the other. Half the users start on web A, half on web B."""
    home, other = deployment.webs[index % 2], deployment.webs[(index + 1) % 2]
    name = USERS[index]
    chat = Chat(name, n=2 if index in (2, 3) else 1)  # both web processes get each kind
    chat.page = Page(chat.get(home, "/accounts/login/").text)
    response = chat.submit(home, "/accounts/login/", username=name, password=PASSWORD)
    assert "sessionid" in chat.session.cookies, f"{name} could not log in: {response.text[:500]}"
    response = chat.submit(home, "/c/new/")
    chat.path = response.url.removeprefix(home.url)
    assert re.fullmatch(r"/c/\d+/", chat.path), response.url
    if chat.n > 1:
        chat.open(other, chat.path)  # the session made by one web process holds on the other
        chat.submit(other, f"{chat.path}settings/", **{"settings-n": str(chat.n)})
    return chat


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
    with stream:
        for event, data in events(stream, deadline=time.monotonic() + STREAM_DEADLINE):
            if event.startswith("text-"):
                chat.text_events += 1
                assert text.startswith(visible_text(data)), (event, data)
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


def test_a_conversation_is_served_across_two_web_and_two_worker_processes(
    deployment: Deployment,
):
    deployment.simulator.control(token_delay=TOKEN_DELAY)
    hashed = User.objects.create_user(USERS[0], password=PASSWORD).password
    User.objects.bulk_create(User(username=name, password=hashed) for name in USERS[1:])
    webs = deployment.webs

    with ThreadPoolExecutor(max_workers=len(USERS)) as pool:
        chats = list(pool.map(start_chat, [deployment] * len(USERS), range(len(USERS))))
        # Each round every user sends at once, half through web A, half through web B,
        # and reads the reply on the other one; the next round swaps them. A user's first
        # message goes through the web process they logged in on.
        for round_ in range(ROUNDS):
            senders = [webs[(i + round_) % 2] for i in range(len(chats))]
            readers = [webs[(i + round_ + 1) % 2] for i in range(len(chats))]
            list(pool.map(send_and_read, chats, senders, readers))

    sent = [f"/echo {text}" for chat in chats for text in chat.sent]
    assert len(sent) == len(USERS) * ROUNDS
    # Exactly one upstream call per message: nothing lost, nothing doubled.
    asked = [body["messages"][-1]["content"] for body in deployment.simulator.bodies()]
    assert Counter(asked) == Counter(sent)

    questions = Message.objects.filter(role=Message.Role.USER).values_list("content", flat=True)
    assert Counter(questions) == Counter(sent)
    completions = Completion.objects.select_related("conversation", "request_message")
    assert completions.count() == len(sent)
    for completion in completions:
        n = completion.conversation.n or 1
        assert completion.status == Completion.Status.SUCCEEDED, deployment.logs()
        assert completion.attempts == 1
        replies = list(
            Message.objects.filter(completion=completion, role=Message.Role.ASSISTANT)
            .order_by("choice_index")
            .values_list("choice_index", "content")
        )
        question = completion.request_message.content.removeprefix("/echo ")
        assert replies == [(index, question) for index in range(n)]
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == sum(
        chat.n * ROUNDS for chat in chats
    )
    # The replies streamed from a worker to the other web process as they were written.
    assert sum(chat.text_events for chat in chats) > 0

    # Both workers answered (the sum is the number of messages: no call twice); one beat
    # swept meanwhile and found nothing lost to send again.
    logs = [worker.log() for worker in deployment.workers]
    answered = [len(ANSWERED.findall(log)) for log in logs]
    assert sum(answered) == len(sent) and all(answered), (answered, deployment.logs())
    assert all(RECEIVED.search(log) for log in logs)
    wait_for(
        lambda: BEAT_SENT in deployment.workers[0].log(), timeout=5, what="beat to send a sweep"
    )
    assert BEAT_SENT not in deployment.workers[1].log()
    for process in (*webs, *deployment.workers):
        log = process.log_path.read_text()
        assert "Traceback" not in log and "Sweep re-sends" not in log, deployment.logs()
