"""Reads for staff review: the conversation list's totals and search, the audit trail's
search, and the whole transcript of a conversation. The admin (`admin.py`) only wires
these, the writes (`services.py`) and the exports (`exports.py`) into pages."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import (
    CharField,
    Count,
    DecimalField,
    Exists,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce
from django.utils.safestring import SafeString
from django.utils.text import smart_split, unescape_string_literal
from django.utils.translation import gettext as _

from conversations.chat.models import Completion, Conversation, Message
from conversations.chat.selectors import Reply
from conversations.chat.tree import ONE, Tree, Versions
from conversations.shared.rendering import render_plain

from .models import AuditEvent

REVIEWER_GROUP = "Reviewer"
REVIEW_PERMISSION = "conversations.review_conversation"
TRANSCRIPT_ORDER = ("position", "choice_index", "id")

# --- The conversation list ---


def conversation_title(conversation: Conversation) -> str:
    return conversation.title or _("New chat")


def _per_conversation(queryset: QuerySet, aggregate, output_field) -> Subquery:
    # A correlated subquery per column: joining messages and completions together
    # would multiply the rows and the sums.
    return Subquery(
        queryset.filter(conversation=OuterRef("pk"))
        .order_by()
        .values("conversation")
        .annotate(value=aggregate)
        .values("value"),
        output_field=output_field,
    )


def conversations_with_totals(queryset: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Conversations with message count, tokens, cost and its currency, in one query."""
    priced = Completion.objects.filter(cost__isnull=False)
    return queryset.annotate(
        message_count=Coalesce(
            _per_conversation(Message.objects.all(), Count("pk"), IntegerField()), 0
        ),
        total_tokens=Coalesce(
            _per_conversation(Completion.objects.all(), Sum("total_tokens"), IntegerField()), 0
        ),
        total_cost=_per_conversation(
            Completion.objects.all(), Sum("cost"), DecimalField(max_digits=18, decimal_places=8)
        ),
        cost_currency_low=_per_conversation(priced, Min("currency"), CharField()),
        cost_currency_high=_per_conversation(priced, Max("currency"), CharField()),
        has_failed=Exists(
            Completion.objects.filter(conversation=OuterRef("pk"), status=Completion.Status.FAILED)
        ),
    )


def cost_label(conversation: Conversation) -> str:
    """'0.01234567 USD', '' without prices, or the sum marked mixed across currencies."""
    cost = getattr(conversation, "total_cost", None)
    if cost is None:
        return ""
    low = conversation.cost_currency_low or ""
    high = conversation.cost_currency_high or ""
    currency = low if low == high else _("mixed currencies")
    return f"{cost.normalize():f} {currency}".strip()


def with_failed_completions(queryset: QuerySet[Conversation], failed: bool) -> QuerySet:
    exists = Exists(
        Completion.objects.filter(conversation=OuterRef("pk"), status=Completion.Status.FAILED)
    )
    return queryset.filter(exists if failed else ~exists)


def search_terms(text: str) -> list[str]:
    """Words of a search, with "quoted phrases" kept whole (as the admin splits them)."""
    terms = []
    for bit in smart_split(text):
        if bit[:1] in ('"', "'") and bit[-1:] == bit[:1] and len(bit) > 1:
            bit = unescape_string_literal(bit)
        if bit:
            terms.append(bit)
    return terms


EVERY_CONVERSATION = Q()


def conversations_search(
    queryset: QuerySet[Conversation], text: str, *, readable: Q | None = EVERY_CONVERSATION
) -> QuerySet[Conversation]:
    """Conversations whose title, owner's username or any message contains every term.

    Titles and messages are searched only in the `readable` conversations (None: in none,
    usernames only), so a search cannot tell what an unreadable one says. `Exists` keeps
    one row per conversation however many messages match."""
    for term in search_terms(text):
        match = Q(owner__username__icontains=term)
        if readable is not None:
            in_messages = Exists(
                Message.objects.filter(conversation=OuterRef("pk"), content__icontains=term)
            )
            match |= readable & (Q(title__icontains=term) | in_messages)
        queryset = queryset.filter(match)
    return queryset


def audit_events_search(queryset: QuerySet[AuditEvent], text: str) -> QuerySet[AuditEvent]:
    """Events by actor username, or (for a number) those that touched that conversation
    or API call."""
    for term in search_terms(text):
        match = Q(actor__username__icontains=term)
        if term.isdigit():
            number = int(term)
            # conversation_ids is stored as JSON text "[1, 23]": match the whole number.
            for pattern in (f"[{number}]", f"[{number},", f" {number},", f" {number}]"):
                match |= Q(conversation_ids__icontains=pattern)
                match |= Q(completion_ids__icontains=pattern)
        queryset = queryset.filter(match)
    return queryset


# --- The transcript ---


@dataclass
class Entry:
    """A message someone wrote (user or system) and the calls made to it that left no
    reply, or one version of a reply; where it sits in the tree (`level`: how many branches
    left at a fork it is in, for indenting), and whether the owner's path goes through it."""

    message: Message | None
    replies: list[Reply] = field(default_factory=list)
    level: int = 0
    versions: Versions = ONE
    on_path: bool = True
    # The system prompt this reply was sent with, where it differs from the one before.
    system_prompt: str | None = None


def message_html(message: Message) -> SafeString:
    """A message as the chat page shows it: model output as sanitized Markdown."""
    if message.role == Message.Role.ASSISTANT:
        return message.rendered()
    return render_plain(message.content)


def transcript(conversation: Conversation) -> list[Entry]:
    """The whole conversation as a tree, depth first: every version of every turn, each
    followed by what came after it, each reply with the completion that made it and the
    system prompt it was sent with.

    Two queries however large the tree; calls that made no message (failed, title calls)
    appear after the message they answered."""
    messages = list(conversation.messages.order_by("pk"))
    completions = list(conversation.completions.order_by("queued_at", "id"))
    for message in messages:
        message.html = message_html(message)
    made = {message.completion_id for message in messages if message.completion_id}
    by_id = {completion.pk: completion for completion in completions}
    rowless: dict[int | None, list[Reply]] = defaultdict(list)
    for completion in completions:
        if completion.pk not in made:
            rowless[completion.request_message_id].append(
                Reply(position=0, choices=[], completion=completion)
            )
    tree = Tree(messages)
    path = {step.version[0].pk for step in tree.steps()}
    levels: dict[int, int] = {}
    entries = []
    prompt = None
    for version, _depth, versions in tree.walk():
        first = version[0]
        # A branch left at a fork is indented a step; the one gone on with keeps its level
        # (the owner's path stays at the margin).
        gone_on = any(message.is_selected for message in version)
        level = levels.get(first.parent_id, 0) + (0 if gone_on else 1)
        for message in version:
            levels[message.pk] = level
        entry = Entry(message=None, level=level, versions=versions, on_path=first.pk in path)
        if first.role == Message.Role.ASSISTANT and first.completion_id in by_id:
            reply = Reply(
                position=first.position,
                choices=version,
                completion=by_id[first.completion_id],
                versions=versions,
            )
            entry.replies = [reply]
            if reply.system_prompt_sent != prompt and (
                prompt is not None or reply.system_prompt_sent
            ):
                entry.system_prompt = reply.system_prompt_sent
            prompt = reply.system_prompt_sent
        else:
            entry.message = first
            entry.replies = rowless.pop(first.pk, [])
        entries.append(entry)
    # Calls whose message is gone still belong in the record.
    leftovers = [reply for group in rowless.values() for reply in group]
    if leftovers:
        entries.append(Entry(message=None, replies=leftovers))
    return entries
