"""A person's export of their own chats: one conversation as JSON or Markdown, all of them
as a streamed ZIP; nobody else's, and nothing secret."""

from __future__ import annotations

import contextvars
import io
import json
import zipfile

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client
from django.urls import reverse
from django.utils import timezone

from conversations.chat.models import Conversation
from tests.factories import make_conversation
from tests.portability.helpers import branched_conversation, streamed_body


@pytest.fixture
def bob_client(bob) -> Client:
    client = Client()
    client.force_login(bob)
    return client


def export_url(conversation: Conversation, kind: str = "json") -> str:
    return reverse("conversation_export", args=[conversation.pk]) + f"?format={kind}"


def test_it_exports_every_branch_parameter_and_usage_as_json(alice_client, alice, settings):
    settings.OPENAI_API_KEY = "sk-secret-upstream-key"
    conversation = branched_conversation(alice)
    response = alice_client.get(export_url(conversation))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"] == (
        f'attachment; filename="{conversation.pk}-jokes-more.json"'
    )
    assert response["Cache-Control"] == "private, no-store"
    text = response.content.decode()
    document = json.loads(text)
    assert document["format"] == "chatsite.conversation"
    assert document["version"] == 1
    assert document["title"] == "Jokes & more"
    assert document["model"] == "gpt-4o-mini"
    assert document["system_prompt"] == "Be brief."
    assert document["parameters"] == {
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 256,
        "n": 2,
        "stop": ["END"],
        "presence_penalty": 0.1,
        "frequency_penalty": -0.2,
    }
    assert document["pinned_at"] == conversation.pinned_at.isoformat()
    assert document["archived_at"] is None
    assert document["origin"] == ""
    messages = document["messages"]
    assert len(messages) == 7  # every version, off the path too
    assert {m["content"] for m in messages} >= {"Tell me a joke", "Tell me a riddle"}
    by_id = {m["id"]: m for m in messages}
    riddle = next(m for m in messages if m["content"] == "Tell me a riddle")
    assert by_id[riddle["parent_id"]]["content"] == "Hello!"
    assert riddle["selected"] is True
    assert riddle["created_at"] == (
        conversation.messages.get(content="Tell me a riddle").created_at.isoformat()
    )
    assert [c["cost"] for c in document["completions"]] == [
        "0.00100000",
        "0.00100000",
        "0.00120000",
    ]
    assert document["completions"][0]["total_tokens"] == 15
    assert document["completions"][0]["response_model"] == "gpt-4o-mini-2024-07-18"
    # What the staff export holds and a person's does not: request bodies, keys.
    assert "request_body" not in text
    assert 'temperature": 0.3' not in text  # from a request body
    assert "sk-secret-upstream-key" not in text


def test_it_exports_the_visible_path_only_as_markdown(alice_client, alice):
    conversation = branched_conversation(alice)
    response = alice_client.get(export_url(conversation, "md"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    assert response["Content-Disposition"].endswith(f'filename="{conversation.pk}-jokes-more.md"')
    assert response["Cache-Control"] == "private, no-store"
    text = response.content.decode()
    assert text.startswith("# Jokes & more\n")
    assert "Be brief." in text
    for shown in ("Hi", "Hello!", "Tell me a riddle", "What has keys but no locks?"):
        assert f"\n{shown}\n" in text
    for hidden in ("Tell me a joke", "Why did the chicken", "Hey there"):
        assert hidden not in text
    # Each turn labelled, the order kept.
    assert text.index("## You") < text.index("## Assistant") < text.rindex("## You")
    assert "version 2 of 2" in text  # the edited message is the second version of its turn


def test_it_refuses_an_unknown_format(alice_client, alice):
    conversation = make_conversation(alice, ("Hi", "Hello"))
    assert alice_client.get(export_url(conversation, "pdf")).status_code == 400


@pytest.mark.parametrize("kind", ["json", "md"])
def test_it_answers_404_to_another_user(bob_client, alice, kind):
    conversation = make_conversation(alice, ("Hi", "Hello"))
    assert bob_client.get(export_url(conversation, kind)).status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        lambda c: reverse("conversation_export", args=[c.pk]),
        lambda c: reverse("chats_export"),
        lambda c: reverse("chats_import"),
    ],
)
def test_it_requires_login(client, alice, url):
    conversation = make_conversation(alice, ("Hi", "Hello"))
    response = client.get(url(conversation))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def _zip_members(body: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def test_it_streams_a_zip_of_all_of_alices_chats_and_none_of_bobs(alice_client, alice, bob):
    mine = [
        branched_conversation(alice),
        make_conversation(alice, ("你好", "你好！"), title="中文"),
        make_conversation(alice, ("Old", "Archived"), title="Old one"),
    ]
    Conversation.objects.filter(pk=mine[2].pk).update(archived_at=timezone.now())
    theirs = make_conversation(bob, ("Bob's secret", "Noted"), title="Bob")
    response = alice_client.get(reverse("chats_export"))
    assert response.status_code == 200
    assert response.streaming
    # Streamed by an async iterator (a sync one would be read into a list under ASGI).
    assert hasattr(response.streaming_content, "__aiter__")
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="chats-')
    assert response["Cache-Control"] == "private, no-store"
    members = _zip_members(streamed_body(response))
    assert set(members) == {
        f"{mine[0].pk}-jokes-more.json", f"{mine[0].pk}-jokes-more.md",
        f"{mine[1].pk}-chat.json", f"{mine[1].pk}-chat.md",
        f"{mine[2].pk}-old-one.json", f"{mine[2].pk}-old-one.md",
    }  # fmt: skip
    documents = [json.loads(data) for name, data in members.items() if name.endswith(".json")]
    assert sorted(d["id"] for d in documents) == sorted(c.pk for c in mine)
    assert "中文" in members[f"{mine[1].pk}-chat.md"].decode()
    assert all(b"Bob's secret" not in data for data in members.values())
    assert all(not name.startswith(f"{theirs.pk}-") for name in members)


def test_it_streams_the_zip_in_batches_through_the_async_client(alice, settings, monkeypatch):
    from conversations.portability import selectors

    monkeypatch.setattr(selectors, "EXPORT_BATCH_SIZE", 2)
    batches = []
    read_batch = selectors.export_batch

    def spy(*args, **kwargs):
        batches.append(rows := read_batch(*args, **kwargs))
        return rows

    monkeypatch.setattr(selectors, "export_batch", spy)
    made = [make_conversation(alice, (f"Question {i}", f"Answer {i}")) for i in range(5)]

    async def fetch() -> tuple[bool, list[bytes]]:
        client = AsyncClient()
        await client.aforce_login(alice)
        response = await client.get(reverse("chats_export"))
        chunks = [chunk async for chunk in response.streaming_content]
        return response.streaming, chunks

    # In a context of its own: asgiref copies the request's context variables (its request
    # id, which an ASGI request keeps until its body is sent) back to the caller.
    streaming, chunks = contextvars.copy_context().run(async_to_sync(fetch))
    assert streaming
    assert [len(rows) for rows in batches] == [2, 2, 1, 0]  # never all at once
    # Written file by file: one chunk per file, then the central directory.
    assert len(chunks) == 2 * len(made) + 1
    members = _zip_members(b"".join(chunks))
    assert {json.loads(members[f"{c.pk}-review-me.json"])["id"] for c in made} == {
        c.pk for c in made
    }


def test_an_empty_account_gets_an_empty_zip(alice_client):
    response = alice_client.get(reverse("chats_export"))
    assert _zip_members(streamed_body(response)) == {}
