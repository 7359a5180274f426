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


# A conversation as a tree: its page beside the list of as many messages.
BRANCHED = 200
BRANCHED_LABEL = f"chat page, {BRANCHED} messages on 4 branches"


def seed_conversation(owner, size: int, *, branches: int = 1):
    """A conversation of `size` messages (user and assistant in turn, each reply with its
    completion), written in bulk. With `branches`, in that many branches of equal length,
    each a new version of a message ten before the end of the path so far (the path grows
    by each branch): the tree a person who edits now and then makes."""
    from conversations.chat.services import conversations as chat_services
    from conversations.models import Message

    title = f"{size} messages" + (f" on {branches} branches" if branches > 1 else "")
    conversation = chat_services.conversation_create(owner=owner, title=title)
    per = size // branches
    path = _chain(conversation, None, per)
    for _ in range(branches - 1):
        fork = len(path) - 10  # a user message: the branch is a new version of it
        Message.objects.filter(pk=path[fork].pk).update(is_selected=False)
        path = path[:fork] + _chain(conversation, path[fork - 1], per)
    return conversation


def _chain(conversation, parent, count: int) -> list:
    """`count` messages after `parent` (None: from the start), each following the one
    before; the rows in order."""
    from django.utils import timezone

    from conversations.models import Completion, Message
    from conversations.shared.rendering import render_markdown_for_storage

    now = timezone.now()
    start = parent.position + 1 if parent is not None else 0
    turns = count // 2
    users = Message.objects.bulk_create(
        [
            Message(
                conversation=conversation,
                role=Message.Role.USER,
                content=USER_TEXT.format(i=t),
                position=start + 2 * t,
                created_at=now,
            )
            for t in range(turns)
        ]
    )
    completions = Completion.objects.bulk_create(
        [
            Completion(
                conversation=conversation,
                user=conversation.owner,
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
    replies = Message.objects.bulk_create(
        [
            Message(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                content=ASSISTANT_TEXT.format(i=t),
                # As the worker saves a reply: with its sanitized HTML made once.
                html=render_markdown_for_storage(ASSISTANT_TEXT.format(i=t)),
                position=start + 2 * t + 1,
                parent=users[t],
                completion=completion,
                choice_index=0,
                finish_reason="stop",
                created_at=now,
            )
            for t, completion in enumerate(completions)
        ]
    )
    for t, message in enumerate(users):
        message.parent = replies[t - 1] if t else parent
    Message.objects.bulk_update(users, ["parent"])
    return [row for pair in zip(users, replies, strict=True) for row in pair]


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
    branched = seed_conversation(page_user, BRANCHED, branches=4)
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
    targets.append((BRANCHED_LABEL, page_user, f"/c/{branched.pk}/", False, BRANCHED))
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
