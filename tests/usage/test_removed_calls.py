"""Usage outlives the rows of its calls: deleting a conversation folds what its calls used
into daily rows, and every report gives the same figures before and after."""

from __future__ import annotations

from django.db import transaction
from django.urls import reverse

from conversations.billing.usage_days import usage_fold
from conversations.chat.services import conversations as chat_services
from conversations.models import Completion, Conversation, UsageDay
from conversations.usage import reports
from tests.factories import csv_rows
from tests.usage.helpers import DAY1, DAY2, at, chat


def every_report(alice, bob) -> dict:
    return {
        "alice": reports.user_summary(alice.pk, DAY1, DAY2),
        "bob": reports.user_summary(bob.pk, DAY1, DAY2),
        "alice_days": reports.per_day(alice.pk, DAY1, DAY2),
        "alice_models": reports.per_model(alice.pk, DAY1, DAY2),
        "all": reports.all_users(DAY1, DAY2),
        "all_models": reports.all_users(DAY1, DAY2, by_model=True),
        "total": reports.all_users_total(DAY1, DAY2),
    }


def test_deleting_a_conversation_changes_no_report(history, alice, bob, client, charlie):
    client.force_login(charlie)
    csv_url = reverse("usage_all_csv") + f"?start={DAY1}&end={DAY2}&by=model"
    before, csv_before = every_report(alice, bob), csv_rows(client.get(csv_url))
    assert before["alice"]["requests"] == 4

    conversation = history["a1"].conversation
    chat_services.conversation_delete(conversation=conversation)

    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Completion.objects.filter(conversation_id=conversation.pk).exists()
    assert UsageDay.objects.filter(user=alice).exists()
    assert every_report(alice, bob) == before
    assert csv_rows(client.get(csv_url)) == csv_before


def test_a_removed_call_and_a_stored_one_of_a_day_make_one_row(history, alice, bob):
    before = reports.per_day(alice.pk, DAY1, DAY2)
    day2 = next(row for row in before if row["day"] == DAY2)
    assert day2["requests"] == 2  # a3 and a4, in two conversations
    chat_services.conversation_delete(conversation=history["a4"].conversation)
    after = reports.per_day(alice.pk, DAY1, DAY2)
    assert after == before
    assert len([row for row in after if row["day"] == DAY2]) == 1


def test_folding_twice_into_a_day_adds_up(history, alice, bob, send, enqueued):
    another = chat_services.conversation_create(owner=alice, model="gpt-4o-mini")
    chat(send, enqueued, another, "/echo more", on=at(DAY1, 10))
    before = every_report(alice, bob)
    chat_services.conversation_delete(conversation=another)
    chat_services.conversation_delete(conversation=history["a1"].conversation)
    assert UsageDay.objects.filter(user=alice, day=DAY1, model="gpt-4o-mini").count() == 1
    assert every_report(alice, bob) == before


def test_anonymous_usage_keeps_totals_without_a_name(history, alice, bob, client, charlie):
    before = reports.all_users_total(DAY1, DAY2)
    bobs_calls = Completion.objects.filter(user=bob)
    with transaction.atomic():
        usage_fold(completions=bobs_calls, anonymous=True)
        bobs_calls.delete()
    assert reports.all_users_total(DAY1, DAY2) == before
    rows = reports.all_users(DAY1, DAY2)
    gone = [row for row in rows if row["user_id"] is None]
    assert len(gone) == 1 and gone[0]["requests"] == 1 and gone[0]["username"] == ""

    client.force_login(charlie)
    page = client.get(reverse("usage_all") + f"?start={DAY1}&end={DAY2}")
    assert "Deleted accounts" in page.content.decode()
    assert bob.username not in page.content.decode()
    csv = csv_rows(client.get(reverse("usage_all_csv") + f"?start={DAY1}&end={DAY2}"))
    assert [row[0] for row in csv if row[0] == "Deleted accounts"] == ["Deleted accounts"]
