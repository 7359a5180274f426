"""Parallel sends by one user, with workers saving replies meanwhile: one lock order, so
PostgreSQL never has a deadlock to break; if it ever does, the transaction is tried again,
and a send it still refuses says so (never a 500) (issue 13, defect 4)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError, connection

from conversations.chat.services import conversations as chat_services
from conversations.chat.services import results
from conversations.models import Completion, Message
from conversations.shared import transactions
from tests.http import logged_in_session, post
from tests.support import wait_for

SENDERS = 30
ROUNDS = 3


class Deadlock(Exception):
    sqlstate = "40P01"


def deadlock() -> OperationalError:
    error = OperationalError("deadlock detected")
    error.__cause__ = Deadlock()
    return error


def idle(conversation) -> bool:
    try:
        return not conversation.completions.filter(status__in=Completion.ACTIVE).exists()
    finally:
        connection.close()  # 30 threads here share this process's small pool


@pytest.mark.worker
@pytest.mark.parametrize(
    "live_stack_env",
    # Budgets on (their rows are locked too); the in-flight and per-minute limits out of
    # the way, so every send must go through.
    [
        {
            "BUDGET_MONTHLY_TOKENS": "1000000000",
            "MAX_REPLIES_IN_FLIGHT": "100",
            "MESSAGES_PER_MINUTE": "0",
        }
    ],
)
def test_thirty_parallel_sends_by_one_user_never_fail(postgresql, live_stack):
    User.objects.create_user("alice", password="alice-password-1")
    alice = User.objects.get(username="alice")
    conversations = [chat_services.conversation_create(owner=alice) for _ in range(SENDERS)]
    session = logged_in_session(live_stack.url, "alice", "alice-password-1")
    barrier = threading.Barrier(SENDERS)
    statuses: list[int] = []

    def sender(conversation) -> None:
        barrier.wait(timeout=30)
        for number in range(ROUNDS):
            # Each round's replies are being saved by the worker while the next sends go in.
            wait_for(lambda: idle(conversation), timeout=30, what="the previous reply")
            path = f"/c/{conversation.pk}/messages/"
            statuses.append(
                post(session, live_stack.url, path, content=f"round {number}").status_code
            )

    threads = [threading.Thread(target=sender, args=(c,)) for c in conversations]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    log = live_stack.web_log.read_text()
    assert Counter(statuses) == Counter({200: SENDERS * ROUNDS}), log[-3000:]
    assert "deadlock" not in log
    assert Message.objects.filter(role=Message.Role.USER).count() == SENDERS * ROUNDS


def test_a_transaction_broken_by_a_deadlock_is_tried_again(transactional_db):
    calls = []

    def work():
        calls.append(1)
        if len(calls) == 1:
            raise deadlock()
        return "done"

    assert transactions.atomic_with_retry(work) == "done"
    assert len(calls) == 2


def refuse(*args):
    raise deadlock()


def test_a_send_the_database_keeps_refusing_says_so_and_stores_nothing(
    alice, enqueued, monkeypatch
):
    conversation = chat_services.conversation_create(owner=alice)
    monkeypatch.setattr(chat_services, "_send", refuse)
    with pytest.raises(chat_services.Contended) as refused:
        chat_services.message_send(owner=alice, conversation_id=conversation.pk, content="hello")
    assert refused.value.message_dict == {
        "content": ["The server is busy and did not send your message. Try again."]
    }
    assert not Message.objects.exists()


def test_the_composer_shows_a_refused_send_with_its_text(alice, client, enqueued, monkeypatch):
    client.force_login(alice)
    conversation = chat_services.conversation_create(owner=alice)
    monkeypatch.setattr(chat_services, "_send", refuse)
    response = client.post(
        f"/c/{conversation.pk}/messages/", {"content": "keep me"}, HTTP_HX_REQUEST="true"
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "The server is busy and did not send your message. Try again." in page
    assert "keep me" in page


@pytest.mark.django_db(transaction=True)
def test_a_worker_whose_save_meets_a_deadlock_saves_on_the_next_try(
    alice, simulator, enqueued, send, monkeypatch
):
    conversation = chat_services.conversation_create(owner=alice)
    _, completion = send(conversation, "hello")
    real = results.store_choices
    calls = []

    def store_once_broken(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise deadlock()
        return real(*args, **kwargs)

    monkeypatch.setattr(results, "store_choices", store_once_broken)
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.SUCCEEDED
    assert completion.attempts == 1 and len(simulator.requests()) == 1  # not called again
    assert Message.objects.filter(completion=completion).count() == 1


def test_a_send_while_the_database_is_unreachable_says_so(alice, enqueued, monkeypatch):
    conversation = chat_services.conversation_create(owner=alice)

    def unreachable(*args):
        raise OperationalError("connection refused")

    monkeypatch.setattr(chat_services, "_send", unreachable)
    with pytest.raises(chat_services.Contended) as refused:
        chat_services.message_send(owner=alice, conversation_id=conversation.pk, content="hello")
    assert refused.value.message_dict == {
        "content": ["The server could not store your message just now. Try again in a moment."]
    }
