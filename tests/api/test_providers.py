"""The API under several providers: /v1/models lists every model offered (a provider's by
its id, or "<provider>/<id>" where the id is taken), and a call to a provider's model goes
to that provider with its key, recorded and priced as its own."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import async_to_sync
from django.db import connections

from conversations.api import services as api_services
from conversations.api import serving
from conversations.models import Completion
from conversations.providers import catalog, services
from conversations.providers.models import Provider, ProviderModel

B_KEY = "sk-provider-b-for-the-api"


@pytest.fixture
def provider_b(second_simulator, transactional_db) -> Provider:
    provider = Provider(name="lab", base_url=second_simulator.base_url)
    provider.api_key = B_KEY
    provider.save()
    services.provider_models_refresh(provider=provider)
    ProviderModel.objects.filter(provider=provider, model_id__in=["gpt-4o", "gpt-4.1-mini"]).update(
        enabled=True
    )
    catalog.forget()
    return provider


def call(path: str, key: str, body: dict | None = None) -> tuple[int, dict]:
    """The API's own ASGI app, on another thread (its database steps use their own
    connections; a browser test may have left an event loop on this one)."""
    sent: list[dict] = []
    raw = json.dumps(body).encode() if body is not None else b""

    async def receive():
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST" if body is not None else "GET",
        "path": path,
        "headers": [
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"application/json"),
        ],
    }

    def run():
        try:
            async_to_sync(serving.serve)(scope, receive, send)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(run).result()
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(payload)


def test_the_model_list_names_every_providers_models(alice, simulator, provider_b):
    _key, text = api_services.api_key_create(user=alice, name="script")
    status, listed = call("/v1/models", text)
    assert status == 200
    ids = [row["id"] for row in listed["data"]]
    # The environment's gpt-4o keeps its name; the lab's is told apart, its 4.1-mini too.
    assert "gpt-4o" in ids and "lab/gpt-4o" in ids and "lab/gpt-4.1-mini" in ids


def test_a_call_to_a_providers_model_goes_there_with_its_key(
    alice, simulator, second_simulator, provider_b
):
    _key, text = api_services.api_key_create(user=alice, name="script")
    status, answer = call(
        "/v1/chat/completions",
        text,
        {"model": "lab/gpt-4o", "messages": [{"role": "user", "content": "/echo via the lab"}]},
    )
    assert status == 200, answer
    assert answer["choices"][0]["message"]["content"] == "via the lab"
    calls = [r for r in second_simulator.requests() if r["body"].get("messages")]
    assert [r["authorization"] for r in calls] == [f"Bearer {B_KEY}"]
    assert calls[0]["body"]["model"] == "gpt-4o"  # the provider's own id
    assert not [r for r in simulator.requests() if r["body"].get("messages")]
    row = Completion.objects.get(source=Completion.Source.API)
    assert (row.model, row.provider_id, row.provider_name) == ("gpt-4o", provider_b.pk, "lab")


def test_an_unavailable_providers_models_leave_the_list(alice, simulator, provider_b):
    Provider.objects.filter(pk=provider_b.pk).update(models_error="down")
    catalog.forget()
    _key, text = api_services.api_key_create(user=alice, name="script")
    ids = [row["id"] for row in call("/v1/models", text)[1]["data"]]
    assert not [i for i in ids if i.startswith("lab/")]
    status, _answer = call(
        "/v1/chat/completions",
        text,
        {"model": "lab/gpt-4o", "messages": [{"role": "user", "content": "hello"}]},
    )
    assert status == 403
