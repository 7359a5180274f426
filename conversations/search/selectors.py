"""A person's search of their own chats: message text and titles, substrings in any
script (Chinese has no spaces to split words at, so the index is of trigrams: see
migrations/0010_message_search.py), newest first, a page at a time.

PostgreSQL answers from pg_trgm's GIN index on UPPER(content) (the expression Django's
`icontains` compares); SQLite from an FTS5 table with the trigram tokenizer. A query of
fewer than three characters has no trigram: it is a scan of the person's own messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

from conversations.chat.models import Conversation, Message

PAGE_SIZE = 20
TITLE_HITS = 5
MAX_QUERY = 200
# Past this a page number is nonsense (the offset would scan the whole index).
MAX_PAGE = 500
# Characters of context either side of the match in a snippet.
CONTEXT = 70
TRIGRAM = 3
FTS_TABLE = "conversations_message_search"
# The query is a parameter; only the constant table name is in the SQL.
FTS_ROWIDS = f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s"  # noqa: S608


def normalize(query: str | None) -> str:
    """The query as searched: whitespace collapsed, at most MAX_QUERY characters."""
    return " ".join((query or "").split())[:MAX_QUERY]


@dataclass(frozen=True)
class Snippet:
    """A piece of text around the match, in three parts the template escapes one by one
    (never joined into HTML here)."""

    before: str
    match: str
    after: str


def snippet(text: str, query: str) -> Snippet:
    """The first occurrence of `query` in `text` (case-insensitive), with CONTEXT
    characters around it on one line; the start of the text when it is not found (a
    match the index made through case folding Python does differently)."""
    flat = " ".join(text.split())
    at = flat.lower().find(query.lower())
    if at < 0 or len(flat.lower()) != len(flat):
        return Snippet(flat[: CONTEXT * 2] + ("…" if len(flat) > CONTEXT * 2 else ""), "", "")
    start = max(0, at - CONTEXT)
    end = min(len(flat), at + len(query) + CONTEXT)
    return Snippet(
        ("…" if start else "") + flat[start:at],
        flat[at : at + len(query)],
        flat[at + len(query) : end] + ("…" if end < len(flat) else ""),
    )


@dataclass
class Hit:
    conversation_id: int
    title: str
    archived: bool
    snippet: Snippet
    created_at: datetime
    message_id: int | None = None  # None: the title matched
    role: str = ""

    @property
    def anchor(self) -> str:
        """The element of the chat page that shows the message."""
        if self.message_id is None:
            return ""
        prefix = "message" if self.role == Message.Role.USER else "choice"
        return f"{prefix}-{self.message_id}"


@dataclass
class Results:
    query: str
    titles: list[Hit]
    messages: list[Hit]
    page: int
    has_more: bool

    @property
    def next_page(self) -> int:
        return self.page + 1

    @property
    def previous_page(self) -> int:
        return self.page - 1

    @property
    def empty(self) -> bool:
        return not self.titles and not self.messages


def matching_messages(user: AbstractBaseUser, query: str) -> QuerySet[Message]:
    """The user's own messages (user and assistant, never the system prompt) whose
    text holds `query`, through the database's trigram index when the query has a
    trigram (PostgreSQL's planner takes it once the person has more than a few
    messages; for a handful, their conversations' rows are fewer to read)."""
    # A reply being written is found once it has ended (SQLite's index takes it then).
    rows = Message.objects.filter(
        conversation__owner_id=user.pk, role__in=(Message.Role.USER, Message.Role.ASSISTANT)
    ).exclude(status=Message.Status.STREAMING)
    if connection.vendor == "sqlite" and len(query) >= TRIGRAM:
        # A phrase of the query's trigrams: a substring, whatever the script.
        phrase = '"' + query.replace('"', '""') + '"'
        return rows.filter(
            pk__in=RawSQL(FTS_ROWIDS, [phrase])  # noqa: S611 - the query is a parameter
        )
    return rows.filter(content__icontains=query)


def search_own(user: AbstractBaseUser, query: str, page: int = 1) -> Results:
    """One page of the user's messages that hold `query`, newest first, and on the first
    page the conversations whose title holds it (two queries)."""
    query = normalize(query)
    page = max(1, min(page, MAX_PAGE))
    if not query:
        return Results(query, [], [], page, False)
    start = (page - 1) * PAGE_SIZE
    rows = list(
        matching_messages(user, query)
        .select_related("conversation")
        .only(
            "pk",
            "role",
            "content",
            "created_at",
            "conversation__id",
            "conversation__title",
            "conversation__archived_at",
        )
        .order_by("-pk")[start : start + PAGE_SIZE + 1]
    )
    messages = [
        Hit(
            conversation_id=row.conversation_id,
            title=row.conversation.title,
            archived=row.conversation.archived_at is not None,
            snippet=snippet(row.content, query),
            created_at=row.created_at,
            message_id=row.pk,
            role=row.role,
        )
        for row in rows[:PAGE_SIZE]
    ]
    titles = []
    if page == 1:
        titles = [
            Hit(
                conversation_id=row.pk,
                title=row.title,
                archived=row.archived_at is not None,
                snippet=snippet(row.title, query),
                created_at=row.last_activity_at,
            )
            for row in Conversation.objects.filter(owner_id=user.pk, title__icontains=query)
            .only("pk", "title", "archived_at", "last_activity_at")
            .order_by("-last_activity_at", "-pk")[:TITLE_HITS]
        ]
    return Results(query, titles, messages, page, has_more=len(rows) > PAGE_SIZE)
