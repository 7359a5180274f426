"""3. Pages: server time and query counts of the chat page at 10 to 2,000 messages, and
of the sidebar."""

from __future__ import annotations

from typing import Any

from bench.common import Mode, log, summary
from bench.people import log_in, make_users
from bench.stack import Stack

USER_TEXT = "Could you explain how the reply is produced, step by step, with an example? ({i})"
ASSISTANT_TEXT = (
    "Here is a **short** answer ({i}), written by the simulated model:\n\n"
    "1. The message is stored and a completion is queued.\n"
    "2. A worker calls the upstream and writes the reply as it arrives.\n"
    "3. The page shows each piece as soon as it is saved.\n\n"
    "Use `make bench` to measure it; the table lists p50, p95 and p99 for every figure, "
    "and a [link](https://example.com/docs) to the docs."
)


def seed_conversation(owner, size: int):
    """A conversation of `size` messages (user and assistant in turn, each reply with its
    completion), written in bulk."""
    from django.utils import timezone

    from conversations.chat.services import conversations as chat_services
    from conversations.models import Completion, Message
    from conversations.shared.rendering import render_markdown_for_storage

    conversation = chat_services.conversation_create(owner=owner, title=f"{size} messages")
    turns = size // 2
    now = timezone.now()
    users = Message.objects.bulk_create(
        [
            Message(
                conversation=conversation,
                role=Message.Role.USER,
                content=USER_TEXT.format(i=t),
                position=2 * t,
                created_at=now,
            )
            for t in range(turns)
        ]
    )
    completions = Completion.objects.bulk_create(
        [
            Completion(
                conversation=conversation,
                user=owner,
                request_message=message,
                model=conversation.model,
                status=Completion.Status.SUCCEEDED,
                prompt_tokens=100,
                completion_tokens=80,
                total_tokens=180,
                queued_at=now,
                started_at=now,
                finished_at=now,
            )
            for message in users
        ]
    )
    Message.objects.bulk_create(
        [
            Message(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                content=ASSISTANT_TEXT.format(i=t),
                # As the worker saves a reply: with its sanitized HTML made once.
                html=render_markdown_for_storage(ASSISTANT_TEXT.format(i=t)),
                position=2 * t + 1,
                completion=completion,
                choice_index=0,
                finish_reason="stop",
                created_at=now,
            )
            for t, completion in enumerate(completions)
        ]
    )
    return conversation


def _query_count(user, path: str, *, htmx: bool = False) -> tuple[int, int]:
    """Queries and status of one request, made in this process with Django's test client."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    client.get(path)  # warm: session, caches
    headers = {"HX-Request": "true"} if htmx else {}
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path, headers=headers)
    return len(queries), response.status_code


def pages(stack: Stack, mode: Mode) -> dict[str, Any]:
    from conversations.models import Conversation

    [page_user] = make_users("bench-pages-", 1)
    [sidebar_user] = make_users("bench-sidebar-", 1)
    conversations = {size: seed_conversation(page_user, size) for size in mode.page_sizes}
    Conversation.objects.bulk_create(
        [
            Conversation(owner=sidebar_user, title=f"Conversation {i}", model="gpt-4o-mini")
            for i in range(mode.sidebar_size)
        ]
    )
    people = log_in(stack, [page_user, sidebar_user], parallel=2)
    browsers = {p.username: p.browser for p in people}
    targets = [
        (f"chat page, {size} messages", page_user, f"/c/{conversations[size].pk}/", False, size)
        for size in mode.page_sizes
    ]
    targets += [
        (f"chat home with the sidebar, {mode.sidebar_size} conversations",
         sidebar_user, "/", False, 0),
        (f"sidebar partial (htmx), {mode.sidebar_size} conversations",
         sidebar_user, "/conversations/?page=2", True, 0),
    ]  # fmt: skip
    rows = []
    for label, user, path, htmx, size in targets:
        browser = browsers[user.username]
        reps = mode.page_reps.get(size, 20)
        log(f"pages: {label} x {reps}")
        for _ in range(3):
            browser.get(path, htmx=htmx)
        times, sizes = [], []
        for _ in range(reps):
            elapsed, response = browser.get(path, htmx=htmx)
            if response.status_code != 200:
                raise RuntimeError(f"{path} answered {response.status_code}")
            times.append(elapsed)
            sizes.append(len(response.content))
        queries, status = _query_count(user, path, htmx=htmx)
        rows.append(
            {
                "what": label,
                "messages": size,
                "server": summary(times),
                "queries": queries,
                "status": status,
                "kb": sizes[-1] / 1024,
            }
        )
    chat_counts = {row["queries"] for row in rows if row["what"].startswith("chat page")}
    return {"rows": rows, "constant_queries": len(chat_counts) == 1}
