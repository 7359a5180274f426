"""Providers' model lists, read in the background: each provider's models appear, one
that went away has its models unavailable (the others stay), one that never answers is
given up on after the short timeouts, and no page waits for any of it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from django.conf import settings
from django.db import connection
from django.urls import reverse

from chatsite.celery import app as celery_app
from conversations.models import Conversation
from conversations.providers import catalog, services
from conversations.providers.models import Provider, ProviderModel
from conversations.upstream.simulated_text import SIMULATED_MODELS


def make_provider(name: str, base_url: str, key: str = "") -> Provider:
    return services.provider_save(provider=Provider(name=name, base_url=base_url), api_key=key)


def offer(provider: Provider, model: str) -> None:
    row = provider.models.get(model_id=model)
    row.enabled = True
    services.provider_model_save(provider_model=row, is_default=False)


def test_each_providers_models_appear_after_a_refresh(db, simulators):
    alpha = make_provider("Alpha", simulators().base_url, "sk-alpha")
    beta = make_provider("Beta", simulators().base_url, "sk-beta")

    assert services.providers_refresh() == {
        alpha.pk: len(SIMULATED_MODELS),
        beta.pk: len(SIMULATED_MODELS),
    }

    for provider in (alpha, beta):
        provider.refresh_from_db()
        assert sorted(provider.models.values_list("model_id", flat=True)) == sorted(
            SIMULATED_MODELS
        )
        assert provider.models_error == ""
        assert provider.models_ok_at == provider.models_checked_at is not None
    # Listed is not offered: an admin enables each model.
    assert [o for o in catalog.offers() if o.provider_id is not None] == []
    offer(beta, "gpt-4o")
    assert catalog.find(beta.pk, "gpt-4o").available


def test_a_provider_that_went_away_has_its_models_unavailable_and_the_others_stay(db, simulators):
    up, away = simulators(), simulators()
    alpha = make_provider("Alpha", up.base_url, "sk-alpha")
    beta = make_provider("Beta", away.base_url, "sk-beta")
    services.providers_refresh()
    offer(alpha, "gpt-4o")
    offer(beta, "gpt-4o")

    away.stop()
    services.providers_refresh()

    kept = catalog.find(alpha.pk, "gpt-4o")
    assert kept.available and kept.error == ""
    gone = catalog.find(beta.pk, "gpt-4o")
    assert gone.available is False
    beta.refresh_from_db()
    assert gone.error == beta.models_error != ""
    assert beta.models_checked_at > beta.models_ok_at
    # Its models are kept, still offered: they come back when the provider does.
    assert beta.models.get(model_id="gpt-4o").enabled


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def test_a_provider_that_never_answers_is_given_up_on_and_pages_do_not_wait(
    transactional_db, silent_port, alice, client, settings, monkeypatch
):
    settings.PROVIDER_MODELS_CONNECT_TIMEOUT = 1.0
    settings.PROVIDER_MODELS_TIMEOUT = 1.5
    provider = make_provider("Silent", f"http://127.0.0.1:{silent_port}/v1", "sk-silent")
    ProviderModel.objects.create(provider=provider, model_id="quiet-model", enabled=True)
    chat = Conversation.objects.create(owner=alice, model="quiet-model", provider=provider)
    client.force_login(alice)
    # Every HTTP call made through requests, and from which thread.
    calls: list[tuple[str, str]] = []
    send = requests.Session.send

    def recorded(session, request, **kwargs):
        calls.append((threading.current_thread().name, request.url))
        return send(session, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", recorded)
    outcome: dict = {}

    def refresh() -> None:
        started = time.monotonic()
        try:
            outcome["listed"] = services.provider_models_refresh(provider=provider)
        finally:
            outcome["took"] = time.monotonic() - started
            connection.close()

    thread = threading.Thread(target=refresh, name="refresh")
    thread.start()
    try:
        for url in (reverse("chat_home"), reverse("conversation_detail", args=[chat.pk])):
            assert client.get(url).status_code == 200
        # Both pages were served while the refresh still waited on the provider.
        assert thread.is_alive()
    finally:
        thread.join(timeout=15)
    assert not thread.is_alive()
    assert outcome["listed"] == []
    assert outcome["took"] < 1.5 + 2  # given up after the read timeout, not OPENAI_TIMEOUT
    assert calls == [("refresh", f"http://127.0.0.1:{silent_port}/v1/models")]
    provider.refresh_from_db()
    assert provider.models_error
    assert catalog.find(provider.pk, "quiet-model").available is False


def test_beat_reads_every_providers_model_list_on_a_schedule():
    entries = [
        entry
        for entry in settings.CELERY_BEAT_SCHEDULE.values()
        if entry["task"] == "conversations.tasks.providers_refresh"
    ]
    assert entries == [
        {
            "task": "conversations.tasks.providers_refresh",
            "schedule": settings.PROVIDER_REFRESH_INTERVAL,
        }
    ]
    assert "conversations.tasks.providers_refresh" in celery_app.tasks
    assert "conversations.tasks.provider_refresh" in celery_app.tasks
