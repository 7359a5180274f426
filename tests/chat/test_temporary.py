"""Temporary chats: started from the sidebar, marked on the page, deleted a day after their
last message (the retention purge, tests/privacy/test_retention.py) or, if their owner
chose so, as soon as they open another chat; what they used stays in the reports."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from conversations.chat.models import Conversation, Message
from conversations.usage import reports
from tests.factories import make_conversation


def new_chat(client, **data) -> Conversation:
    response = client.post(reverse("conversation_create"), data)
    assert response.status_code == 302
    return Conversation.objects.get(pk=int(response.url.strip("/").split("/")[-1]))


def test_a_temporary_chat_is_started_and_marked(alice_client):
    chat = new_chat(alice_client, temporary="day")
    assert chat.temporary == Conversation.Temporary.DAY
    page = alice_client.get(reverse("conversation_detail", args=[chat.pk])).content.decode()
    assert "chat-banner-temporary" in page
    assert 'class="temporary-mark"' in page  # its entry in the sidebar
    assert "It is deleted a day after its last message." in page


def test_new_chat_makes_a_kept_one_even_after_a_temporary(alice_client):
    temporary = new_chat(alice_client, temporary="day")
    kept = new_chat(alice_client)  # the untouched chat is reused, and kept now
    assert kept.pk == temporary.pk and kept.temporary == ""
    page = alice_client.get(reverse("conversation_detail", args=[kept.pk])).content.decode()
    assert "chat-banner-temporary" not in page


def test_a_bad_mode_is_a_kept_chat(alice_client):
    assert new_chat(alice_client, temporary="forever").temporary == ""


def test_leaving_a_chat_to_delete_on_leaving_deletes_it(
    alice, alice_client, simulator, send, enqueued
):
    other = make_conversation(alice, ("question", "answer"))
    chat = new_chat(alice_client, temporary="leave")
    send(chat, "/echo a secret")
    enqueued.drain()
    today = timezone.localdate()
    before = reports.user_summary(alice.pk, today, today)
    assert before["requests"] == 2 and before["failed"] == 0
    # Coming back to it keeps it.
    assert alice_client.get(reverse("conversation_detail", args=[chat.pk])).status_code == 200
    assert Conversation.objects.filter(pk=chat.pk).exists()
    # Opening another chat (or the home page) leaves it.
    alice_client.get(reverse("conversation_detail", args=[other.pk]))
    assert not Conversation.objects.filter(pk=chat.pk).exists()
    assert not Message.objects.filter(content__contains="a secret").exists()
    assert reports.user_summary(alice.pk, today, today) == before
    assert Conversation.objects.filter(pk=other.pk).exists()


def test_the_mode_is_changed_on_the_page(alice_client, alice):
    chat = make_conversation(alice, ("question", "answer"))
    url = reverse("conversation_temporary", args=[chat.pk])
    assert alice_client.post(url, {"mode": "day"}).status_code == 302
    chat.refresh_from_db()
    assert chat.temporary == "day"
    alice_client.post(url, {"mode": "leave"})
    alice_client.get(reverse("chat_home"))
    assert not Conversation.objects.filter(pk=chat.pk).exists()


def test_keeping_it_after_all(alice_client, alice):
    chat = make_conversation(alice, ("question", "answer"))
    url = reverse("conversation_temporary", args=[chat.pk])
    alice_client.post(url, {"mode": "leave"})
    alice_client.post(url, {"mode": ""})
    alice_client.get(reverse("chat_home"))
    chat.refresh_from_db()
    assert chat.temporary == ""


@pytest.mark.parametrize("mode", ["day", "leave", ""])
def test_only_the_owner_changes_it(client, bob, alice, mode):
    chat = make_conversation(alice, ("question", "answer"))
    client.force_login(bob)
    response = client.post(reverse("conversation_temporary", args=[chat.pk]), {"mode": mode})
    assert response.status_code == 404
    chat.refresh_from_db()
    assert chat.temporary == ""


def test_other_peoples_leave_chats_are_never_touched(client, alice, bob):
    chat = make_conversation(alice, ("question", "answer"))
    Conversation.objects.filter(pk=chat.pk).update(temporary="leave")
    client.force_login(bob)
    bobs = new_chat(client, temporary="leave")
    client.get(reverse("chat_home"))
    assert Conversation.objects.filter(pk=chat.pk).exists()
    assert not Conversation.objects.filter(pk=bobs.pk).exists()
