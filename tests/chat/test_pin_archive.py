"""Pinned chats head the sidebar; archived ones leave it for the "Archived" list, still open
and searchable; only the owner pins or archives (404 for anyone else)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from conversations.chat.models import Conversation
from tests.factories import make_conversation


def sidebar_ids(client) -> list[int]:
    page = client.get(reverse("chat_home")).content.decode()
    sidebar = page[
        page.index('id="conversation-list"') : page.index(
            "</ol>", page.index('id="conversation-list"')
        )
    ]
    return [int(part.split('"')[0]) for part in sidebar.split('id="conv-')[1:]]


@pytest.fixture
def three(alice):
    return [
        make_conversation(alice, (f"question {i}", "answer"), title=f"chat {i}") for i in range(3)
    ]


def test_a_pinned_chat_heads_the_sidebar(alice_client, three):
    first, second, third = three
    assert sidebar_ids(alice_client) == [third.pk, second.pk, first.pk]  # newest activity first
    response = alice_client.post(reverse("conversation_pin", args=[first.pk]), {"on": "1"})
    assert response.status_code == 302
    assert sidebar_ids(alice_client) == [first.pk, third.pk, second.pk]
    alice_client.post(reverse("conversation_pin", args=[second.pk]), {"on": "1"})
    assert sidebar_ids(alice_client) == [second.pk, first.pk, third.pk]  # newest pin first
    page = alice_client.get(reverse("conversation_detail", args=[second.pk])).content.decode()
    assert "Pinned:" in page
    assert "Unpin" in page
    alice_client.post(reverse("conversation_pin", args=[second.pk]), {"on": ""})
    assert sidebar_ids(alice_client) == [first.pk, third.pk, second.pk]


def test_an_archived_chat_leaves_the_sidebar_for_the_archived_list(alice_client, three):
    first, second, third = three
    response = alice_client.post(reverse("conversation_archive", args=[second.pk]), {"on": "1"})
    assert response["Location"] == reverse("chat_home")
    assert sidebar_ids(alice_client) == [third.pk, first.pk]
    archived = alice_client.get(reverse("conversation_archived")).content.decode()
    assert f'href="/c/{second.pk}/"' in archived
    assert f'href="/c/{first.pk}/"' not in archived
    # It still opens, says so, and takes it back.
    page = alice_client.get(reverse("conversation_detail", args=[second.pk])).content.decode()
    assert "This chat is archived" in page
    alice_client.post(reverse("conversation_archive", args=[second.pk]), {"on": ""})
    assert sidebar_ids(alice_client) == [third.pk, second.pk, first.pk]
    assert (
        "No archived chats." in alice_client.get(reverse("conversation_archived")).content.decode()
    )


def test_archiving_unpins_and_pinning_unarchives(alice, alice_client, three):
    first = three[0]
    alice_client.post(reverse("conversation_pin", args=[first.pk]), {"on": "1"})
    alice_client.post(reverse("conversation_archive", args=[first.pk]), {"on": "1"})
    first.refresh_from_db()
    assert first.archived_at is not None and first.pinned_at is None
    alice_client.post(reverse("conversation_pin", args=[first.pk]), {"on": "1"})
    first.refresh_from_db()
    assert first.archived_at is None and first.pinned_at is not None


def test_the_archived_list_shows_only_the_users_own(alice_client, bob, three):
    bobs = make_conversation(bob, ("his", "ok"), title="Bob's archived")
    Conversation.objects.filter(pk=bobs.pk).update(archived_at=bobs.created_at)
    assert (
        "Bob's archived" not in alice_client.get(reverse("conversation_archived")).content.decode()
    )


@pytest.mark.parametrize("name", ["conversation_pin", "conversation_archive"])
def test_only_the_owner_pins_or_archives(client, bob, three, name):
    client.force_login(bob)
    response = client.post(reverse(name, args=[three[0].pk]), {"on": "1"})
    assert response.status_code == 404
    three[0].refresh_from_db()
    assert three[0].pinned_at is None and three[0].archived_at is None


@pytest.mark.parametrize("name", ["conversation_pin", "conversation_archive"])
def test_pinning_and_archiving_are_posts(alice_client, three, name):
    assert alice_client.get(reverse(name, args=[three[0].pk])).status_code == 405


def test_the_archived_list_needs_a_login(client, db):
    response = client.get(reverse("conversation_archived"))
    assert response.status_code == 302
