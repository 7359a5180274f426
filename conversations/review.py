"""Staff review of conversations: list totals and search, the transcript, flags and notes,
exports (JSON, Markdown and CSV) and the audit trail of who read or exported what.

The admin (`admin.py`) only wires these into pages; everything it shows or writes is here.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import (
    CharField,
    Count,
    DecimalField,
    Exists,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.text import smart_split, unescape_string_literal
from django.utils.translation import gettext as _

from .models import AuditEvent, Completion, Conversation, Message
from .rendering import render_plain
from .usage_views import UTF8_BOM, spreadsheet_safe

REVIEWER_GROUP = "Reviewer"
REVIEW_PERMISSION = "conversations.review_conversation"
TRANSCRIPT_ORDER = ("position", "choice_index", "id")
# One row per message; stable English keys whatever the reviewer's language.
CSV_COLUMNS = (
    "conversation_id",
    "title",
    "owner",
    "position",
    "role",
    "choice_index",
    "selected",
    "status",
    "created_at",
    "content",
)


# --- Reads: the conversation list ---


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


def conversations_search(queryset: QuerySet[Conversation], text: str) -> QuerySet[Conversation]:
    """Conversations whose title, owner's username or any message contains every term.

    `Exists` keeps one row per conversation however many messages match."""
    for term in search_terms(text):
        in_messages = Exists(
            Message.objects.filter(conversation=OuterRef("pk"), content__icontains=term)
        )
        queryset = queryset.filter(
            Q(title__icontains=term) | Q(owner__username__icontains=term) | in_messages
        )
    return queryset


def audit_events_search(queryset: QuerySet[AuditEvent], text: str) -> QuerySet[AuditEvent]:
    """Events by actor username, or (for a number) those that touched that conversation."""
    for term in search_terms(text):
        match = Q(actor__username__icontains=term)
        if term.isdigit():
            number = int(term)
            # conversation_ids is stored as JSON text "[1, 23]": match the whole number.
            for pattern in (f"[{number}]", f"[{number},", f" {number},", f" {number}]"):
                match |= Q(conversation_ids__icontains=pattern)
        queryset = queryset.filter(match)
    return queryset


# --- Reads: the transcript ---


@dataclass
class Reply:
    """One upstream call answering a message, with the choices it returned."""

    completion: Completion
    choices: list[Message] = field(default_factory=list)

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


@dataclass
class Entry:
    """A message someone wrote (user or system) and the replies made to it."""

    message: Message | None
    replies: list[Reply] = field(default_factory=list)


def message_html(message: Message) -> SafeString:
    """A message as the chat page shows it: model output as sanitized Markdown."""
    if message.role == Message.Role.ASSISTANT:
        return message.rendered()
    return render_plain(message.content)


def transcript(conversation: Conversation) -> list[Entry]:
    """The whole conversation in order, each reply with the completion that made it.

    Two queries however long the conversation; failed calls (no message) appear
    after the message they answered."""
    messages = list(conversation.messages.order_by(*TRANSCRIPT_ORDER))
    completions = list(conversation.completions.order_by("queued_at", "id"))
    for message in messages:
        message.html = message_html(message)
    choices: dict[int, list[Message]] = defaultdict(list)
    for message in messages:
        if message.completion_id is not None:
            choices[message.completion_id].append(message)
    replies: dict[int | None, list[Reply]] = defaultdict(list)
    for completion in completions:
        replies[completion.request_message_id].append(
            Reply(completion=completion, choices=choices.get(completion.pk, []))
        )
    entries = [
        Entry(message=message, replies=replies.pop(message.pk, []))
        for message in messages
        if message.completion_id is None
    ]
    # Calls whose message is gone still belong in the record.
    leftovers = [reply for group in replies.values() for reply in group]
    if leftovers:
        entries.append(Entry(message=None, replies=leftovers))
    return entries


# --- Writes: flags, notes and the audit trail ---


def conversation_review(
    *, conversation: Conversation, reviewer, flagged: bool, note: str
) -> Conversation:
    """Set the flag and the note; flagging records who flagged and when."""
    with transaction.atomic():
        was_flagged = (
            Conversation.objects.select_for_update(no_key=True)
            .filter(pk=conversation.pk)
            .values_list("flagged", flat=True)
            .get()
        )
        conversation.flagged = flagged
        conversation.review_note = note
        if flagged and not was_flagged:
            conversation.flagged_by = reviewer
            conversation.flagged_at = timezone.now()
        elif not flagged:
            conversation.flagged_by = None
            conversation.flagged_at = None
        conversation.save(update_fields=["flagged", "review_note", "flagged_by", "flagged_at"])
    return conversation


def conversations_flag(*, conversations: QuerySet[Conversation], reviewer, flagged: bool) -> int:
    """Flag (or unflag) many at once; ones already in that state keep their record."""
    if flagged:
        return conversations.filter(flagged=False).update(
            flagged=True, flagged_by=reviewer, flagged_at=timezone.now()
        )
    return conversations.filter(flagged=True).update(
        flagged=False, flagged_by=None, flagged_at=None
    )


def audit_record(*, actor, action: str, conversation_ids: Iterable[int]) -> AuditEvent:
    """Note that `actor` read or exported these conversations."""
    return AuditEvent.objects.create(
        actor=actor, action=action, conversation_ids=sorted({int(pk) for pk in conversation_ids})
    )


# --- Exports ---


def _for_export(conversations: QuerySet[Conversation]) -> list[Conversation]:
    """The conversations with owner, messages and completions in four queries."""
    return list(
        conversations.select_related("owner", "flagged_by")
        .prefetch_related(
            Prefetch("messages", queryset=Message.objects.order_by(*TRANSCRIPT_ORDER)),
            Prefetch("completions", queryset=Completion.objects.order_by("queued_at", "id")),
        )
        .order_by("pk")
    )


def _message_data(message: Message) -> dict[str, Any]:
    return {
        "id": message.pk,
        "position": message.position,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "completion_id": message.completion_id,
        "choice_index": message.choice_index,
        "selected": message.is_selected,
        "finish_reason": message.finish_reason,
        "created_at": message.created_at,
    }


def _completion_data(completion: Completion) -> dict[str, Any]:
    return {
        "id": completion.pk,
        "request_message_id": completion.request_message_id,
        "status": completion.status,
        "model": completion.model,
        "request_body": completion.request_body,
        "response_id": completion.response_id,
        "response_model": completion.response_model,
        "response_created": completion.response_created,
        "choices": completion.choices,
        "usage": {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.total_tokens,
            "estimated": completion.usage_estimated,
        },
        "cost": completion.cost,
        "currency": completion.currency,
        "http_status": completion.http_status,
        "error_type": completion.error_type,
        "error_message": completion.error_message,
        "attempts": completion.attempts,
        "latency_ms": completion.latency_ms,
        "queued_at": completion.queued_at,
        "started_at": completion.started_at,
        "finished_at": completion.finished_at,
    }


def _conversation_data(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.pk,
        "owner": conversation.owner.get_username(),
        "title": conversation.title,
        "system_prompt": conversation.system_prompt,
        "parameters": conversation.generation_params(),
        "created_at": conversation.created_at,
        "last_activity_at": conversation.last_activity_at,
        "flagged": conversation.flagged,
        "flagged_by": conversation.flagged_by.get_username() if conversation.flagged_by else None,
        "flagged_at": conversation.flagged_at,
        "review_note": conversation.review_note,
        "messages": [_message_data(m) for m in conversation.messages.all()],
        "completions": [_completion_data(c) for c in conversation.completions.all()],
    }


class _ExportEncoder(DjangoJSONEncoder):
    def default(self, o: Any) -> Any:
        # Money stays exact: a string, never a float.
        if isinstance(o, Decimal):
            return str(o)
        return super().default(o)


def export_json(*, conversations: QuerySet[Conversation], actor) -> str:
    """The conversations as one JSON document (parameters, messages in order, completions
    with usage); the export is recorded in the audit trail."""
    rows = _for_export(conversations)
    document = {
        "exported_at": timezone.now(),
        "exported_by": actor.get_username(),
        "conversations": [_conversation_data(c) for c in rows],
    }
    text = json.dumps(document, cls=_ExportEncoder, ensure_ascii=False, indent=2)
    audit_record(
        actor=actor, action=AuditEvent.Action.EXPORT_JSON, conversation_ids=[c.pk for c in rows]
    )
    return text


def _quoted(text: str) -> list[str]:
    # Quoted, a heading inside a message cannot pass for a transcript heading.
    return [f"> {line}".rstrip() for line in (text or "").splitlines()] or [">"]


def _markdown_reply(message: Message, completions: dict[int, Completion]) -> list[str]:
    completion = completions.get(message.completion_id)
    details = []
    if completion is not None and len(completion.choices or []) > 1:
        details.append(_("choice %(index)s") % {"index": message.choice_index})
        if message.is_selected:
            details.append(_("selected"))
    if message.finish_reason:
        details.append(_("finish reason: %(reason)s") % {"reason": message.finish_reason})
    if completion is not None:
        details.append(completion.response_model or completion.model)
        if completion.total_tokens is not None:
            details.append(_("%(tokens)s tokens") % {"tokens": completion.total_tokens})
    heading = _("Assistant")
    return [
        f"### {heading} ({', '.join(str(d) for d in details)})",
        "",
        *_quoted(message.content),
        "",
    ]


def _markdown_conversation(conversation: Conversation) -> list[str]:
    title = conversation_title(conversation)
    completions = {c.pk: c for c in conversation.completions.all()}
    lines = [
        f"# {title} (#{conversation.pk})",
        "",
        f"- {_('Owner')}: {conversation.owner.get_username()}",
        f"- {_('Model')}: {conversation.model}",
        f"- {_('Created')}: {conversation.created_at.isoformat()}",
        f"- {_('Last activity')}: {conversation.last_activity_at.isoformat()}",
    ]
    if conversation.flagged:
        lines.append(f"- {_('Flagged')}: {conversation.review_note or _('yes')}")
    lines.append("")
    if conversation.system_prompt:
        lines += [f"### {_('System')}", "", *_quoted(conversation.system_prompt), ""]
    failed: dict[int | None, list[Completion]] = defaultdict(list)
    for completion in completions.values():
        if completion.status == Completion.Status.FAILED:
            failed[completion.request_message_id].append(completion)
    for message in conversation.messages.all():
        if message.role == Message.Role.ASSISTANT:
            lines += _markdown_reply(message, completions)
            continue
        time = message.created_at.isoformat(timespec="seconds")
        role = message.get_role_display().capitalize()
        lines += [f"### {role} ({time})", "", *_quoted(message.content), ""]
        for completion in failed.get(message.pk, []):
            error = completion.error_message or completion.error_type
            lines += [f"*{_('Reply failed')}: {error}*", ""]
    return lines


def export_markdown(*, conversations: QuerySet[Conversation], actor) -> str:
    """The conversations as Markdown transcripts, one top-level heading each; the export
    is recorded in the audit trail."""
    rows = _for_export(conversations)
    lines: list[str] = []
    for conversation in rows:
        if lines:
            lines += ["---", ""]
        lines += _markdown_conversation(conversation)
    audit_record(
        actor=actor,
        action=AuditEvent.Action.EXPORT_MARKDOWN,
        conversation_ids=[c.pk for c in rows],
    )
    return "\n".join(lines).rstrip() + "\n"


def _csv_row(conversation: Conversation, message: Message) -> list[str]:
    cells = {
        "conversation_id": conversation.pk,
        "title": conversation.title,
        "owner": conversation.owner.get_username(),
        "position": message.position,
        "role": message.role,
        "choice_index": "" if message.choice_index is None else message.choice_index,
        "selected": "true" if message.is_selected else "false",
        "status": message.status,
        "created_at": message.created_at.isoformat(),
        "content": message.content,
    }
    return [spreadsheet_safe(key, str(cells[key])) for key in CSV_COLUMNS]


def export_csv(*, conversations: QuerySet[Conversation], actor) -> str:
    """Every message of the conversations as a CSV row, in transcript order, starting with
    a UTF-8 BOM for spreadsheet programs; the export is recorded in the audit trail."""
    rows = _for_export(conversations)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for conversation in rows:
        writer.writerows(_csv_row(conversation, m) for m in conversation.messages.all())
    audit_record(
        actor=actor, action=AuditEvent.Action.EXPORT_CSV, conversation_ids=[c.pk for c in rows]
    )
    return UTF8_BOM + buffer.getvalue()
