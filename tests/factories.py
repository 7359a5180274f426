"""Rows made through the ORM for tests that need a history but not how it was made."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from django.contrib.auth.models import User

from conversations.models import Completion, Conversation, Message


def make_conversation(
    owner: User,
    *turns: tuple[str, str],
    title: str = "Review me",
    model: str = "gpt-4o-mini",
    failed: str = "",
) -> Conversation:
    """A conversation made through the ORM: each turn a user message and a reply with
    its completion; `failed` adds a last user message whose call failed with that error."""
    conversation = Conversation.objects.create(owner=owner, title=title, model=model)
    position = 0
    last = None
    for user_text, reply_text in turns:
        asked = Message.objects.create(
            conversation=conversation,
            role="user",
            content=user_text,
            position=position,
            parent=last,
        )
        completion = Completion.objects.create(
            conversation=conversation,
            user=owner,
            request_message=asked,
            model=model,
            request_body={
                "model": model,
                "messages": [{"role": "user", "content": user_text}],
                "temperature": 0.3,
            },
            status=Completion.Status.SUCCEEDED,
            response_id=f"chatcmpl-{asked.pk}",
            response_model=f"{model}-2024-07-18",
            choices=[{"index": 0, "finish_reason": "stop"}],
            prompt_tokens=10,
            completion_tokens=5,
            total_tokens=15,
            latency_ms=120,
            attempts=1,
            cost=Decimal("0.00100000"),
            currency="USD",
        )
        last = Message.objects.create(
            conversation=conversation,
            role="assistant",
            content=reply_text,
            parent=asked,
            position=position + 1,
            completion=completion,
            choice_index=0,
            finish_reason="stop",
        )
        position += 2
    if failed:
        asked = Message.objects.create(
            conversation=conversation,
            role="user",
            content="and then?",
            position=position,
            parent=last,
        )
        Completion.objects.create(
            conversation=conversation,
            user=owner,
            request_message=asked,
            model=model,
            request_body={"model": model, "messages": []},
            status=Completion.Status.FAILED,
            error_type="server_error",
            error_message=failed,
            http_status=500,
            attempts=5,
        )
    return conversation


def csv_rows(response) -> list[list[str]]:
    # The body starts with a BOM (for spreadsheet programs); utf-8-sig reads past it.
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
