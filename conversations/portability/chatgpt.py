"""ChatGPT's data export (`conversations.json`) onto our tree.

Each conversation there is a `mapping` of nodes ({id, message, parent, children}) and the
`current_node` the person was on. We keep the user's and the assistant's text messages
and leave out the rest (system and tool messages, hidden ones, calls to tools, empty
ones, non-text parts such as images), their children following the nearest message
kept. The path up from `current_node` is the selected one; where it does not decide, the
newest version is."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.chat.models import Conversation, Message
from conversations.upstream import protocol

from .document import ImportedConversation, ImportedMessage, Problem, arrange, shown

ROLES = {"system", "user", "assistant", "tool"}
KEPT_ROLES = {Message.Role.USER.value, Message.Role.ASSISTANT.value}
DEFAULT_MODEL = "imported"
# Their finish reasons in the API's words.
FINISH_REASONS = {"stop": "stop", "max_tokens": "length"}


def is_chatgpt(item: Any) -> bool:
    return isinstance(item, dict) and "mapping" in item


def _moment(value: Any) -> datetime | None:
    """An epoch time in seconds (a float there), or None when missing or not one."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _dict(value: Any, what: str, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Problem(
            _("the %(what)s of node %(id)s is not an object.") % {"what": what, "id": shown(key)}
        )
    return value


def _text_of(key: str, message: dict) -> tuple[str, str, dict] | None:
    """(role, text, metadata) of a message to keep, or None for one to leave out."""
    author = _dict(message.get("author"), "author", key)
    role = author.get("role")
    if role not in ROLES:
        raise Problem(
            _("node %(id)s has an unknown role %(role)s.") % {"id": shown(key), "role": shown(role)}
        )
    metadata = _dict(message.get("metadata"), "metadata", key)
    if role not in KEPT_ROLES or metadata.get("is_visually_hidden_from_conversation"):
        return None
    if message.get("recipient", "all") not in ("all", None):
        return None  # the model calling a tool (browsing, code, images)
    content = _dict(message.get("content"), "content", key)
    parts = content.get("parts")
    if not isinstance(parts, list):
        return None  # code, browsing results, thoughts: no text parts
    text = protocol.clean_text("\n".join(part for part in parts if isinstance(part, str)))
    if not text.strip():
        return None
    return role, text, metadata


def conversation_of(item: dict) -> ImportedConversation:
    """One conversation of ChatGPT's export as ours."""
    mapping = item.get("mapping")
    if not isinstance(mapping, dict):
        raise Problem(_("its mapping is not an object."))
    started = _moment(item.get("create_time"))
    # Every node first (kept or not): the tree checks, and each node's depth.
    nodes: list[ImportedMessage] = []
    kept: dict[str, tuple[str, str, dict, datetime | None]] = {}
    for key, node in mapping.items():
        if not isinstance(node, dict):
            raise Problem(_("node %(id)s is not an object.") % {"id": shown(key)})
        parent = node.get("parent")
        if parent is not None and not isinstance(parent, str):
            raise Problem(_("the parent of node %(id)s is not a node id.") % {"id": shown(key)})
        message = node.get("message")
        if message is not None and not isinstance(message, dict):
            raise Problem(_("the message of node %(id)s is not an object.") % {"id": shown(key)})
        found = _text_of(key, message) if message else None
        created = _moment(message.get("create_time")) if message else None
        if found is not None:
            kept[key] = (*found, created)
        nodes.append(ImportedMessage(key, parent, "", "", created or timezone.now()))
    now = timezone.now()
    raw = ImportedConversation(origin="", title="", created_at=now, last_activity_at=now, model="")
    raw.messages = nodes
    arrange(raw)  # parents before children from here on
    parents = {node.key: node.parent_key for node in raw.messages}

    # The path the person was on: current_node and its ancestors.
    on_path: set[str] = set()
    node_key = item.get("current_node")
    while isinstance(node_key, str) and node_key in parents and node_key not in on_path:
        on_path.add(node_key)
        node_key = parents[node_key]

    # Each kept node's kept parent: the nearest kept ancestor.
    kept_parent: dict[str, str | None] = {}
    messages: dict[str, ImportedMessage] = {}
    order = {key: index for index, key in enumerate(mapping)}
    for node in raw.messages:
        parent = node.parent_key
        nearest = parent if parent in kept or parent is None else kept_parent.get(parent)
        kept_parent[node.key] = nearest
        if node.key not in kept:
            continue
        role, text, metadata, created = kept[node.key]
        if created is None:  # older exports leave some times out
            created = messages[nearest].created_at if nearest else (started or timezone.now())
        finish = _dict(metadata.get("finish_details"), "finish_details", node.key).get("type")
        messages[node.key] = ImportedMessage(
            key=node.key,
            parent_key=nearest,
            role=role,
            content=text,
            created_at=created,
            finish_reason=FINISH_REASONS.get(finish, "") if isinstance(finish, str) else "",
        )
    _select(list(messages.values()), on_path, order)
    # Versions in the order they were made: the oldest first among siblings.
    ordered = sorted(messages.values(), key=lambda m: (m.created_at, order[m.key]))
    created_at = started or (ordered[0].created_at if ordered else timezone.now())
    last = _moment(item.get("update_time")) or created_at
    title = item.get("title") if isinstance(item.get("title"), str) else ""
    return ImportedConversation(
        origin=Conversation.Origin.CHATGPT,
        title=protocol.short_text(title, 200),
        title_is_auto=not title,
        created_at=created_at,
        last_activity_at=last,
        archived_at=last if item.get("is_archived") is True else None,
        model=_model(item, ordered, mapping),
        messages=ordered,
    )


def _select(messages: list[ImportedMessage], on_path: set[str], order: dict[str, int]) -> None:
    """One selected message among each set of siblings: the one on the person's path,
    else the newest."""
    siblings: dict[str | None, list[ImportedMessage]] = {}
    for message in messages:
        siblings.setdefault(message.parent_key, []).append(message)
    for group in siblings.values():
        chosen = next((m for m in group if m.key in on_path), None)
        if chosen is None:
            chosen = max(group, key=lambda m: (m.created_at, order[m.key]))
        for message in group:
            message.is_selected = message is chosen


def _model(item: dict, messages: list[ImportedMessage], mapping: dict) -> str:
    slug = item.get("default_model_slug")
    if not (isinstance(slug, str) and slug):
        slug = DEFAULT_MODEL
        for message in reversed(messages):
            if message.role == "assistant":
                metadata = mapping[message.key]["message"].get("metadata") or {}
                if isinstance(metadata.get("model_slug"), str) and metadata["model_slug"]:
                    slug = metadata["model_slug"]
                    break
    return protocol.short_text(slug, protocol.MODEL_LENGTH)
