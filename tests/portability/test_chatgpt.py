"""ChatGPT's data export (`conversations.json`, or its ZIP) imported onto our tree: the
text of the person and the assistant kept, the rest left out, the person's path selected."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from django.urls import reverse

from conversations.chat.models import Completion, Conversation
from conversations.chat.selectors import transcript
from tests.portability.helpers import (
    T0,
    chatgpt_conversation,
    chatgpt_second_conversation,
    upload,
    zip_of,
)


def at(offset: float) -> datetime:
    return datetime.fromtimestamp(T0 + offset, tz=UTC)


def tree(conversation: Conversation) -> dict[str, tuple]:
    """Each message by its text: (its parent's text, role, position, selected)."""
    rows = {m.pk: m for m in conversation.messages.all()}
    return {
        m.content: (
            rows[m.parent_id].content if m.parent_id else None,
            m.role,
            m.position,
            m.is_selected,
        )
        for m in rows.values()
    }


def test_it_maps_chatgpts_tree_onto_ours_with_the_current_path_selected(alice_client, alice):
    data = json.dumps([chatgpt_conversation(), chatgpt_second_conversation()]).encode()
    response = upload(alice_client, data, "conversations.json")
    assert response.status_code == 302
    assert response["Location"] == reverse("chat_home")
    capitals = Conversation.objects.get(owner=alice, title="Capitals")
    assert capitals.origin == Conversation.Origin.CHATGPT
    assert capitals.is_imported
    # The hidden system root, the tool call and its output are left out; their children
    # follow the nearest message kept. The image part is left out of the text.
    assert tree(capitals) == {
        "What is the capital of France?": (None, "user", 0, True),
        "Paris.": ("What is the capital of France?", "assistant", 1, True),
        "And Germany?": ("Paris.", "user", 2, False),
        "Berlin.": ("And Germany?", "assistant", 3, False),
        "Berlin, again.": ("And Germany?", "assistant", 3, True),  # the newest, off the path
        "And Italy?": ("Paris.", "user", 2, True),  # on the path to current_node
        "**Rome.**": ("And Italy?", "assistant", 3, True),
    }
    path = [item.content if item.kind == "message" else item.selected.content
            for item in transcript(capitals).items]  # fmt: skip
    assert path == ["What is the capital of France?", "Paris.", "And Italy?", "**Rome.**"]
    # The edit is the second version of its turn, as in ChatGPT.
    italy = next(item for item in transcript(capitals).items if item.kind == "message"
                 and item.content == "And Italy?")  # fmt: skip
    assert (italy.versions.number, italy.versions.count) == (2, 2)
    assert capitals.model == "gpt-4o"  # the last reply's model
    assert capitals.created_at == at(0)
    assert capitals.last_activity_at == at(60)
    assert capitals.archived_at is None
    assert capitals.title_is_auto is False
    rome = capitals.messages.get(content="**Rome.**")
    assert rome.created_at == at(60)
    assert rome.completion is None
    assert rome.finish_reason == "length"
    assert "<strong>Rome.</strong>" in rome.html
    assert capitals.messages.get(content="Paris.").finish_reason == "stop"

    greeting = Conversation.objects.get(owner=alice, title="Greeting")
    assert greeting.model == "gpt-4o-mini"  # default_model_slug
    assert greeting.archived_at == greeting.last_activity_at == at(1000)
    # Messages without times take the conversation's.
    assert set(greeting.messages.values_list("created_at", flat=True)) == {at(1000)}
    assert tree(greeting) == {
        "Hello?": (None, "user", 0, True),
        "Hi!": ("Hello?", "assistant", 1, True),
    }
    assert not Completion.objects.exists()


def test_the_imported_chatgpt_conversation_page_shows_its_replies(alice_client, alice):
    upload(alice_client, json.dumps([chatgpt_conversation()]).encode(), "conversations.json")
    conversation = Conversation.objects.get(owner=alice)
    response = alice_client.get(reverse("conversation_detail", args=[conversation.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "<strong>Rome.</strong>" in page
    assert "What is the capital of France?" in page
    assert "Berlin" not in page  # another branch


def test_one_imported_conversation_opens_its_page(alice_client, alice):
    response = upload(alice_client, json.dumps([chatgpt_conversation()]).encode())
    conversation = Conversation.objects.get(owner=alice)
    assert response["Location"] == reverse("conversation_detail", args=[conversation.pk])


def test_it_reads_conversations_json_from_chatgpts_export_zip(alice_client, alice):
    data = zip_of(
        {
            "conversations.json": [chatgpt_conversation(), chatgpt_second_conversation()],
            "user.json": {"id": "user-1", "email": "alice@example.com"},
            "message_feedback.json": [],
        }
    )
    assert upload(alice_client, data, "export.zip").status_code == 302
    assert set(Conversation.objects.values_list("title", flat=True)) == {"Capitals", "Greeting"}


def test_a_model_slug_nowhere_or_not_offered_gives_the_sites_default(alice_client, alice, settings):
    item = chatgpt_second_conversation()
    del item["default_model_slug"]
    upload(alice_client, json.dumps(item).encode())
    assert Conversation.objects.get().model == settings.CHAT_DEFAULT_MODEL
    Conversation.objects.all().delete()
    item["default_model_slug"] = "o9-ultra"
    upload(alice_client, json.dumps(item).encode())
    # The next message there goes to a model this site has.
    assert Conversation.objects.get().model == settings.CHAT_DEFAULT_MODEL


def test_an_empty_chatgpt_conversation_imports_with_no_messages(alice_client, alice):
    item = {"title": None, "create_time": None, "update_time": None, "mapping": {}}
    assert upload(alice_client, json.dumps([item]).encode()).status_code == 302
    conversation = Conversation.objects.get()
    assert (conversation.title, conversation.title_is_auto) == ("", True)
    assert not conversation.messages.exists()


def test_a_chatgpt_cycle_is_refused(alice_client):
    item = chatgpt_second_conversation()
    item["mapping"]["root"]["parent"] = "a1"
    response = upload(alice_client, json.dumps([item]).encode())
    assert response.status_code == 400
    assert "form a cycle" in response.content.decode()
    assert not Conversation.objects.exists()
