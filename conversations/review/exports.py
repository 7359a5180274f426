"""Exports of conversations for staff: JSON (everything, the request and response of every
call), Markdown (to read) and CSV (one row per message); each is recorded in the audit
trail."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Prefetch, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.chat import reading as policy
from conversations.chat.models import Completion, Conversation, Message
from conversations.chat.tree import Tree
from conversations.shared.spreadsheets import UTF8_BOM, spreadsheet_safe

from .models import AuditEvent
from .selectors import TRANSCRIPT_ORDER, conversation_title
from .services import audit_record

# One row per message; stable English keys whatever the reviewer's language.
CSV_COLUMNS = (
    "conversation_id",
    "title",
    "owner",
    "message_id",
    "parent_id",
    "position",
    "role",
    "choice_index",
    "selected",
    "status",
    "created_at",
    "content",
)


def _for_export(conversations: QuerySet[Conversation]) -> list[Conversation]:
    """The conversations staff may read (policy.py: the admin refuses a selection with
    others in it first), with owner, messages and completions in four queries."""
    return list(
        policy.readable(conversations)
        .select_related("owner", "flagged_by")
        .prefetch_related(
            Prefetch("messages", queryset=Message.objects.order_by(*TRANSCRIPT_ORDER)),
            Prefetch("completions", queryset=Completion.objects.order_by("queued_at", "id")),
        )
        .order_by("pk")
    )


def _message_data(message: Message) -> dict[str, Any]:
    return {
        "id": message.pk,
        # The message it follows: versions of a turn share one (chat/tree.py).
        "parent_id": message.parent_id,
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
        "purpose": completion.purpose,  # "reply", or "title" for the call that named it
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
        # Numbered from 1, as the chat shows them (the JSON and CSV keep the API's index).
        details.append(_("Choice %(number)s") % {"number": message.choice_index + 1})
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
        # Today's setting: each reply's completion keeps the prompt it was sent with.
        lines += [f"### {_('System prompt set now')}", "", *_quoted(conversation.system_prompt), ""]
    failed: dict[int | None, list[Completion]] = defaultdict(list)
    for completion in completions.values():
        if completion.status == Completion.Status.FAILED:
            failed[completion.request_message_id].append(completion)
    tree = Tree(sorted(conversation.messages.all(), key=lambda message: message.pk))
    path = {step.version[0].pk for step in tree.steps()}
    # Depth first, as staff review shows it: each version followed by what came after it.
    for version, _depth, versions in tree.walk():
        if versions.several or version[0].pk not in path:
            where = (
                _("on the owner's path") if version[0].pk in path else _("not on the owner's path")
            )
            number = _("Version %(number)s of %(total)s") % {
                "number": versions.number,
                "total": versions.count,
            }
            lines += [f"*{number}, {where}*" if versions.several else f"*{where}*", ""]
        for message in version:
            lines += _markdown_message(message, completions, failed)
    return lines


def _markdown_message(message: Message, completions, failed) -> list[str]:
    if message.role == Message.Role.ASSISTANT:
        return _markdown_reply(message, completions)
    time = message.created_at.isoformat(timespec="seconds")
    role = message.get_role_display().capitalize()
    lines = [f"### {role} ({time})", "", *_quoted(message.content), ""]
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
        "message_id": message.pk,
        "parent_id": "" if message.parent_id is None else message.parent_id,
        "position": message.position,
        "role": message.role,
        "choice_index": "" if message.choice_index is None else message.choice_index,
        "selected": "true" if message.is_selected else "false",
        "status": message.status,
        "created_at": message.created_at.isoformat(),
        "content": message.content,
    }
    return [spreadsheet_safe(str(cells[key])) for key in CSV_COLUMNS]


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
