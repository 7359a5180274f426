"""The fault suite's harness: the production-like stack a fault test runs on, people who
send and read as a browser does (log-in form, htmx composer, the reply's Server-Sent
Events), and the counts every fault ends in.

The counts, per fault (one row of the fault table):
- messages: sent through the composer (refused ones included, and counted apart).
- lost: the server stored the message, but its reply did not end as expected (succeeded
  with the expected text, or failed with the expected error), or the reader was never
  shown that end.
- doubled stored: the message stored twice, more than one completion for it, more than
  one reply row for a choice, or the expected text twice in the reply.
- doubled live: a text event whose visible text is not a prefix of the reply as shown at
  the end, or holds its beginning twice (each text event carries the whole text so far).
- stuck: a completion still queued or running at the deadline.
- recovery: from the fault's end to the last reply ended.
"""

from __future__ import annotations

import codecs
import contextlib
import html
import re
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import requests
from django.contrib.auth.models import User

from conversations.chat.services import conversations as chat_services
from conversations.models import Completion, Message
from conversations.shared.rendering import render_markdown
from tests.http import Page, Shown
from tests.services import RedisServer
from tests.support import Simulator, WebProcess, WorkerProcess, wait_for
from tests.tcpproxy import TcpProxy

PASSWORD = "faults-password-1"
# A send may wait out a database outage in the web process's pool (DB_POOL_TIMEOUT, 30 s).
HTTP_TIMEOUT = 40
# A browser's EventSource waits a moment before it connects again (its `retry`).
RECONNECT_PAUSE = 0.2
# A reply being written ends well within this (seconds), faults and recovery included.
REPLY_DEADLINE = 45

ROWS: list[Row] = []  # every fault test's row, in the order they ran (the fault table)


@dataclass
class StackSetup:
    """What a fault module changes in its stack (it overrides the `stack_setup` fixture)."""

    env: dict[str, str] = field(default_factory=dict)
    private_redis: bool = False  # a redis-server of the test's own, as broker and REDIS_URL
    beat_worker_started: bool = True  # False: the test starts workers[0] (with beat) itself


@dataclass
class Stack:
    webs: tuple[WebProcess, WebProcess]
    workers: tuple[WorkerProcess, WorkerProcess]  # workers[0] runs beat
    simulator: Simulator
    database: TcpProxy  # every app process reaches PostgreSQL through it
    redis: RedisServer | None  # the private one, if the setup asked for it

    def processes(self) -> list[WebProcess | WorkerProcess]:
        return [*self.webs, *self.workers]

    def logs(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {p.log_path.name}\n{p.log_path.read_text()[-chars:]}"
            for p in self.processes()
            if p.log_path.exists()
        )

    def with_tracebacks(self) -> list[str]:
        return [
            p.log_path.name
            for p in self.processes()
            if p.log_path.exists() and "Traceback" in p.log_path.read_text()
        ]


@dataclass(frozen=True)
class Expect:
    """How a reply must end: succeeded with `text` stored (and `finish_reason`, if given),
    or failed with `error` in its message."""

    text: str | None = None
    error: str | None = None
    finish_reason: str | None = None


@dataclass
class Conversation:
    """An open conversation page: where its composer posts, with what."""

    session: requests.Session
    path: str
    composer: str
    fields: dict[str, str]
    headers: dict[str, str]  # what htmx sends with every request (CSRF included)
    page: Page


class Person:
    """Someone with a browser: one session (cookies), logged in through the form."""

    def __init__(self, username: str, password: str = PASSWORD) -> None:
        self.username = username
        self.password = password
        self.session = requests.Session()

    def log_in(self, web: WebProcess) -> Person:
        page = Page(self.session.get(f"{web.url}/accounts/login/", timeout=HTTP_TIMEOUT).text)
        response = self.session.post(
            f"{web.url}/accounts/login/",
            data=page.forms["/accounts/login/"]
            | {"username": self.username, "password": self.password},
            timeout=HTTP_TIMEOUT,
        )
        assert "sessionid" in self.session.cookies, (
            f"{self.username} could not log in: {response.status_code} {response.text[:300]}"
        )
        return self

    def tab(self) -> requests.Session:
        """Another tab of the same browser: the same cookies, its own connections."""
        session = requests.Session()
        session.cookies.update(self.session.cookies)
        return session

    def open_conversation(self, web: WebProcess) -> Conversation:
        """Start a new conversation from the chat page, as its "New" button does (which
        reuses an untouched one: a person has one empty conversation at most)."""
        home = self.session.get(f"{web.url}/", timeout=HTTP_TIMEOUT)
        assert home.status_code == 200, home.status_code
        response = self.session.post(
            f"{web.url}/c/new/", data=Page(home.text).forms["/c/new/"], timeout=HTTP_TIMEOUT
        )
        assert response.status_code == 200, response.status_code
        return self.open(web, response.url.removeprefix(web.url))

    def open(self, web: WebProcess, path: str, *, tab: bool = False) -> Conversation:
        """Open a conversation's page (in a tab of its own)."""
        session = self.tab() if tab else self.session
        response = session.get(f"{web.url}{path}", timeout=HTTP_TIMEOUT)
        assert response.status_code == 200 and re.fullmatch(r"/c/\d+/", path), (path, response)
        page = Page(response.text)
        composer = page.find("id", "composer")["hx-post"]
        return Conversation(
            session=session,
            path=path,
            composer=composer,
            fields=page.forms[composer],
            headers={"HX-Request": "true", **page.csrf_header()},
            page=page,
        )


def logged_in(web: WebProcess, username: str = "alice") -> Person:
    """A new user, logged in on `web` through the form."""
    person = Person(username)
    User.objects.create_user(username, password=person.password)
    return person.log_in(web)


def conversation_paths(person: Person, count: int) -> list[str]:
    """`count` new conversations of the person's (the "New" button reuses an empty one)."""
    owner = User.objects.get(username=person.username)
    return [f"/c/{chat_services.conversation_create(owner=owner).pk}/" for _ in range(count)]


@dataclass
class Reply:
    """One message sent through the composer, and its reply as the reader saw it."""

    conversation: Conversation
    text: str  # sent as `/echo <text>`: the simulator answers exactly this
    expect: Expect
    sent_at: float = 0.0  # time.time()
    status: int | None = None  # the composer's HTTP status (None: no answer)
    refusal: str = ""  # why the composer did not show the reply coming, if it did not
    completion_id: int | None = None
    events_path: str = ""
    live: list[str] = field(default_factory=list)  # visible text of every text event
    done_html: str | None = None
    ended_at: float | None = None  # when the reader got `done` (time.time())
    connections: list[int] = field(default_factory=list)  # ports of the streams read
    read_errors: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def content(self) -> str:
        return f"/echo {self.text}"

    @property
    def accepted(self) -> bool:
        return bool(self.events_path)


def unique(label: str, words: int = 0) -> str:
    """A message no other in the run has; with `words`, that many more (a longer reply)."""
    extra = "".join(f" word{i}" for i in range(words))
    return f"{label} {secrets.token_hex(4)}{extra}"


def send(
    conversation: Conversation,
    web: WebProcess,
    text: str,
    *,
    expect: Expect | None = None,
) -> Reply:
    """Post `/echo <text>` through the composer, as htmx does."""
    reply = Reply(conversation=conversation, text=text, expect=expect or Expect(text=text))
    reply.sent_at = time.time()
    try:
        response = conversation.session.post(
            f"{web.url}{conversation.composer}",
            data=conversation.fields | {"content": reply.content},
            headers=conversation.headers,
            timeout=HTTP_TIMEOUT,
        )
    except requests.RequestException as error:
        reply.refusal = f"no answer ({type(error).__name__})"
        return reply
    reply.status = response.status_code
    if response.status_code != 200:
        reply.refusal = f"HTTP {response.status_code}"
        return reply
    try:
        pending = Page(response.text).find("sse-connect")
    except StopIteration:
        error = re.search(r'id="composer-error"[^>]*>(.*?)</div>', response.text, re.S)
        reply.refusal = visible(error.group(1)) if error else "no reply pending"
        return reply
    reply.events_path = pending["sse-connect"]
    reply.completion_id = int(re.search(r"/completions/(\d+)/", reply.events_path).group(1))
    return reply


def send_and_follow(
    conversation: Conversation,
    sender: WebProcess,
    readers: Sequence[WebProcess],
    text: str,
    *,
    expect: Expect | None = None,
) -> Reply:
    reply = send(conversation, sender, text, expect=expect)
    if reply.accepted:
        follow(reply, readers)
    return reply


def follow(reply: Reply, readers: Sequence[WebProcess], *, deadline: float | None = None) -> None:
    """Read the reply's events on a thread, on readers[0] first; when a stream breaks,
    connect again to the next web process, as the page's EventSource does."""
    until = deadline or time.monotonic() + REPLY_DEADLINE
    reply.reader = threading.Thread(
        target=_read, args=(reply, list(readers), until), name="sse-reader", daemon=True
    )
    reply.reader.start()


def _read(reply: Reply, readers: list[WebProcess], deadline: float) -> None:
    turn = 0
    while time.monotonic() < deadline:
        web = readers[turn % len(readers)]
        turn += 1
        try:
            with reply.conversation.session.get(
                f"{web.url}{reply.events_path}",
                headers={"Accept": "text/event-stream"},
                stream=True,
                timeout=(3, 10),
            ) as response:
                kind = response.headers.get("Content-Type", "")
                if response.status_code != 200 or not kind.startswith("text/event-stream"):
                    reply.read_errors.append(f"{web.port}: HTTP {response.status_code}")
                else:
                    reply.connections.append(web.port)
                    shown = Shown()
                    for event, data in sse_events(response, deadline):
                        now = shown.apply(event, data)
                        if now is not None:
                            reply.live.append(" ".join(now.split()))
                        elif event == "done":
                            reply.done_html = data
                            reply.ended_at = time.time()
                            return
        except (requests.RequestException, OSError) as error:
            reply.read_errors.append(f"{web.port}: {type(error).__name__}")
        if time.monotonic() < deadline:
            time.sleep(RECONNECT_PAUSE)


def sse_events(response: requests.Response, deadline: float) -> Iterator[tuple[str, str]]:
    """(event, data) pairs as they arrive, read in whole chunks (a huge reply's events are
    hundreds of kilobytes; this process runs the simulator too). Stops at the deadline:
    the stream's keep-alive comments wake it at least every STREAM_HEARTBEAT_SECONDS."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    buffer, searched = "", 0
    for chunk in response.iter_content(chunk_size=None):
        if time.monotonic() > deadline:
            return
        buffer += decoder.decode(chunk)
        while (end := buffer.find("\n\n", max(0, searched - 1))) >= 0:
            block, buffer, searched = buffer[:end], buffer[end + 2 :], 0
            event, data = "message", []
            for line in block.split("\n"):
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[6:] if line.startswith("data: ") else line[5:])
            if data:
                yield event, "\n".join(data)
        searched = len(buffer)


def visible(markup: str) -> str:
    """The text a person sees in some HTML, its white space as one space."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", markup)).split())


def shown(text: str) -> str:
    """`text` as the page shows a reply: rendered Markdown, visible text only."""
    return visible(str(render_markdown(text)))


def wait_for_text(replies: Sequence[Reply], *, words: int = 5, timeout: float = 20) -> None:
    """Until every reader has been shown `words` words of its reply (mid-stream)."""
    wait_for(
        lambda: all(r.live and len(r.live[-1].split()) >= words for r in replies),
        timeout=timeout,
        what=f"{len(replies)} reader(s) to be shown {words} words",
    )


def settle(replies: Sequence[Reply], *, deadline: float) -> None:
    """Wait for every reader to end, then for no completion to be queued or running."""
    for reply in replies:
        if reply.reader is not None:
            reply.reader.join(timeout=max(0.0, deadline - time.monotonic()))
    with contextlib.suppress(AssertionError):  # what is still active is counted as stuck
        wait_for(
            lambda: not Completion.objects.filter(status__in=Completion.ACTIVE).exists(),
            timeout=max(0.0, deadline - time.monotonic()),
            interval=0.1,
            what="every completion to end",
        )


# --- The counts ---


@dataclass
class Row:
    fault: str
    messages: int = 0
    lost: int = 0
    doubled_stored: int = 0
    doubled_live: int = 0
    stuck: int = 0
    refused: int = 0
    recovery: float | None = None
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)  # upstream calls per message text
    attempts: dict[str, int] = field(default_factory=dict)

    @property
    def held(self) -> bool:
        return not (self.lost or self.doubled_stored or self.doubled_live or self.stuck)

    def markdown(self) -> str:
        recovery = "—" if self.recovery is None else f"{self.recovery:.1f} s"
        notes = "; ".join(self.notes)
        return (
            f"| {self.fault} | {self.messages} | {self.lost} | "
            f"{self.doubled_stored} / {self.doubled_live} | {self.stuck} | {recovery} | {notes} |"
        )


TABLE_HEADER = (
    "| fault | messages | lost | doubled stored / live | stuck | recovery time | notes |\n"
    "|---|---|---|---|---|---|---|"
)


def record(row: Row) -> Row:
    ROWS.append(row)
    return row


def tally(
    fault: str,
    replies: Sequence[Reply],
    stack: Stack,
    *,
    fault_ended_at: float | None = None,
    notes: Sequence[str] = (),
) -> Row:
    """Settle the replies, count, and record the row (before any assertion can fail)."""
    settle(replies, deadline=time.monotonic() + REPLY_DEADLINE)
    row = Row(fault=fault, messages=len(replies), notes=list(notes))
    calls: dict[str, int] = {}
    for body in stack.simulator.bodies():
        last = (body.get("messages") or [{}])[-1].get("content")
        calls[last] = calls.get(last, 0) + 1
    ended: list[float] = []
    late = 0
    for reply in replies:
        _count(row, reply, calls, ended)
        if not reply.accepted and Message.objects.filter(content=reply.content).exists():
            late += 1
    if late:
        row.notes.append(f"{late} stored though the client got no answer")
    if row.refused:
        reasons = sorted({r.refusal for r in replies if not r.accepted})
        row.notes.append(f"refused {row.refused} ({', '.join(reasons)}; nothing stored)")
    broken = [error.split(": ", 1)[1] for r in replies for error in r.read_errors]
    if broken:
        kinds = ", ".join(f"{kind} ×{broken.count(kind)}" for kind in sorted(set(broken)))
        row.notes.append(f"readers connected again {len(broken)}× after {kinds}")
    crashed = {
        p.log_path.name: p.log_path.read_text().count("Exception in thread")
        for p in stack.processes()
        if p.log_path.exists()
    }
    if any(crashed.values()):
        where = ", ".join(f"{name} ×{count}" for name, count in crashed.items() if count)
        row.notes.append(f"threads died of an uncaught exception ({where})")
    if fault_ended_at is not None and ended:
        row.recovery = max(0.0, max(ended) - fault_ended_at)
    row.stuck = Completion.objects.filter(status__in=Completion.ACTIVE).count()
    if row.stuck:
        row.problems.append(f"{row.stuck} completion(s) still queued or running")
    return record(row)


def _count(row: Row, reply: Reply, calls: dict[str, int], ended: list[float]) -> None:
    """One message: stored once, one completion, ended as expected (stored and shown)."""
    completion = _completion_of(row, reply, calls)
    if completion is None:
        return  # counted already: lost, doubled or refused
    row.attempts[reply.text] = completion.attempts
    if completion.is_active:
        return  # counted as stuck
    if reply.ended_at is not None:
        ended.append(reply.ended_at)
    elif completion.finished_at is not None:
        ended.append(completion.finished_at.timestamp())
    if reply.expect.error is not None:
        _count_failure(row, reply, completion)
    else:
        _count_reply(row, reply, completion)


def _completion_of(row: Row, reply: Reply, calls: dict[str, int]) -> Completion | None:
    """The message's one completion; None (counted) when the message is missing or it has
    not exactly one."""
    label = reply.text[:40]
    stored = list(Message.objects.filter(role=Message.Role.USER, content=reply.content))
    if not stored:
        if reply.accepted:
            row.lost += 1
            row.problems.append(f"{label}: accepted but not stored")
        else:
            row.refused += 1
        return None
    if len(stored) > 1:
        row.doubled_stored += 1
        row.problems.append(f"{label}: the message is stored {len(stored)} times")
    completions = list(Completion.objects.filter(request_message__in=stored))
    row.calls[reply.text] = calls.get(reply.content, 0)
    if len(completions) == 1:
        return completions[0]
    if completions:
        row.doubled_stored += 1
    else:
        row.lost += 1
    row.problems.append(f"{label}: {len(completions)} completions")
    return None


def _count_failure(row: Row, reply: Reply, completion: Completion) -> None:
    """A reply expected to fail: failed with that error, and the reader was told."""
    label, error = reply.text[:40], reply.expect.error
    if completion.status != Completion.Status.FAILED or error not in completion.error_message:
        row.lost += 1
        row.problems.append(
            f"{label}: {completion.status} ({completion.error_message!r}), expected "
            f"failed with {error!r}"
        )
    elif reply.accepted and error not in html.unescape(reply.done_html or ""):
        row.lost += 1
        row.problems.append(f"{label}: the reader was never shown the error")


def _count_reply(row: Row, reply: Reply, completion: Completion) -> None:
    """A reply expected to succeed: one row per choice, the expected text once, shown."""
    label, expect = reply.text[:40], reply.expect
    replies = list(
        Message.objects.filter(completion=completion, role=Message.Role.ASSISTANT).order_by(
            "choice_index", "pk"
        )
    )
    indexes = [m.choice_index for m in replies]
    if len(indexes) != len(set(indexes)):
        row.doubled_stored += 1
        row.problems.append(f"{label}: reply rows for choices {indexes}")
    expected = expect.text or ""
    content = replies[0].content if replies else None
    if completion.status != Completion.Status.SUCCEEDED or content != expected:
        if content and expected and _twice(content, expected):
            row.doubled_stored += 1
            row.problems.append(f"{label}: the text twice in the stored reply")
        else:
            row.lost += 1
            row.problems.append(
                f"{label}: {completion.status} with {(content or '')[:80]!r} "
                f"({completion.error_message!r})"
            )
        return
    if expect.finish_reason is not None and replies[0].finish_reason != expect.finish_reason:
        row.lost += 1
        row.problems.append(f"{label}: finish_reason {replies[0].finish_reason!r}")
    if reply.accepted:
        _count_live(row, reply, shown(expected), " ".join(expected.split()))


def _count_live(row: Row, reply: Reply, expected: str, source: str) -> None:
    """The reader's view: the ended reply shows the text once (rendered: `expected`), and
    every live text before it was a beginning of the reply's text as written (`source`:
    live text is shown as it comes, unrendered)."""
    label = reply.text[:40]
    if reply.done_html is None:
        row.lost += 1
        row.problems.append(f"{label}: the reader was never shown the end ({reply.read_errors})")
        return
    choices = Page(reply.done_html).choices
    final = " ".join(choices[0].split()) if choices else ""
    if final != expected:
        if _twice(final, expected):
            row.doubled_live += 1
            row.problems.append(f"{label}: the ended reply shows the text twice")
        else:
            row.lost += 1
            row.problems.append(f"{label}: the ended reply shows {final[:80]!r}")
        return
    beginning = source[:40]
    for text in reply.live:
        if (beginning and text.count(beginning) > source.count(beginning)) or not (
            source.startswith(text)
        ):
            row.doubled_live += 1
            row.problems.append(f"{label}: a live event showed {text[:120]!r}")
            return


def _twice(content: str, expected: str) -> bool:
    beginning = expected[:40]
    return bool(beginning) and content.count(beginning) > expected.count(beginning)


def assert_held(row: Row, stack: Stack) -> None:
    """lost 0, doubled 0 (stored and live), stuck 0."""
    details = "\n".join(row.problems)
    assert row.held, f"{row.markdown()}\n{details}\n{stack.logs()}"


def assert_no_tracebacks(stack: Stack) -> None:
    """For faults the app handles without an error of its own."""
    assert not stack.with_tracebacks(), f"tracebacks in {stack.with_tracebacks()}:\n" + (
        stack.logs()
    )
