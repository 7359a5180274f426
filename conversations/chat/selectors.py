"""Reads for the chat pages: ownership lookups (404 for anyone else), the sidebar, transcripts.

Each function runs a fixed number of queries whatever the number of conversations or
messages, so the chat page and the polling partial stay constant-time in SQL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, F, OuterRef
from django.http import Http404

from .models import Completion, Conversation, Message
from .tree import ONE, Tree, Versions

SIDEBAR_PAGE_SIZE = 50
# Past this a page number is nonsense (the offset would not fit the database's integers).
MAX_PAGE = 100_000


def get_conversation_for_user(
    user: AbstractBaseUser, pk: int, *, for_update: bool = False
) -> Conversation:
    """The user's own conversation, or 404 (also for other users' conversations). With
    `for_update`, locked until the transaction ends (NO KEY: see services/rows.py)."""
    rows = (
        Conversation.objects.select_for_update(no_key=True) if for_update else Conversation.objects
    )
    try:
        return rows.get(pk=pk, owner_id=user.pk)
    except Conversation.DoesNotExist:
        raise Http404("No such conversation") from None


def title_call_pending(conversation: Conversation, *, since) -> bool:
    """Whether the model's title is still to come: titles made by the site, no title call
    ended yet, and the first reply ended after `since` (a lost call is not waited for)."""
    if not conversation.title_is_auto:
        return False
    calls = conversation.completions.filter(purpose=Completion.Purpose.TITLE)
    if calls.exists():
        return False
    return conversation.completions.filter(
        purpose=Completion.Purpose.REPLY,
        status=Completion.Status.SUCCEEDED,
        finished_at__gte=since,
    ).exists()


def get_completion_for_user(user: AbstractBaseUser, conversation_pk: int, pk: int) -> Completion:
    """A reply's completion in the user's own conversation (conversation and request
    message joined); a title call is not one the page acts on (404)."""
    try:
        return Completion.objects.select_related("conversation", "request_message").get(
            pk=pk,
            conversation_id=conversation_pk,
            conversation__owner_id=user.pk,
            purpose=Completion.Purpose.REPLY,
        )
    except Completion.DoesNotExist:
        raise Http404("No such completion") from None


def get_message_for_user(user: AbstractBaseUser, conversation_pk: int, pk: int) -> Message:
    """A message of the user's own conversation (its conversation joined)."""
    try:
        return Message.objects.select_related("conversation").get(
            pk=pk, conversation_id=conversation_pk, conversation__owner_id=user.pk
        )
    except Message.DoesNotExist:
        raise Http404("No such message") from None


def latest_empty_conversation(user: AbstractBaseUser) -> Conversation | None:
    """The user's newest conversation if nothing was ever sent in it ("New chat" reuses it)."""
    newest = (
        Conversation.objects.filter(owner_id=user.pk)
        .annotate(has_messages=Exists(Message.objects.filter(conversation_id=OuterRef("pk"))))
        .order_by("-last_activity_at", "-pk")
        .first()
    )
    return newest if newest is not None and not newest.has_messages else None


@dataclass
class SidebarPage:
    conversations: list[Conversation]
    page: int
    has_more: bool

    @property
    def next_page(self) -> int:
        return self.page + 1


def page_number(value: str | None) -> int:
    """A page number from the query string: 1 when missing or not a number; 404 past
    MAX_PAGE."""
    try:
        page = max(1, int(value or "1"))
    except ValueError:
        return 1
    if page > MAX_PAGE:
        raise Http404("No such page")
    return page


def sidebar_conversations(user: AbstractBaseUser, page: int = 1) -> SidebarPage:
    """One page of the user's conversations that are not archived: the pinned ones first
    (newest pin first), then newest activity first (one query); 404 for a page past the
    last one."""
    page = max(1, page)
    start = (page - 1) * SIDEBAR_PAGE_SIZE
    # One row more than a page tells whether there is a next page without a COUNT.
    rows = list(
        Conversation.objects.filter(owner_id=user.pk, archived_at__isnull=True)
        .only("pk", "title", "last_activity_at", "pinned_at", "temporary")
        .order_by(F("pinned_at").desc(nulls_last=True), "-last_activity_at", "-pk")[
            start : start + SIDEBAR_PAGE_SIZE + 1
        ]
    )
    if not rows and page > 1:
        raise Http404("No such page")
    return SidebarPage(
        conversations=rows[:SIDEBAR_PAGE_SIZE],
        page=page,
        has_more=len(rows) > SIDEBAR_PAGE_SIZE,
    )


def archived_conversations(user: AbstractBaseUser, page: int = 1) -> SidebarPage:
    """One page of the user's archived conversations, the most recently archived first."""
    start = (max(1, page) - 1) * SIDEBAR_PAGE_SIZE
    rows = list(
        Conversation.objects.filter(owner_id=user.pk, archived_at__isnull=False)
        .only("pk", "title", "last_activity_at", "archived_at")
        .order_by("-archived_at", "-pk")[start : start + SIDEBAR_PAGE_SIZE + 1]
    )
    if not rows and page > 1:
        raise Http404("No such page")
    return SidebarPage(
        conversations=rows[:SIDEBAR_PAGE_SIZE], page=page, has_more=len(rows) > SIDEBAR_PAGE_SIZE
    )


@dataclass
class Reply:
    """An assistant reply: the choices one completion returned (one message or more), and
    that completion where the reader needs it (staff review's transcript)."""

    position: int
    choices: list[Message] = field(default_factory=list)
    completion: Completion | None = None
    # Which version of the answer to its message this reply is (regenerations).
    versions: Versions = ONE
    kind = "reply"

    @property
    def system_prompt_sent(self) -> str:
        """The system prompt the call was sent with ('' for none): what the model was
        told, whatever the conversation's settings say now."""
        messages = (self.completion.request_body or {}).get("messages") or []
        if messages and messages[0].get("role") == "system":
            return messages[0].get("content") or ""
        return ""

    @property
    def parameters(self) -> str:
        """The request as sent, without the messages (those are the transcript)."""
        body = {k: v for k, v in (self.completion.request_body or {}).items() if k != "messages"}
        return json.dumps(body, indent=2, ensure_ascii=False, sort_keys=True)

    @property
    def finish_reasons(self) -> str:
        return ", ".join(
            f"{c.get('index')}: {c.get('finish_reason')}" for c in self.completion.choices or []
        )

    @property
    def first(self) -> Message | None:
        return self.choices[0] if self.choices else None

    @property
    def created_at(self):
        return self.first.created_at if self.choices else None

    @property
    def usage(self) -> dict[str, int] | None:
        """The call's tokens (prompt, completion, total) when it reported or estimated
        them: from the completion, or from the chat page's messages query."""
        if self.completion is not None:
            prompt, reply = self.completion.prompt_tokens, self.completion.completion_tokens
        elif self.choices:
            prompt = getattr(self.first, "usage_prompt", None)
            reply = getattr(self.first, "usage_completion", None)
        else:
            return None
        if prompt is None and reply is None:
            return None
        prompt, reply = prompt or 0, reply or 0
        return {"prompt": prompt, "completion": reply, "total": prompt + reply}

    @property
    def dom_id(self) -> str:
        completion_id = self.choices[0].completion_id if self.choices else None
        return f"reply-{completion_id}" if completion_id else f"reply-p{self.position}"

    @property
    def selected(self) -> Message | None:
        return next((m for m in self.choices if m.is_selected), None)

    @property
    def has_choices(self) -> bool:
        return len(self.choices) > 1


@dataclass
class Transcript:
    """What the chat page shows: the messages in order, grouped into turns, and the state
    of the newest completion (pending, or failed with its error) when it has no reply."""

    items: list[Message | Reply]
    pending: Completion | None = None
    # Text of a reply being streamed for the pending completion, shown as plain text.
    pending_choices: list[Message] = field(default_factory=list)
    failed: Completion | None = None


def transcript(conversation: Conversation) -> Transcript:
    """The path the person is on, as the chat page shows it (two queries, whatever the
    number of messages and branches): each turn with its version among its siblings'."""
    items: list[Message | Reply] = []
    # Each reply's tokens come along in the same query (a join on its completion).
    messages = conversation.messages.annotate(
        usage_prompt=F("completion__prompt_tokens"),
        usage_completion=F("completion__completion_tokens"),
    ).order_by("pk")
    for step in Tree(messages).steps():
        message = step.chosen
        if message.role == Message.Role.ASSISTANT:
            items.append(
                Reply(position=message.position, choices=step.version, versions=step.versions)
            )
        elif message.role == Message.Role.USER:
            message.versions = step.versions
            items.append(message)
    result = Transcript(items=items)
    latest = (
        conversation.completions.filter(purpose=Completion.Purpose.REPLY).order_by("-pk").first()
    )
    if latest is None or not items:
        return result
    tail = items[-1]
    # Only the newest completion, answering the last user message, is shown as pending or
    # failed: older failures were followed by other messages, and retrying them would
    # answer out of order.
    if isinstance(tail, Reply) and tail.choices[0].completion_id == latest.pk:
        if latest.is_active:
            items.pop()
            result.pending, result.pending_choices = latest, tail.choices
        elif latest.status == Completion.Status.FAILED:
            result.failed = latest
    elif isinstance(tail, Message) and latest.request_message_id == tail.pk:
        if latest.is_active:
            result.pending = latest
        elif latest.status == Completion.Status.FAILED:
            result.failed = latest
    return result


def completion_reply(completion: Completion) -> Reply:
    """The messages a finished completion made (one query)."""
    return reply_of(completion, list(completion.messages.order_by("choice_index", "pk")))


def reply_of(completion: Completion, choices: list[Message]) -> Reply:
    """The reply these messages of `completion` make (no query): the newest version of
    the answer to its message (no other can be made while it is written)."""
    return Reply(
        position=choices[0].position if choices else 0,
        choices=choices,
        completion=completion,
        versions=Versions(completion.version, completion.version),
    )
