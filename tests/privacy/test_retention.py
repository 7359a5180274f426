"""Retention: idle conversations, expired temporary chats and old API calls are deleted by
the beat task in small batches, each its own transaction, and every usage figure, budget
and report total stays what it was. Flagged chats and chats being answered are kept."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import connection, connections, transaction
from django.urls import reverse
from django.utils import timezone

from chatsite.celery import app as celery_app
from conversations.billing import budgets
from conversations.models import (
    ApiKey,
    AuditEvent,
    BudgetPeriod,
    Completion,
    Conversation,
    GroupRetention,
    Message,
    SiteSettings,
    UsageDay,
)
from conversations.privacy import retention, tasks
from conversations.usage import reports
from tests.factories import csv_rows

OLD = timedelta(days=100)


def set_retention(days: int | None) -> None:
    SiteSettings.objects.update_or_create(pk=1, defaults={"retention_days": days})


def old_conversations(owner, count: int, *, age: timedelta = OLD, **fields) -> list[int]:
    """`count` conversations last active `age` ago, each with a question and a priced
    reply's call (bulk inserts: ten thousand in a second or two)."""
    when = timezone.now() - age
    chats = Conversation.objects.bulk_create(
        Conversation(
            owner=owner,
            model="gpt-4o-mini",
            title=f"old {i}",
            last_activity_at=when,
            created_at=when,
            **fields,
        )
        for i in range(count)
    )
    questions = Message.objects.bulk_create(
        Message(
            conversation=chat,
            role="user",
            content=f"question {chat.pk}",
            position=0,
            created_at=when,
        )
        for chat in chats
    )
    calls = Completion.objects.bulk_create(
        Completion(
            conversation=chat,
            user=owner,
            request_message=question,
            model="gpt-4o-mini",
            status=Completion.Status.SUCCEEDED,
            request_body={"messages": []},
            prompt_tokens=10,
            completion_tokens=5,
            total_tokens=15,
            cost=Decimal("0.00001"),
            currency="USD",
            queued_at=when,
            finished_at=when,
        )
        for chat, question in zip(chats, questions, strict=True)
    )
    Message.objects.bulk_create(
        Message(
            conversation=chat,
            role="assistant",
            content=f"answer {chat.pk}",
            position=1,
            parent=question,
            completion=call,
            choice_index=0,
            created_at=when,
        )
        for chat, question, call in zip(chats, questions, calls, strict=True)
    )
    return [chat.pk for chat in chats]


def report_figures(users) -> dict:
    start = (timezone.now() - OLD - timedelta(days=2)).date()
    end = timezone.localdate()
    return {
        "total": reports.all_users_total(start, end),
        "users": reports.all_users(start, end, by_model=True),
        **{user.username: reports.per_day(user.pk, start, end, fill=False) for user in users},
    }


class Batches(list):
    """How many conversations each batch deleted, and whether each started outside any
    transaction (so that it commits on its own)."""

    alone: list[bool]


@pytest.fixture
def batches(monkeypatch) -> Batches:
    deleted = Batches()
    deleted.alone = []
    real = retention.conversations_batch

    def spy(*, candidates, size):
        deleted.alone.append(not connection.in_atomic_block)
        before = Conversation.objects.count()
        counts = real(candidates=candidates, size=size)
        assert before - Conversation.objects.count() == counts["conversations"]
        deleted.append(counts["conversations"])
        return counts

    monkeypatch.setattr(retention, "conversations_batch", spy)
    return deleted


@pytest.mark.django_db(transaction=True)
def test_a_purge_of_ten_thousand_goes_in_batches_and_keeps_every_total(
    alice, bob, charlie, client, batches
):
    old = old_conversations(alice, 9_000) + old_conversations(bob, 1_000)
    recent = old_conversations(alice, 3, age=timedelta(days=5))
    flagged = old_conversations(bob, 2, flagged=True)
    for user in (alice, bob):
        BudgetPeriod.objects.create(
            user=user, month=budgets.month_of(timezone.now()), used_tokens=500, used_cost=1
        )
    set_retention(30)
    client.force_login(charlie)
    start = (timezone.now() - OLD - timedelta(days=2)).date()
    csv_url = reverse("usage_all_csv") + f"?start={start}&end={timezone.localdate()}&by=model"
    before, csv_before = report_figures([alice, bob]), csv_rows(client.get(csv_url))
    budgets_before = [budgets.budget_status(user.pk) for user in (alice, bob)]

    done = retention.retention_purge(batch_size=500, max_batches=100)

    assert done.conversations == len(old) and not done.unfinished
    assert max(batches) <= 500 and sum(batches) == len(old)
    assert all(batches.alone), "a batch ran inside a larger transaction"
    assert len([n for n in batches if n]) == len(old) // 500
    assert not Conversation.objects.filter(pk__in=old).exists()
    assert not Message.objects.filter(conversation_id__in=old).exists()
    assert not Completion.objects.filter(conversation_id__in=old).exists()
    assert set(Conversation.objects.values_list("pk", flat=True)) == {*recent, *flagged}
    assert report_figures([alice, bob]) == before
    assert csv_rows(client.get(csv_url)) == csv_before
    assert [budgets.budget_status(user.pk) for user in (alice, bob)] == budgets_before
    event = AuditEvent.objects.get(action=AuditEvent.Action.RETENTION_PURGE)
    assert event.actor is None
    assert event.details["conversations"] == len(old)
    assert event.details["messages"] == 2 * len(old)
    assert "question" not in str(event.details)


def test_nothing_goes_while_retention_is_off(alice):
    kept = old_conversations(alice, 5, age=timedelta(days=3650))
    set_retention(None)
    done = retention.retention_purge()
    assert done.conversations == 0
    assert Conversation.objects.filter(pk__in=kept).count() == 5
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.RETENTION_PURGE).exists()


def test_flagged_conversations_are_kept_until_unflagged(alice):
    [flagged] = old_conversations(alice, 1, flagged=True)
    set_retention(30)
    retention.retention_purge()
    assert Conversation.objects.filter(pk=flagged).exists()
    Conversation.objects.filter(pk=flagged).update(flagged=False)
    retention.retention_purge()
    assert not Conversation.objects.filter(pk=flagged).exists()


def test_a_chat_being_answered_waits_for_its_reply(alice):
    [chat] = old_conversations(alice, 1)
    Completion.objects.filter(conversation_id=chat).update(status=Completion.Status.RUNNING)
    set_retention(30)
    retention.retention_purge()
    assert Conversation.objects.filter(pk=chat).exists()


def test_a_stopped_run_is_taken_up_by_the_next(alice, batches):
    old = old_conversations(alice, 10)
    set_retention(30)
    first = retention.retention_purge(batch_size=3, max_batches=2)
    assert first.unfinished and first.conversations == 6
    assert Conversation.objects.filter(pk__in=old).count() == 4
    second = retention.retention_purge(batch_size=3, max_batches=10)
    assert not second.unfinished and second.conversations == 4
    assert [n for n in batches if n] == [3, 3, 3, 1]
    assert not Conversation.objects.filter(pk__in=old).exists()


def test_old_api_calls_go_and_their_usage_stays(alice):
    key = ApiKey.objects.create(user=alice, name="script", prefix="abc", salt="s", hashed="x" * 64)
    when = timezone.now() - OLD
    call = Completion.objects.create(
        user=alice,
        source=Completion.Source.API,
        api_key=key,
        model="gpt-4o-mini",
        status=Completion.Status.SUCCEEDED,
        request_body={"messages": [{"content": "hi"}]},
        choices=[{"index": 0, "message": {"content": "secret answer"}}],
        prompt_tokens=3,
        completion_tokens=4,
        total_tokens=7,
        queued_at=when,
    )
    start, end = (when - timedelta(days=1)).date(), timezone.localdate()
    before = reports.user_summary(alice.pk, start, end)
    set_retention(30)
    done = retention.retention_purge()
    assert done.api_calls == 1
    assert not Completion.objects.filter(pk=call.pk).exists()
    assert UsageDay.objects.get(user=alice).total_tokens == 7
    assert reports.user_summary(alice.pk, start, end) == before


def test_a_temporary_chat_goes_a_day_after_its_last_message(alice, settings):
    settings.TEMPORARY_CHAT_HOURS = 24
    [temporary] = old_conversations(alice, 1, age=timedelta(0), temporary="day")
    [kept] = old_conversations(alice, 1, age=timedelta(0))
    later = timezone.now()
    assert retention.retention_purge(now=later + timedelta(hours=23)).conversations == 0
    assert Conversation.objects.filter(pk=temporary).exists()
    done = retention.retention_purge(now=later + timedelta(hours=25))
    assert done.conversations == done.temporary == 1
    assert not Conversation.objects.filter(pk=temporary).exists()
    assert Conversation.objects.filter(pk=kept).exists()


def test_the_beat_schedule_runs_the_purge(alice, settings):
    schedule = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "conversations.tasks.retention_purge" in schedule
    assert "conversations.tasks.retention_purge" in celery_app.tasks
    old_conversations(alice, 2)
    set_retention(30)
    assert tasks.retention_purge() == "2 conversations, 0 API calls"
    assert not Conversation.objects.filter(owner=alice).exists()


@pytest.mark.postgres
def test_a_row_held_elsewhere_is_skipped_not_waited_on(postgresql, alice):
    """A page or worker holding a conversation's row never blocks the purge: the batch
    takes the others (SKIP LOCKED) and the held one goes on a later run."""
    held, *_others = old_conversations(alice, 4)
    set_retention(30)
    locked = threading.Event()
    release = threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                Conversation.objects.select_for_update().get(pk=held)
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        done = retention.retention_purge(batch_size=10)
        assert done.conversations == 3
        assert list(Conversation.objects.values_list("pk", flat=True)) == [held]
    finally:
        release.set()
        holder.join(10)
    assert retention.retention_purge().conversations == 1


# --- Retention per group (accounts.GroupRetention) ---


def test_a_groups_retention_replaces_the_sites_for_its_members(alice, bob, charlie, superuser):
    legal = Group.objects.create(name="legal")  # keeps its chats
    short = Group.objects.create(name="interns")  # 7 days
    GroupRetention.objects.create(group=legal, retention_days=None)
    GroupRetention.objects.create(group=short, retention_days=7)
    legal.user_set.add(bob, superuser)
    short.user_set.add(charlie, superuser)  # superuser: in both, the longest keeps
    set_retention(30)
    ten = {
        user: old_conversations(user, 1, age=timedelta(days=10))
        for user in (alice, bob, charlie, superuser)
    }
    forty = {
        user: old_conversations(user, 1, age=timedelta(days=40))
        for user in (alice, bob, charlie, superuser)
    }
    done = retention.retention_purge()
    left = set(Conversation.objects.values_list("pk", flat=True))
    # Alice (no such group): the site's 30 days. Bob: kept. Charlie: 7 days.
    assert set(ten[alice]) <= left and not set(forty[alice]) & left
    assert set(ten[bob] + forty[bob]) <= left
    assert not set(ten[charlie] + forty[charlie]) & left
    assert set(ten[superuser] + forty[superuser]) <= left
    assert done.conversations == 3
    assert (
        AuditEvent.objects.get(action=AuditEvent.Action.RETENTION_PURGE).details["group_rules"] == 1
    )
    # With the site keeping everything, the 7-day group still goes by its own rule.
    set_retention(None)
    again = old_conversations(charlie, 1, age=timedelta(days=8))
    kept = old_conversations(alice, 1, age=timedelta(days=400))
    retention.retention_purge()
    assert not Conversation.objects.filter(pk__in=again).exists()
    assert Conversation.objects.filter(pk__in=kept).exists()


def test_the_privacy_page_states_the_persons_own_retention(client, alice, bob):
    set_retention(30)
    short = Group.objects.create(name="interns")
    GroupRetention.objects.create(group=short, retention_days=7)
    short.user_set.add(bob)
    client.force_login(alice)
    assert "deleted after 30 days" in client.get(reverse("privacy")).content.decode()
    client.force_login(bob)
    assert "deleted after 7 days" in client.get(reverse("privacy")).content.decode()
