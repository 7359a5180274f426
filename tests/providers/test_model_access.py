"""Model access per group: a rule keeps models for the members of its groups (a model no
rule lists is for everyone). The settings panel, a send, the worker's call and the API all
hold to it; a person who loses access keeps their conversations readable."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from conversations.api import services as api_services
from conversations.chat.services import conversations as chat_services
from conversations.models import Completion, Conversation, Message
from conversations.providers import catalog
from conversations.providers.models import ModelAccess


@pytest.fixture
def research(alice) -> Group:
    """gpt-4o is kept for the research group, which alice is in (bob is not)."""
    group = Group.objects.create(name="research")
    alice.groups.add(group)
    rule = ModelAccess.objects.create(name="Big models", model_keys=["gpt-4o"])
    rule.groups.add(group)
    catalog.forget()
    return group


def model_options(client, conversation) -> str:
    page = client.get(reverse("conversation_detail", args=[conversation.pk])).content.decode()
    start = page.index('name="settings-model"')
    return page[start : page.index("</select>", start)]


def test_the_settings_panel_offers_a_kept_model_to_members_only(client, alice, bob, research):
    for person, offered in ((alice, True), (bob, False)):
        client.force_login(person)
        conversation = chat_services.conversation_create(owner=person)
        assert ('value="gpt-4o"' in model_options(client, conversation)) is offered
        assert 'value="gpt-4o-mini"' in model_options(client, conversation)
    response = client.post(
        reverse("conversation_settings", args=[conversation.pk]), {"settings-model": "gpt-4o"}
    )
    assert response.status_code == 400
    conversation.refresh_from_db()
    assert conversation.model != "gpt-4o"


def test_a_member_chats_on_it_and_a_non_member_cannot_pick_it(alice, bob, research):
    assert chat_services.conversation_create(owner=alice, model="gpt-4o").model == "gpt-4o"
    with pytest.raises(Exception, match="not offered to you"):
        chat_services.conversation_create(owner=bob, model="gpt-4o")


def test_losing_access_keeps_the_chat_readable_and_refuses_the_next_send(
    alice, alice_client, research, simulator, send, enqueued
):
    conversation = chat_services.conversation_create(owner=alice, model="gpt-4o")
    send(conversation, "/echo while allowed")
    enqueued.drain()
    alice.groups.remove(research)
    page = alice_client.get(reverse("conversation_detail", args=[conversation.pk]))
    assert page.status_code == 200 and "while allowed" in page.content.decode()
    assert 'value="gpt-4o"' in model_options(alice_client, conversation)  # what it was on
    response = alice_client.post(
        reverse("message_send", args=[conversation.pk]), {"content": "and now?"}, follow=True
    )
    text = response.content.decode()
    assert "gpt-4o is no longer offered to you" in text
    assert Message.objects.filter(conversation=conversation, content="and now?").exists()
    assert Completion.objects.filter(conversation=conversation).count() == 1


def test_the_worker_does_not_call_a_model_whose_access_went_after_the_send(
    alice, research, simulator, send, enqueued
):
    conversation = chat_services.conversation_create(owner=alice, model="gpt-4o")
    _message, completion = send(conversation, "/echo queued")
    alice.groups.remove(research)
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.FAILED
    assert completion.error_type == "model_access"
    assert not simulator.requests()


def test_the_api_lists_and_accepts_kept_models_for_members_only(alice, bob, research):
    assert "gpt-4o" in api_services.models_for(api_services.api_key_create(user=alice, name="a")[0])
    bobs_key = api_services.api_key_create(user=bob, name="b")[0]
    assert "gpt-4o" not in api_services.models_for(bobs_key)
    assert "gpt-4o-mini" in api_services.models_for(bobs_key)


def test_a_superuser_keeps_many_models_for_a_group_at_once(client, superuser, alice, bob):
    group = Group.objects.create(name="finance")
    bob.groups.add(group)
    client.force_login(superuser)
    response = client.post(
        reverse("admin:conversations_modelaccess_add"),
        {"name": "Finance", "model_keys": ["gpt-4o", "gpt-4.1-mini"], "groups": [group.pk]},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert catalog.may_use(bob.pk, None, "gpt-4o") and catalog.may_use(bob.pk, None, "gpt-4.1-mini")
    assert not catalog.may_use(alice.pk, None, "gpt-4o")
    assert not catalog.may_use(alice.pk, None, "gpt-4.1-mini")
    assert catalog.may_use(alice.pk, None, "gpt-4o-mini")
    listing = client.get(reverse("admin:conversations_modelaccess_changelist")).content.decode()
    assert "Finance" in listing and "finance" in listing


def test_the_default_model_kept_for_others_starts_new_chats_on_one_of_yours(bob, settings):
    settings.CHAT_DEFAULT_MODEL = "gpt-4o"
    ModelAccess.objects.create(name="Big", model_keys=["gpt-4o"])  # no group: nobody
    catalog.forget()
    conversation = chat_services.conversation_create(owner=bob)
    assert conversation.model != "gpt-4o"
    assert Conversation.objects.filter(pk=conversation.pk).exists()
