"""A call's row, without a server: the limits it is counted under (shared with the chat),
its budget reserved and settled once, the sweep giving up a call whose web process died,
and staff's review of API calls in the admin (searchable, audited)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from conversations.api import contract, services
from conversations.api.errors import ApiError
from conversations.api.serving import _upstream_error
from conversations.billing.models import BudgetPeriod, UserBudget
from conversations.chat.models import Completion
from conversations.chat.services import completions
from conversations.review.models import AuditEvent
from conversations.upstream import protocol
from conversations.upstream.protocol import ChatResponse, Choice, Usage

HELLO = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'


def _asked(raw: bytes = HELLO) -> contract.Asked:
    return contract.asked(raw, models=["gpt-4o-mini"], max_choices=4)


def _open(alice, raw: bytes = HELLO) -> services.Opened:
    key = services.api_key_create(user=alice, name="k")[0]
    return services.call_open(key=key, asked=_asked(raw))


def test_the_contract_names_the_parameter_at_fault():
    cases = {
        b"not json": (400, None),
        b"[]": (400, None),
        b'{"model": "gpt-4o-mini", "messages": [], "x": 1}': (400, "x"),
        b'{"messages": []}': (400, "model"),
        b'{"model": "other", "messages": []}': (403, "model"),
        b'{"model": "gpt-4o-mini", "messages": [{"role": "tool", "content": ""}]}': (
            400, "messages[0].role",
        ),
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 1}]}': (
            400, "messages[0].content",
        ),
        HELLO[:-1] + b', "n": 9}': (400, "n"),
        HELLO[:-1] + b', "top_p": 2}': (400, "top_p"),
        HELLO[:-1] + b', "stop": ["a", "b", "c", "d", "e"]}': (400, "stop"),
        HELLO[:-1] + b', "stream": "yes"}': (400, "stream"),
        HELLO[:-1] + b', "stream_options": {"include_usage": true}}': (400, "stream_options"),
    }  # fmt: skip
    for raw, (status, param) in cases.items():
        with pytest.raises(ApiError) as refused:
            _asked(raw)
        assert (refused.value.status, refused.value.param) == (status, param), raw


def test_the_contract_takes_every_parameter_and_text_parts():
    raw = (
        b'{"model": "gpt-4o-mini", "messages": [{"role": "developer", "content": "be brief"},'
        b' {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text",'
        b' "text": "b"}]}], "temperature": 1, "top_p": 0.5, "max_tokens": 9, "n": 2,'
        b' "stop": "x", "presence_penalty": 1, "frequency_penalty": -1, "user": "u1",'
        b' "stream": true, "stream_options": {"include_usage": true}}'
    )
    asked = _asked(raw)
    assert asked.stream and asked.wants_usage
    assert asked.body == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "ab"},
        ],
        "temperature": 1, "top_p": 0.5, "max_tokens": 9, "n": 2, "stop": "x",
        "presence_penalty": 1, "frequency_penalty": -1,
        "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip


def test_a_call_counts_against_the_replies_in_flight_with_the_chat(alice, settings):
    settings.MAX_REPLIES_IN_FLIGHT = 2
    _open(alice)
    _open(alice)
    with pytest.raises(ApiError) as refused:
        _open(alice)
    assert refused.value.status == 429 and refused.value.type == "rate_limit_exceeded"
    assert Completion.objects.count() == 2


def test_a_call_counts_against_the_messages_per_minute(alice, settings, clock):
    settings.MESSAGES_PER_MINUTE = 2
    settings.MAX_REPLIES_IN_FLIGHT = 0
    _open(alice)
    _open(alice)
    with pytest.raises(ApiError) as refused:
        _open(alice)
    assert refused.value.status == 429 and refused.value.retry_after > 0


def test_over_budget_is_402_and_leaves_nothing(alice):
    UserBudget.objects.create(user=alice, monthly_token_limit=10)
    with pytest.raises(ApiError) as refused:
        _open(alice)
    assert refused.value.status == 402 and "budget" in refused.value.message
    assert "saved" not in refused.value.message  # no message of the chat's to keep
    assert not Completion.objects.exists()


def _reply(text: str, usage: Usage | None) -> ChatResponse:
    return ChatResponse(
        id="x", created=1, model="m", object="chat.completion",
        choices=[Choice(index=0, content=text, finish_reason="stop")], usage=usage,
    )  # fmt: skip


def test_a_call_settles_once_and_a_late_settle_after_the_sweep_changes_nothing(alice):
    UserBudget.objects.create(user=alice, monthly_token_limit=100_000)
    opened = _open(alice)
    period = BudgetPeriod.objects.get(user=alice)
    assert period.reserved_tokens == opened.reserved.tokens > 0
    assert services.call_settle(opened=opened, response=_reply("hi", Usage(3, 4, 7)), latency_ms=5)
    assert not services.call_settle(
        opened=opened, response=_reply("hi", Usage(3, 4, 7)), latency_ms=5
    )
    period.refresh_from_db()
    assert (period.reserved_tokens, period.used_tokens) == (0, 7)


def test_the_sweep_gives_up_a_call_whose_web_process_died_and_releases_its_budget(alice):
    UserBudget.objects.create(user=alice, monthly_token_limit=100_000)
    opened = _open(alice)
    Completion.objects.filter(pk=opened.completion_id).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert completions.completions_sweep() == []  # never sent to a worker
    row = Completion.objects.get(pk=opened.completion_id)
    assert row.status == Completion.Status.FAILED and row.error_type == "abandoned"
    assert "web process" in row.error_message and row.budget_settled
    period = BudgetPeriod.objects.get(user=alice)
    assert (period.reserved_tokens, period.used_tokens) == (0, 0)
    # The process comes back to life and tries to save: nothing changes.
    assert not services.call_settle(opened=opened, response=_reply("late", None), latency_ms=1)
    assert Completion.objects.get(pk=opened.completion_id).status == Completion.Status.FAILED


def test_a_live_call_keeps_its_lease_while_it_runs(alice):
    opened = _open(alice)
    Completion.objects.filter(pk=opened.completion_id).update(
        lease_expires_at=timezone.now() + timedelta(seconds=1)
    )
    assert services.call_renew(opened=opened)
    row = Completion.objects.get(pk=opened.completion_id)
    assert row.lease_expires_at > timezone.now() + timedelta(seconds=60)


def test_upstream_failures_are_told_as_the_apis_own():
    timeout = protocol.RetryableError("slow", error_type="timeout")
    assert _upstream_error(timeout).status == 504
    refused_key = protocol.PermanentError("bad key", error_type="http_401", http_status=401)
    assert _upstream_error(refused_key).status == 502  # never the caller's own 401
    limited = protocol.RetryableError("slow down", error_type="rate_limited", http_status=429)
    assert _upstream_error(limited).status == 502
    rejected = protocol.PermanentError("too long", error_type="http_400", http_status=400)
    assert _upstream_error(rejected).status == 400


def test_staff_find_api_calls_by_their_words_and_reading_one_is_audited(client, alice, superuser):
    opened = _open(alice, HELLO.replace(b'"hi"', b'"the purple elephant"'))
    services.call_settle(
        opened=opened, response=_reply("a grey mouse", Usage(1, 1, 2)), latency_ms=1
    )
    other = _open(alice)
    services.call_settle(opened=other, response=_reply("nothing", Usage(1, 1, 2)), latency_ms=1)
    client.force_login(superuser)
    url = reverse("admin:conversations_completion_changelist")
    for words in ("purple elephant", "grey mouse"):
        listed = client.get(url, {"q": words, "source": "api"}).content.decode()
        assert f"/completion/{opened.completion_id}/change/" in listed
        assert f"/completion/{other.completion_id}/change/" not in listed
    page = client.get(reverse("admin:conversations_completion_change", args=[opened.completion_id]))
    text = page.content.decode()
    assert "the purple elephant" in text and "a grey mouse" in text
    event = AuditEvent.objects.get()
    assert event.actor == superuser and event.action == AuditEvent.Action.VIEW_API_CALL
    assert event.completion_ids == [opened.completion_id] and event.conversation_ids == []
    trail = client.get(
        reverse("admin:conversations_auditevent_changelist"), {"q": str(opened.completion_id)}
    ).content.decode()
    assert f"/completion/{opened.completion_id}/change/" in trail
