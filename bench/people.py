"""The people of a run: users made and logged in through the login form, each with
a browser (bench/load.py) and conversations, and conversations driven by many at once."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from .common import PASSWORD
from .load import Browser, Reply, call_upstream, run_concurrently
from .stack import Stack


@dataclass
class Person:
    username: str
    user_id: int
    browser: Browser
    conversations: list[int] = field(default_factory=list)


def make_users(prefix: str, count: int, *, staff: bool = False) -> list:
    """Users with one shared password hash (hashing is the login's cost, not the seed's)."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User

    hashed = make_password(PASSWORD)
    User.objects.bulk_create(
        [User(username=f"{prefix}{i:04d}", password=hashed, is_staff=staff) for i in range(count)]
    )
    return list(User.objects.filter(username__startswith=prefix).order_by("username"))


def log_in(stack: Stack, users: list, *, parallel: int) -> list[Person]:
    """Log each user in through the login form (real password check, real session)."""
    people: list[Person | None] = [None] * len(users)
    lock = threading.Lock()
    pending = list(enumerate(users))

    def job(_index: int) -> None:
        while True:
            with lock:
                if not pending:
                    return
                i, user = pending.pop()
            browser = Browser(stack.url_for(i))
            browser.login(user.username, PASSWORD)
            people[i] = Person(user.username, user.pk, browser)

    run_concurrently(min(parallel, len(users)), job)
    return [p for p in people if p is not None]


def open_chats(people: list[Person], per_person: int) -> None:
    """Each person gets `per_person` new conversations and opens the first (GET the page)."""
    from django.contrib.auth.models import User

    from conversations.chat.services import conversations as chat_services

    owners = {u.pk: u for u in User.objects.filter(pk__in=[p.user_id for p in people])}
    for person in people:
        for _ in range(per_person - len(person.conversations)):
            conversation = chat_services.conversation_create(owner=owners[person.user_id])
            person.conversations.append(conversation.pk)
        _elapsed, response = person.browser.get(f"/c/{person.conversations[0]}/")
        if response.status_code != 200:
            raise RuntimeError(f"chat page answered {response.status_code}")


def completion_rows(cids: list[int]) -> dict[int, dict[str, Any]]:
    from conversations.models import Completion

    return {
        row["pk"]: row
        for row in Completion.objects.filter(pk__in=cids).values(
            "pk", "response_id", "status", "queued_at", "started_at", "finished_at", "attempts"
        )
    }


def line_up(replies: list[Reply], timings: dict[str, dict]) -> list[tuple[Reply, dict, dict]]:
    """Each successful reply with its completion row and the simulator's timing of its call."""
    rows = completion_rows([r.cid for r in replies if r.cid])
    matched = []
    for reply in replies:
        row = rows.get(reply.cid)
        timing = timings.get(row["response_id"]) if row else None
        if reply.ok and timing is not None:
            matched.append((reply, row, timing))
    return matched


def conversation_loop(
    people: list[Person], rounds: int, think: tuple[float, float], tag: str, *, how: str
) -> list[Reply]:
    replies: list[Reply] = []
    lock = threading.Lock()

    def person_job(index: int) -> None:
        person = people[index]
        rng = random.Random(f"{tag}-{index}")
        for round_ in range(rounds):
            time.sleep(rng.uniform(*think))
            reply = person.browser.converse(
                person.conversations[0],
                f"{tag} question {round_} from {person.username}: how fast is the reply?",
                how=how,
            )
            with lock:
                replies.append(reply)
            if reply.error:
                # A person whose send failed waits a moment, as they would, then goes on.
                time.sleep(0.5)

    run_concurrently(len(people), person_job)
    return replies


def failures(replies: list[Reply]) -> list[str]:
    return [
        r.error or f"ended {r.final_status or 'without an answer'}" for r in replies if not r.ok
    ]


def direct_calls(stack: Stack, workers: int, rounds: int, tag: str) -> list:
    """`workers` clients at once, each making `rounds` streamed calls straight to the upstream."""
    calls = []
    lock = threading.Lock()

    def job(index: int) -> None:
        session = requests.Session()
        for round_ in range(rounds):
            call = call_upstream(session, stack.simulator_root, f"{tag} {index} {round_}")
            with lock:
                calls.append(call)

    run_concurrently(workers, job)
    return calls
