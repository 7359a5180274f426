"""Chats on several providers: a conversation's model names its provider, the worker calls
that provider with its own key (and never another), every call records the provider,
a model whose provider cannot be reached is refused with the message kept, and deleting
a provider leaves old conversations and reports intact."""

from __future__ import annotations

import socket
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from conversations.chat.services import conversations as chat_services
from conversations.models import Completion, Conversation, Message, ModelPrice
from conversations.providers import catalog, services
from conversations.providers.models import Provider, ProviderModel
from conversations.usage import reports

B_KEY = "sk-provider-b-secret"


@pytest.fixture
def provider_b(second_simulator, db) -> Provider:
    """Simulator B as a provider with its own key, its models read and one offered."""
    provider = Provider(name="Local vLLM", base_url=second_simulator.base_url)
    provider.api_key = B_KEY
    provider.save()
    services.provider_models_refresh(provider=provider)
    ProviderModel.objects.filter(provider=provider, model_id="gpt-4.1-mini").update(
        enabled=True, display_name="Local 4.1"
    )
    catalog.forget()
    return provider


def on_b(owner, provider: Provider) -> Conversation:
    return chat_services.conversation_create(
        owner=owner, model="gpt-4.1-mini", provider_id=provider.pk
    )


def test_a_chat_on_provider_b_calls_b_with_its_key_and_never_a(
    alice, simulator, second_simulator, provider_b, send, enqueued
):
    conversation = on_b(alice, provider_b)
    _message, completion = send(conversation, "/echo hello from b")
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.SUCCEEDED
    assert (completion.provider_id, completion.provider_name) == (provider_b.pk, "Local vLLM")
    calls = [r for r in second_simulator.requests() if r["body"].get("messages")]
    assert [r["authorization"] for r in calls] == [f"Bearer {B_KEY}"]
    assert not [r for r in simulator.requests() if r["body"].get("messages")]
    provider_b.refresh_from_db()
    assert provider_b.last_success_at is not None


def test_a_chat_on_the_default_provider_still_goes_to_the_environments(
    alice, simulator, second_simulator, provider_b, send, enqueued
):
    conversation = chat_services.conversation_create(owner=alice)
    assert conversation.provider_id is None
    _message, completion = send(conversation, "/echo hello from a")
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.SUCCEEDED and completion.provider_name == ""
    assert [r["authorization"] for r in simulator.requests()] == ["Bearer sk-test-key"]
    assert not [r for r in second_simulator.requests() if r["body"].get("messages")]


def test_an_unavailable_model_is_refused_and_the_message_kept(
    alice, alice_client, simulator, provider_b, enqueued
):
    conversation = on_b(alice, provider_b)
    Provider.objects.filter(pk=provider_b.pk).update(models_error="Connection refused")
    catalog.forget()
    response = alice_client.post(
        reverse("message_send", args=[conversation.pk]), {"content": "are you there?"}
    )
    assert response.status_code == 302
    page = alice_client.get(response.url).content.decode()
    assert "Local 4.1 is unavailable right now (Connection refused)." in page
    assert "Your message is saved but was not sent." in page
    assert Message.objects.filter(conversation=conversation, content="are you there?").exists()
    assert not Completion.objects.filter(conversation=conversation).exists()
    assert enqueued.ids == []


def test_the_model_select_groups_by_provider_and_greys_unavailable_ones(
    alice, alice_client, provider_b
):
    conversation = chat_services.conversation_create(owner=alice)
    page = alice_client.get(reverse("conversation_detail", args=[conversation.pk])).content
    page = page.decode()
    assert '<optgroup label="Local vLLM">' in page
    assert f'value="{provider_b.pk}:gpt-4.1-mini">Local 4.1</option>' in page
    Provider.objects.filter(pk=provider_b.pk).update(models_error="timed out")
    catalog.forget()
    page = alice_client.get(reverse("conversation_detail", args=[conversation.pk])).content
    option = f'value="{provider_b.pk}:gpt-4.1-mini" title="timed out" disabled'
    assert option in page.decode()


def test_choosing_a_providers_model_in_settings_moves_the_chat_there(
    alice, alice_client, provider_b
):
    conversation = chat_services.conversation_create(owner=alice)
    response = alice_client.post(
        reverse("conversation_settings", args=[conversation.pk]),
        {"settings-model": f"{provider_b.pk}:gpt-4.1-mini"},
    )
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert (conversation.provider_id, conversation.model) == (provider_b.pk, "gpt-4.1-mini")
    # And back to the environment's model of the same name.
    alice_client.post(
        reverse("conversation_settings", args=[conversation.pk]),
        {"settings-model": "gpt-4.1-mini"},
    )
    conversation.refresh_from_db()
    assert conversation.provider_id is None


def test_an_unavailable_model_cannot_be_chosen(alice, alice_client, provider_b):
    conversation = chat_services.conversation_create(owner=alice)
    Provider.objects.filter(pk=provider_b.pk).update(models_error="timed out")
    catalog.forget()
    response = alice_client.post(
        reverse("conversation_settings", args=[conversation.pk]),
        {"settings-model": f"{provider_b.pk}:gpt-4.1-mini"},
    )
    assert response.status_code == 400
    assert "Local 4.1 is unavailable right now (timed out)." in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.provider_id is None


def test_a_model_not_enabled_is_not_offered(alice, provider_b):
    with pytest.raises(Exception, match="not offered"):
        chat_services.conversation_create(owner=alice, model="gpt-4o", provider_id=provider_b.pk)


def test_the_admins_default_model_starts_new_chats(alice, provider_b):
    ProviderModel.objects.filter(provider=provider_b, model_id="gpt-4.1-mini").update(
        is_default=True
    )
    catalog.forget()
    conversation = chat_services.conversation_create(owner=alice)
    assert (conversation.provider_id, conversation.model) == (provider_b.pk, "gpt-4.1-mini")


def test_prices_key_on_the_provider_and_the_model(alice, simulator, provider_b, send, enqueued):
    long_ago = timezone.now() - timezone.timedelta(days=1)
    ModelPrice.objects.create(
        model="gpt-4.1-mini", prompt_price_per_million=Decimal(1000),
        completion_price_per_million=0, valid_from=long_ago,
    )  # fmt: skip
    ModelPrice.objects.create(
        provider=provider_b, model="gpt-4.1-mini", prompt_price_per_million=Decimal(1),
        completion_price_per_million=0, valid_from=long_ago,
    )  # fmt: skip
    _message, completion = send(on_b(alice, provider_b), "/echo priced")
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.price.provider_id == provider_b.pk
    assert completion.cost == (Decimal(completion.prompt_tokens) / 1_000_000).quantize(
        Decimal("0.00000001")
    )


def test_deleting_a_provider_keeps_old_pages_and_reports(
    alice, alice_client, simulator, provider_b, send, enqueued
):
    conversation = on_b(alice, provider_b)
    send(conversation, "/echo before the provider goes")
    enqueued.drain()
    today = timezone.localdate()
    before = reports.per_model(alice.pk, today, today)
    assert [(r["model"], r["provider_name"]) for r in before] == [("gpt-4.1-mini", "Local vLLM")]
    provider_b.delete()
    catalog.forget()
    page = alice_client.get(reverse("conversation_detail", args=[conversation.pk]))
    assert page.status_code == 200
    assert "before the provider goes" in page.content.decode()
    assert reports.per_model(alice.pk, today, today) == before
    usage = alice_client.get(reverse("usage_mine")).content.decode()
    assert "Local vLLM" in usage


def test_the_page_names_the_model_and_its_provider(alice, alice_client, provider_b):
    conversation = on_b(alice, provider_b)
    page = alice_client.get(reverse("conversation_detail", args=[conversation.pk])).content
    assert "Local 4.1 · Local vLLM</span>" in page.decode()


def test_with_provider_b_down_a_chat_on_a_still_gets_its_reply(
    alice, alice_client, simulator, provider_b, send, enqueued, settings
):
    settings.PROVIDER_MODELS_CONNECT_TIMEOUT = settings.PROVIDER_MODELS_TIMEOUT = 1.0
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused
    Provider.objects.filter(pk=provider_b.pk).update(base_url=f"http://127.0.0.1:{port}/v1")
    provider_b.refresh_from_db()
    assert services.provider_models_refresh(provider=provider_b) == []
    assert catalog.find(provider_b.pk, "gpt-4.1-mini").available is False

    on_a = chat_services.conversation_create(owner=alice)
    _message, completion = send(on_a, "/echo still here")
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.SUCCEEDED
    page = alice_client.get(reverse("conversation_detail", args=[on_a.pk])).content.decode()
    assert "still here" in page
    assert "Local 4.1 (unavailable)" in page


def test_the_price_list_shows_each_prices_provider(client, superuser, provider_b):
    ModelPrice.objects.create(
        provider=provider_b, model="gpt-4.1-mini", prompt_price_per_million=1,
        completion_price_per_million=2,
    )  # fmt: skip
    ModelPrice.objects.create(
        model="gpt-4o", prompt_price_per_million=1, completion_price_per_million=2
    )
    client.force_login(superuser)
    page = client.get(reverse("admin:conversations_modelprice_changelist")).content.decode()
    assert "Local vLLM" in page and ">default<" in page
