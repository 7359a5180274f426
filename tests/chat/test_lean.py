"""The reply's path in few statements (issue 15): a send, the worker's claim and its save
are counted here, so a change that adds a query to them shows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.billing import budgets
from conversations.chat.services import attempts, completions, results
from conversations.chat.services import conversations as chat_services
from conversations.models import BudgetPeriod, Completion, Message
from tests.http import HTMX


def _statements(queries: CaptureQueriesContext) -> list[str]:
    # The test runs in a transaction of its own: the service's is a savepoint here, and in
    # production a plain transaction (its BEGIN and COMMIT are not statements Django logs).
    return [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]


@pytest.fixture
def cached_sessions(settings):
    # As in production (REDIS_URL set): sessions come from the cache, not a query.
    settings.SESSION_ENGINE = "conversations.accounts.sessions"


def test_a_send_takes_seven_statements(
    alice, cached_sessions, enqueued, django_capture_on_commit_callbacks
):
    client = Client()
    client.force_login(alice)
    conversation = chat_services.conversation_create(owner=alice)
    client.get(f"/c/{conversation.pk}/")
    with (
        django_capture_on_commit_callbacks(execute=True),
        CaptureQueriesContext(connection) as queries,
    ):
        response = client.post(f"/c/{conversation.pk}/messages/", {"content": "hi"}, **HTMX)
    assert response.status_code == 200 and "reply-pending" in response.content.decode()
    statements = _statements(queries)
    assert len(statements) <= 7, "\n".join(statements)
    assert enqueued.calls


def _one_reply(alice, send, settings, enqueued):
    settings.UPSTREAM_STREAM = False
    conversation = chat_services.conversation_create(owner=alice)
    _, completion = send(conversation, "Count my statements")
    enqueued.calls.clear()
    # The month's budget row exists, as after the month's first reply.
    BudgetPeriod.objects.create(user=alice, month=budgets.month_of(timezone.now()))
    return completion


def test_the_claim_is_one_statement(alice, send, settings, enqueued, simulator):
    completion = _one_reply(alice, send, settings, enqueued)
    with CaptureQueriesContext(connection) as queries:
        claim = completions.completion_claim(completion_id=completion.pk)
    assert claim is not None and claim.completion.attempts == 1
    assert claim.completion.status == Completion.Status.RUNNING
    assert len(_statements(queries)) == 1, _statements(queries)
    assert completions.completion_claim(completion_id=completion.pk) is None  # held now


def test_the_reply_is_saved_in_one_transaction_of_at_most_six_statements(
    alice, send, settings, enqueued, simulator
):
    completion = _one_reply(alice, send, settings, enqueued)
    claim = completions.completion_claim(completion_id=completion.pk)
    with CaptureQueriesContext(connection) as queries:
        assert attempts.completion_attempt(claim=claim) == completions.Outcome.SUCCEEDED
    statements = _statements(queries)
    assert len(statements) <= 6, "\n".join(statements)
    completion.refresh_from_db()
    assert completion.status == Completion.Status.SUCCEEDED and completion.budget_settled
    [reply] = Message.objects.filter(completion=completion)
    assert reply.position == 1 and reply.is_selected and reply.html
    period = BudgetPeriod.objects.get(user=alice)
    assert period.used_tokens == completion.total_tokens and period.reserved_tokens == 0


def test_a_short_streamed_reply_writes_no_rows_before_its_save(
    alice, send, settings, enqueued, simulator, monkeypatch
):
    settings.UPSTREAM_STREAM = True
    settings.STREAM_DB_FLUSH_INTERVAL = 60
    conversation = chat_services.conversation_create(owner=alice)
    _, completion = send(conversation, "A short one")
    prepared = []
    monkeypatch.setattr(results, "rows_prepare", lambda **kwargs: prepared.append(1) or {0: 0})
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.SUCCEEDED
    assert prepared == []
    assert Message.objects.filter(completion=completion).count() == 1
