"""A person's own export of one conversation: JSON (every branch, the parameters and each
call's usage, in the format `readers.py` imports back) and Markdown (the path they are
on, to read). Never a request body, a key or anything staff alone see."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from conversations.chat.models import Completion, Conversation, Message
from conversations.chat.tree import Tree

from .document import FORMAT, VERSION

FILENAME_SLUG_LENGTH = 50


def _time(moment: datetime | None) -> str | None:
    # Full precision (DjangoJSONEncoder cuts to milliseconds): an import gives the same time.
    return moment.isoformat() if moment is not None else None


def _message_data(message: Message) -> dict[str, Any]:
    data = {
        "id": message.pk,
        "parent_id": message.parent_id,
        "position": message.position,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "choice_index": message.choice_index,
        "selected": message.is_selected,
        "finish_reason": message.finish_reason,
        "created_at": _time(message.created_at),
        "completion_id": message.completion_id,
    }
    if message.role == Message.Role.ASSISTANT and message.reasoning:
        data["reasoning"] = message.reasoning  # what the model thought before answering
    return data


def _completion_data(completion: Completion) -> dict[str, Any]:
    return {
        "id": completion.pk,
        "request_message_id": completion.request_message_id,
        "purpose": completion.purpose,
        "status": completion.status,
        "model": completion.model,
        "response_model": completion.response_model,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.total_tokens,
        "usage_estimated": completion.usage_estimated,
        # Money stays exact: a string, never a float.
        "cost": str(completion.cost) if completion.cost is not None else None,
        "currency": completion.currency,
        "created_at": _time(completion.queued_at),
        "finished_at": _time(completion.finished_at),
    }


def conversation_data(conversation: Conversation) -> dict[str, Any]:
    """The conversation as our export's JSON object. Its messages and completions must be
    prefetched in id order (selectors.with_export_rows)."""
    params = conversation.generation_params()
    params.pop("model")
    return {
        "format": FORMAT,
        "version": VERSION,
        "id": conversation.pk,
        "title": conversation.title,
        "title_is_auto": conversation.title_is_auto,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "parameters": params,
        "created_at": _time(conversation.created_at),
        "last_activity_at": _time(conversation.last_activity_at),
        "pinned_at": _time(conversation.pinned_at),
        "archived_at": _time(conversation.archived_at),
        "origin": conversation.origin,
        "messages": [_message_data(m) for m in conversation.messages.all()],
        "completions": [_completion_data(c) for c in conversation.completions.all()],
    }


def conversation_json(conversation: Conversation) -> str:
    return json.dumps(conversation_data(conversation), ensure_ascii=False, indent=2) + "\n"


def _role_label(message: Message) -> str:
    if message.role == Message.Role.USER:
        return _("You")
    if message.role == Message.Role.ASSISTANT:
        return _("Assistant")
    return _("System")


def conversation_markdown(conversation: Conversation) -> str:
    """The path the person is on, turn by turn (other versions left out)."""
    lines = [
        f"# {conversation}",
        "",
        f"- {_('Model')}: {conversation.model}",
        f"- {_('Created')}: {timezone.localtime(conversation.created_at):%Y-%m-%d %H:%M}",
        "",
    ]
    if conversation.system_prompt:
        lines += [f"## {_('System prompt')}", "", conversation.system_prompt, ""]
    tree = Tree(conversation.messages.all())
    for step in tree.steps():
        message = step.chosen
        details = [f"{timezone.localtime(message.created_at):%Y-%m-%d %H:%M}"]
        if step.versions.several:
            details.append(
                _("version %(number)s of %(count)s")
                % {"number": step.versions.number, "count": step.versions.count}
            )
        if len(step.version) > 1:
            details.append(
                _("choice %(number)s of %(count)s")
                % {"number": step.version.index(message) + 1, "count": len(step.version)}
            )
        lines += [f"## {_role_label(message)} ({', '.join(details)})", "", message.content, ""]
    return "\n".join(lines).rstrip() + "\n"


def file_stem(conversation: Conversation) -> str:
    """`<id>-<slug>`: a name safe on every file system, unique among one person's files."""
    slug = slugify(conversation.title)[:FILENAME_SLUG_LENGTH].strip("-") or "chat"
    return f"{conversation.pk}-{slug}"
