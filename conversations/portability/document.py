"""A conversation as read from an import file, before any row is written: plain data that
each format's reader (ours, ChatGPT's) fills in, and the checks every tree must pass
(parents present, no cycle, within the limits).

Readers raise `Problem` with a message naming what is wrong; `readers.py` says which
conversation it was in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _

# Our export's marker, and the newest version of it this code reads.
FORMAT = "chatsite.conversation"
VERSION = 1


def max_bytes() -> int:
    """The largest file (and, for a ZIP, the most unpacked JSON) an import reads."""
    return getattr(settings, "IMPORT_MAX_BYTES", 20 * 1024 * 1024)


def max_conversations() -> int:
    return getattr(settings, "IMPORT_MAX_CONVERSATIONS", 2_000)


def max_messages() -> int:
    """The most messages one file may hold, all its conversations together."""
    return getattr(settings, "IMPORT_MAX_MESSAGES", 50_000)


def shown(value: Any) -> str:
    """A value from the file as an error message quotes it: short, whatever it is."""
    text = str(value)
    return text if len(text) <= 60 else f"{text[:57]}…"


class Problem(Exception):
    """What is wrong with one conversation of a file (a translated message)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class ImportedMessage:
    key: Any  # its id in the file: what its children's parent names
    parent_key: Any
    role: str
    content: str
    created_at: datetime
    is_selected: bool = True
    status: str = "complete"
    choice_index: int | None = None
    finish_reason: str = ""
    position: int = 0  # set by `arrange`: the depth in the tree


@dataclass
class ImportedConversation:
    origin: str
    title: str
    created_at: datetime
    last_activity_at: datetime
    model: str
    title_is_auto: bool = False
    system_prompt: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    pinned_at: datetime | None = None
    archived_at: datetime | None = None
    # Parents before their children once `arrange` has run.
    messages: list[ImportedMessage] = field(default_factory=list)


def arrange(conversation: ImportedConversation) -> None:
    """Check the messages form a tree (unique ids, every parent in the file, no cycle),
    set each one's position to its depth, and order them parents first."""
    by_key: dict[Any, ImportedMessage] = {}
    for message in conversation.messages:
        if message.key in by_key:
            raise Problem(_("two messages have the id %(id)s.") % {"id": shown(message.key)})
        by_key[message.key] = message
    depths: dict[Any, int] = {}
    for message in conversation.messages:
        # Up to the first message of known depth (or a root), then back down.
        chain: list[Any] = []
        seen: set[Any] = set()
        node = message
        while node.key not in depths:
            if node.key in seen:
                raise Problem(
                    _("the messages around %(id)s form a cycle.") % {"id": shown(node.key)}
                )
            if node.parent_key is None:
                depths[node.key] = 0
                break
            chain.append(node.key)
            seen.add(node.key)
            parent = by_key.get(node.parent_key)
            if parent is None:
                raise Problem(
                    _("message %(id)s follows message %(parent)s, which is not in the file.")
                    % {"id": shown(node.key), "parent": shown(node.parent_key)}
                )
            node = parent
        depth = depths[node.key]
        for key in reversed(chain):
            depth += 1
            depths[key] = depth
    for message in conversation.messages:
        message.position = depths[message.key]
    # Stable: siblings keep the file's order (the order they were made).
    conversation.messages.sort(key=lambda m: m.position)
