"""Rows, files and readers shared by the export and import tests."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from decimal import Decimal
from typing import Any

from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from conversations.chat.models import Completion, Conversation, Message
from tests.factories import make_conversation


def branched_conversation(owner) -> Conversation:
    """Two turns, then a regenerated first reply (not selected) and an edited second
    message (selected) with its own reply: the path is Hi, Hello!, the edit, its reply."""
    conversation = make_conversation(
        owner, ("Hi", "Hello!"), ("Tell me a joke", "Why did the chicken…"), title="Jokes & more"
    )
    start = timezone.now() - timedelta(days=3)
    Conversation.objects.filter(pk=conversation.pk).update(
        system_prompt="Be brief.",
        temperature=0.7,
        top_p=0.9,
        max_tokens=256,
        n=2,
        stop=["END"],
        presence_penalty=0.1,
        frequency_penalty=-0.2,
        created_at=start,
        last_activity_at=start + timedelta(hours=2),
        pinned_at=start + timedelta(hours=1),
        title_is_auto=False,
    )
    first, reply, second, _joke = conversation.messages.order_by("pk")
    for index, message in enumerate(conversation.messages.order_by("pk")):
        # Distinct times with microseconds: the round trip must keep them exactly.
        Message.objects.filter(pk=message.pk).update(
            created_at=start + timedelta(minutes=index, microseconds=123_457 + index)
        )
    again = Completion.objects.create(
        conversation=conversation,
        user=owner,
        request_message=first,
        model="gpt-4o-mini",
        version=2,
        status=Completion.Status.SUCCEEDED,
        prompt_tokens=10,
        completion_tokens=6,
        total_tokens=16,
        cost=Decimal("0.00120000"),
        currency="USD",
    )
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Hey there, **friend** <script>alert(1)</script>",
        parent=first,
        position=1,
        completion=again,
        choice_index=0,
        finish_reason="stop",
        is_selected=False,
        created_at=start + timedelta(minutes=10),
    )
    Message.objects.filter(pk=second.pk).update(is_selected=False)
    edited = Message.objects.create(
        conversation=conversation,
        role="user",
        content="Tell me a riddle",
        parent=reply,
        position=2,
        created_at=start + timedelta(minutes=11),
    )
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="What has keys but no locks?",
        parent=edited,
        position=3,
        choice_index=0,
        finish_reason="length",
        created_at=start + timedelta(minutes=12),
    )
    conversation.refresh_from_db()
    return conversation


def tree_shape(conversation: Conversation) -> list[dict[str, Any]]:
    """The conversation's tree without ids: each message's fields and its children, in
    the order they were made."""
    rows = list(conversation.messages.order_by("pk"))
    children: dict[int | None, list[Message]] = {}
    for row in rows:
        children.setdefault(row.parent_id, []).append(row)

    def shape(parent_id: int | None) -> list[dict[str, Any]]:
        return [
            {
                "role": m.role,
                "content": m.content,
                "position": m.position,
                "selected": m.is_selected,
                "status": m.status,
                "finish_reason": m.finish_reason,
                "created_at": m.created_at,
                "children": shape(m.pk),
            }
            for m in children.get(parent_id, [])
        ]

    return shape(None)


CONVERSATION_FIELDS = (
    "title", "title_is_auto", "model", "system_prompt", "temperature", "top_p", "max_tokens",
    "n", "stop", "presence_penalty", "frequency_penalty", "created_at", "last_activity_at",
    "pinned_at", "archived_at",
)  # fmt: skip


def conversation_fields(conversation: Conversation) -> dict[str, Any]:
    return {name: getattr(conversation, name) for name in CONVERSATION_FIELDS}


def upload(client, data: bytes, name: str = "export.json"):
    """POST a file to the import page."""
    return client.post(reverse("chats_import"), {"file": SimpleUploadedFile(name, data)})


def streamed_body(response) -> bytes:
    """The whole body of a response whose content is an async iterator."""

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(read)()


def zip_of(files: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, document in files.items():
            archive.writestr(name, json.dumps(document))
    return buffer.getvalue()


# --- ChatGPT's data export, written by hand after its published format ---

T0 = 1_700_000_000.0


def _gpt_message(key: str, role: str, parts: list, offset: float | None, **metadata) -> dict:
    return {
        "id": key,
        "author": {"role": role, "name": None, "metadata": {}},
        "create_time": None if offset is None else T0 + offset,
        "update_time": None,
        "content": {"content_type": "text", "parts": parts},
        "status": "finished_successfully",
        "end_turn": True,
        "weight": 1.0,
        "metadata": metadata,
        "recipient": "all",
        "channel": None,
    }


def _node(key: str, parent: str | None, children: list[str], message: dict | None) -> dict:
    return {"id": key, "message": message, "parent": parent, "children": children}


def chatgpt_conversation() -> dict:
    """A conversation with a hidden system root, an image part, a tool call and its
    output, two versions of the second question (the person on the second) and, off
    their path, a question answered twice.

        root -> system (hidden) -> u1 -> a1 -> u2 -> a2, a2b
                                            -> u2b -> code (tool call) -> tool -> a3
    """
    code = _gpt_message("code", "assistant", [], 55, model_slug="gpt-4o")
    code["content"] = {"content_type": "code", "language": "python", "text": "print(1)"}
    code["recipient"] = "python"
    mapping = {
        "root": _node("root", None, ["system"], None),
        "system": _node(
            "system",
            "root",
            ["u1"],
            _gpt_message("system", "system", [""], None, is_visually_hidden_from_conversation=True),
        ),
        "u1": _node(
            "u1",
            "system",
            ["a1"],
            _gpt_message(
                "u1",
                "user",
                [
                    {"content_type": "image_asset_pointer", "asset_pointer": "file-service://x"},
                    "What is the capital of France?",
                ],
                10,
            ),
        ),
        "a1": _node(
            "a1",
            "u1",
            ["u2", "u2b"],
            _gpt_message(
                "a1",
                "assistant",
                ["Paris."],
                20,
                model_slug="gpt-4",
                finish_details={"type": "stop"},
            ),
        ),
        "u2": _node("u2", "a1", ["a2", "a2b"], _gpt_message("u2", "user", ["And Germany?"], 30)),
        "a2": _node("a2", "u2", [], _gpt_message("a2", "assistant", ["Berlin."], 40)),
        "a2b": _node("a2b", "u2", [], _gpt_message("a2b", "assistant", ["Berlin, again."], 45)),
        "u2b": _node("u2b", "a1", ["code"], _gpt_message("u2b", "user", ["And Italy?"], 50)),
        "code": _node("code", "u2b", ["tool"], code),
        "tool": _node("tool", "code", ["a3"], _gpt_message("tool", "tool", ["1"], 56)),
        "a3": _node(
            "a3",
            "tool",
            [],
            _gpt_message(
                "a3",
                "assistant",
                ["**Rome.**"],
                60,
                model_slug="gpt-4o",
                finish_details={"type": "max_tokens"},
            ),
        ),
    }
    return {
        "title": "Capitals",
        "create_time": T0,
        "update_time": T0 + 60,
        "mapping": mapping,
        "moderation_results": [],
        "current_node": "a3",
        "plugin_ids": None,
        "conversation_id": "6a1b2c3d-0000-4000-8000-000000000001",
        "conversation_template_id": None,
        "gizmo_id": None,
        "is_archived": False,
        "safe_urls": [],
        "id": "6a1b2c3d-0000-4000-8000-000000000001",
    }


def chatgpt_second_conversation() -> dict:
    """A short one with its model named, archived, no current node, no times on messages."""
    mapping = {
        "root": _node("root", None, ["u1"], None),
        "u1": _node("u1", "root", ["a1"], _gpt_message("u1", "user", ["Hello?"], None)),
        "a1": _node("a1", "u1", [], _gpt_message("a1", "assistant", ["Hi!"], None)),
    }
    return {
        "title": "Greeting",
        "create_time": T0 + 1000,
        "update_time": None,
        "mapping": mapping,
        "current_node": None,
        "is_archived": True,
        "default_model_slug": "gpt-4o-mini",
        "id": "6a1b2c3d-0000-4000-8000-000000000002",
    }
