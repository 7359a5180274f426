"""The API through the official `openai` client against uvicorn: the seed contract's
answers, errors in OpenAI's shape, budgets held under parallel calls, a stream the client
leaves, and the calls counted where the browser's are."""

from __future__ import annotations

import csv
import io
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import openai
import pytest
import requests
from django.test import Client
from django.urls import reverse

from conversations.api import services as api_services
from conversations.billing.models import BudgetPeriod, ModelPrice, UserBudget
from conversations.chat.models import Completion
from tests.support import wait_for

HELLO = [{"role": "user", "content": "Hello from a script"}]


def api_calls():
    return Completion.objects.filter(source=Completion.Source.API).order_by("pk")


def test_a_call_returns_the_upstreams_answer_and_is_kept_with_its_usage(api, alice, alice_key):
    ModelPrice.objects.create(
        model="gpt-4o-mini",
        prompt_price_per_million=Decimal("1"),
        completion_price_per_million=Decimal("2"),
    )
    reply = api.client(alice_key).chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, temperature=0.5, max_tokens=200
    )
    sent = api.simulator.bodies()
    assert sent == [
        {"model": "gpt-4o-mini", "messages": HELLO, "temperature": 0.5, "max_tokens": 200}
    ]
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-sim-") and reply.created > 0
    assert reply.model == "gpt-4o-mini-simulated"
    assert reply.choices[0].message.role == "assistant"
    assert "Hello from a script" in reply.choices[0].message.content
    assert reply.choices[0].finish_reason in ("stop", "length")
    [row] = api_calls()
    assert row.conversation_id is None and row.user == alice and row.api_key.name == "notebook"
    assert row.status == Completion.Status.SUCCEEDED and row.budget_settled
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (
        reply.usage.prompt_tokens,
        reply.usage.completion_tokens,
        reply.usage.total_tokens,
    )
    assert not row.usage_estimated
    assert row.response_id == reply.id and row.response_model == reply.model
    assert row.choices[0]["message"]["content"] == reply.choices[0].message.content
    assert row.cost == (
        Decimal(row.prompt_tokens) * 1 + Decimal(row.completion_tokens) * 2
    ) / Decimal(1_000_000)
    assert row.api_key.last_used_at is not None


def test_n_two_returns_two_choices(api, alice_key):
    reply = api.client(alice_key).chat.completions.create(model="gpt-4o-mini", messages=HELLO, n=2)
    assert [choice.index for choice in reply.choices] == [0, 1]
    assert reply.choices[0].message.content != reply.choices[1].message.content
    assert len(api_calls().get().choices) == 2


def test_a_stream_relays_the_reply_and_its_usage_then_done(api, alice_key):
    stream = api.client(alice_key).chat.completions.create(
        model="gpt-4o-mini",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].total_tokens > 0
    assert chunks[0].id.startswith("chatcmpl-sim-") and chunks[0].object == "chat.completion.chunk"
    row = api_calls().get()
    assert row.choices[0]["message"]["content"] == text and "Hello from a script" in text
    assert row.total_tokens == usage[0].total_tokens and not row.usage_estimated
    # The upstream is always asked for usage, to bill the call.
    assert api.simulator.bodies()[0]["stream_options"] == {"include_usage": True}


def test_a_stream_ends_with_done_and_keeps_the_usage_chunk_from_who_did_not_ask(api, alice_key):
    response = requests.post(
        f"{api.url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": HELLO, "stream": True},
        headers={"Authorization": f"Bearer {alice_key}"},
        stream=True,
        timeout=10,
    )
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = [line for line in response.iter_lines() if line]
    assert events[-1] == b"data: [DONE]"
    assert not any(b'"usage"' in event and b'"choices": []' in event for event in events)
    row = api_calls().get()
    assert row.total_tokens and not row.usage_estimated  # billed on the upstream's usage


def test_the_api_answers_under_api_v1_too_and_lists_the_models(api, alice_key, settings):
    listed = requests.get(
        f"{api.url}/api/v1/models", headers={"Authorization": f"Bearer {alice_key}"}, timeout=5
    ).json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == settings.CHAT_MODELS
    models = api.client(alice_key).models.list()
    assert [m.id for m in models] == settings.CHAT_MODELS


def test_a_revoked_or_unknown_key_gets_401(api, alice, alice_key, bob):
    client = api.client(alice_key)
    client.models.list()
    key = alice.api_keys.get()
    api_services.api_key_revoke(key=key)
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert refused.value.status_code == 401
    assert refused.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        api.client("cs-" + "x" * 48).models.list()
    with pytest.raises(openai.AuthenticationError):
        api.client(alice_key[:-1] + ("A" if alice_key[-1] != "A" else "B")).models.list()
    # An account made inactive (or waiting for approval) loses its keys at once.
    bob_key = api_services.api_key_create(user=bob, name="bob's")[1]
    bob.is_active = False
    bob.save(update_fields=["is_active"])
    with pytest.raises(openai.AuthenticationError):
        api.client(bob_key).models.list()
    assert not api_calls().exists() and api.simulator.bodies() == []


def test_a_model_not_offered_gets_403_and_a_bad_parameter_400_naming_it(api, alice_key):
    client = api.client(alice_key)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="gpt-5-secret", messages=HELLO)
    assert refused.value.body["code"] == "model_not_allowed"
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, temperature=3)
    assert refused.value.body["param"] == "temperature"
    assert "temperature" in refused.value.message
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert refused.value.body["param"] == "messages"
    assert not api_calls().exists() and api.simulator.bodies() == []


def test_an_upstream_failure_is_a_502_and_gives_the_budget_back(api, alice, alice_key):
    UserBudget.objects.create(user=alice, monthly_token_limit=100_000)
    api.simulator.control(faults=[{"status": 500, "message": "boom"}])
    with pytest.raises(openai.InternalServerError) as failed:
        api.client(alice_key).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert failed.value.status_code == 502 and "boom" in failed.value.message
    row = api_calls().get()
    assert row.status == Completion.Status.FAILED and row.budget_settled
    period = BudgetPeriod.objects.get(user=alice)
    assert (period.reserved_tokens, period.used_tokens) == (0, 0)


def test_parallel_calls_at_the_budget_edge_overshoot_by_at_most_one_reservation(
    api, alice, alice_key
):
    limit = 1_500
    UserBudget.objects.create(user=alice, monthly_token_limit=limit)
    # Slow answers: the 20 calls are in flight together, and their reservations meet.
    api.simulator.control(latency=0.5)
    client = api.client(alice_key, timeout=30)

    def call(_):
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=300)
        except openai.APIStatusError as error:
            return error.status_code, error.body
        return 200, None

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(call, range(20)))
    refused = [body for status, body in answers if status == 402]
    assert 0 < len(refused) < 20
    assert all(status in (200, 402) for status, _ in answers)
    assert all(body["type"] == "insufficient_quota" for body in refused)
    assert "budget" in refused[0]["message"]
    rows = list(api_calls())
    assert len(rows) == 20 - len(refused)
    period = BudgetPeriod.objects.get(user=alice)
    assert period.reserved_tokens == 0
    assert period.used_tokens == sum(row.total_tokens for row in rows)
    assert period.used_tokens <= limit + max(row.reserved_tokens for row in rows)


def test_a_stream_the_client_leaves_is_closed_upstream_and_settled_on_estimated_usage(
    api, alice, alice_key
):
    UserBudget.objects.create(user=alice, monthly_token_limit=1_000_000)
    api.simulator.control(token_delay=0.05, faults=[{"kind": "tokens", "tokens": 400}])
    stream = api.client(alice_key).chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, stream=True
    )
    received = ""
    for chunk in stream:
        received += chunk.choices[0].delta.content or ""
        if len(received) > 20:
            break
    stream.close()  # the client goes away mid-reply
    wait_for(lambda: api.simulator.stats()["streams_disconnected"] == 1, timeout=10)
    row = wait_for(
        lambda: api_calls().filter(status=Completion.Status.SUCCEEDED).first(), timeout=10
    )
    assert row.error_type == "client_closed" and row.usage_estimated and row.budget_settled
    assert row.completion_tokens > 0 and row.total_tokens > row.completion_tokens
    content = row.choices[0]["message"]["content"]
    assert content.startswith(received) and len(content) < 400 * 4
    period = BudgetPeriod.objects.get(user=alice)
    assert period.reserved_tokens == 0 and period.used_tokens == row.total_tokens


def test_api_calls_are_in_my_usage_and_its_csv_with_their_source(api, alice, alice_key):
    api.client(alice_key).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    client = Client()
    client.force_login(alice)
    page = client.get(reverse("usage_mine")).content.decode()
    assert "<td>API</td>" in page
    today = time.strftime("%Y-%m-%d")
    response = client.get(
        reverse("usage_mine_csv"), {"start": today, "end": today, "group": "model"}
    )
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Model", "Provider", "Source"]
    assert rows[1][:4] == ["gpt-4o-mini", "default", "API", "1"]
