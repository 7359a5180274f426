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

import re
import secrets
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from conversations.models import Completion, Message
from tests.http import Chat, Page, send_and_read
from tests.support import Simulator, WebProcess, WorkerProcess, subprocess_env, wait_for

pytestmark = pytest.mark.worker

USERS = ["alice", "bob", "carol", "dave", "erin", "frank"]
PASSWORD = "deployment-password-1"
ROUNDS = 2  # messages per user: 6 users x 2 = 12 messages
# Replies last about a second, so a round's six calls overlap and exceed what one worker
# takes at once (concurrency 4, prefetch 1): both workers must answer.
TOKEN_DELAY = 0.08
RECEIVED = re.compile(r"Task conversations\.tasks\.run_completion\[[^\]]+\] received")
ANSWERED = re.compile(
    r"Task conversations\.tasks\.run_completion\[[^\]]+\] succeeded in \S+: 'succeeded'"
)
BEAT_SENT = "Sending due task sweep-completions"


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
