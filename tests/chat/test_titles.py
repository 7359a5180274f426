"""Titles made by the model after a conversation's first reply (issue 17): a short call
of its own, on the worker, counted in usage as a title call; the first words stay the
title until it answers, whenever it fails, and once the person renamed it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import models
from django.urls import reverse
from django.utils import timezone

from conversations.billing import budgets
from conversations.chat import replies, selectors, tasks
from conversations.chat.services import conversations as chat_services
from conversations.chat.services import titles
from conversations.models import Completion, Conversation, ModelPrice, SiteSettings, UserBudget
from conversations.usage import reports
from tests.http import HTMX

NAMED = "Lisbon in a week."  # what the title call answers (a full stop it drops)


@pytest.fixture(autouse=True)
def _titles_on(settings):
    settings.MODEL_TITLES = True


@pytest.fixture
def chat(alice):
    return chat_services.conversation_create(owner=alice)


def answer_title_with(simulator, text: str) -> None:
    # The first call is the reply, the second the title call.
    simulator.control(faults=[{}, {"kind": "content", "content": text}])


def first_reply(send, enqueued, chat, text="Plan a week in Lisbon for me"):
    _message, completion = send(chat, text)
    completion_id, _ = enqueued.calls.pop(0)
    tasks.run_completion(completion_id)
    return Completion.objects.get(pk=completion.pk)


def test_the_first_reply_is_followed_by_a_title_call_that_names_the_conversation(
    chat, send, enqueued, simulator
):
    answer_title_with(simulator, NAMED)
    reply = first_reply(send, enqueued, chat)
    chat.refresh_from_db()
    assert chat.title == "Plan a week in Lisbon for me"  # the first words, until it answers
    assert enqueued.titles == [reply.pk]

    enqueued.drain()

    chat.refresh_from_db()
    assert chat.title == "Lisbon in a week"
    assert chat.title_is_auto
    call = Completion.objects.get(purpose=Completion.Purpose.TITLE)
    assert call.status == Completion.Status.SUCCEEDED
    assert call.total_tokens and call.request_message_id == reply.request_message_id
    body = simulator.bodies()[-1]
    assert body["messages"][0] == {"role": "system", "content": titles.PROMPT}
    assert "Plan a week in Lisbon" in body["messages"][1]["content"]
    assert body["max_tokens"] == titles.MAX_TOKENS and not body.get("stream")


def test_the_title_call_is_counted_in_usage_and_the_budget(alice, chat, send, enqueued, simulator):
    ModelPrice.objects.create(
        model=chat.model,
        prompt_price_per_million=Decimal("1"),
        completion_price_per_million=Decimal("2"),
        valid_from=timezone.now() - timedelta(days=1),
    )
    answer_title_with(simulator, NAMED)
    first_reply(send, enqueued, chat)
    enqueued.drain()

    call = Completion.objects.get(purpose=Completion.Purpose.TITLE)
    assert call.cost and call.cost > 0
    today = timezone.localdate()
    summary = reports.user_summary(alice.pk, today, today)
    assert summary["requests"] == 2 and summary["title_calls"] == 1
    every = Completion.objects.filter(user=alice)
    assert budgets.period_usage(alice.pk).used_tokens == sum(c.total_tokens for c in every)


def test_the_usage_page_says_how_many_requests_were_title_calls(
    alice_client, chat, send, enqueued, simulator
):
    first_reply(send, enqueued, chat)
    enqueued.drain()
    page = alice_client.get(reverse("usage_mine")).content.decode()
    assert "1 of these requests was a title call" in page


def test_a_rename_before_the_title_call_ends_is_kept(chat, send, enqueued, simulator):
    answer_title_with(simulator, NAMED)
    first_reply(send, enqueued, chat)
    chat_services.conversation_rename(conversation=chat, title="My own title")

    enqueued.drain()

    chat.refresh_from_db()
    assert chat.title == "My own title"
    assert not Completion.objects.filter(purpose=Completion.Purpose.TITLE).exists()


def test_only_the_first_reply_makes_a_title_call(chat, send, enqueued, simulator):
    first_reply(send, enqueued, chat)
    enqueued.drain()
    send(chat, "And the next day?")
    enqueued.drain()
    assert Completion.objects.filter(purpose=Completion.Purpose.TITLE).count() == 1
    assert enqueued.titles == []


@pytest.mark.parametrize("off", ["site", "deployment"])
def test_titles_turned_off_keep_the_first_words_and_make_no_call(
    chat, send, enqueued, simulator, settings, off
):
    if off == "site":
        SiteSettings.objects.update_or_create(pk=1, defaults={"model_titles": False})
    else:
        settings.MODEL_TITLES = False
    first_reply(send, enqueued, chat)
    enqueued.drain()
    chat.refresh_from_db()
    assert chat.title == "Plan a week in Lisbon for me"
    assert enqueued.titles == []
    assert len(simulator.bodies()) == 1


def test_a_failed_title_call_keeps_the_first_words_and_is_recorded(chat, send, enqueued, simulator):
    simulator.control(faults=[{}, {"status": 500, "message": "boom"}])
    first_reply(send, enqueued, chat)
    enqueued.drain()

    chat.refresh_from_db()
    assert chat.title == "Plan a week in Lisbon for me"
    call = Completion.objects.get(purpose=Completion.Purpose.TITLE)
    assert call.status == Completion.Status.FAILED and call.http_status == 500
    assert len(simulator.bodies()) == 2  # no retry: the first words are a fine title
    # The page shows the reply, not the failed title call.
    assert selectors.transcript(chat).failed is None


def test_a_title_call_delivered_twice_calls_once(chat, send, enqueued, simulator):
    reply = first_reply(send, enqueued, chat)
    tasks.title_conversation(reply.pk)
    tasks.title_conversation(reply.pk)
    assert Completion.objects.filter(purpose=Completion.Purpose.TITLE).count() == 1


def test_no_title_call_over_budget(alice, chat, send, enqueued, simulator):
    reply = first_reply(send, enqueued, chat)
    UserBudget.objects.create(user=alice, monthly_token_limit=reply.total_tokens)
    enqueued.drain()
    assert not Completion.objects.filter(purpose=Completion.Purpose.TITLE).exists()


def test_the_pages_urls_do_not_act_on_a_title_call(alice_client, chat, send, enqueued, simulator):
    simulator.control(faults=[{}, {"status": 500}])
    first_reply(send, enqueued, chat)
    enqueued.drain()
    call = Completion.objects.get(purpose=Completion.Purpose.TITLE)
    retry = reverse("completion_retry", args=[chat.pk, call.pk])
    assert alice_client.post(retry, **HTMX).status_code == 404
    poll = reverse("completion_poll", args=[chat.pk, call.pk])
    assert alice_client.get(poll, **HTMX).status_code == 404


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ('"Lisbon in a week."', "Lisbon in a week"),
        ("Title: Tides explained\nSecond line", "Tides explained"),
        ("《潮汐的原理》。", "潮汐的原理"),
        ("\n\n**Bold title**", "Bold title"),
        ("word " * 40, " ".join(["word"] * 12)),
        ("", ""),
    ],
)
def test_the_answer_is_cleaned_into_a_title(text, title):
    assert titles.clean_title(text) == title


# --- The page: the ended first reply asks for the title until the call has ended ---


def test_the_ended_first_reply_asks_for_the_title_and_later_ones_do_not(
    chat, send, enqueued, simulator
):
    reply = first_reply(send, enqueued, chat)
    assert "title-watch" in replies.render_ended(None, reply)
    enqueued.drain()
    send(chat, "Next")
    enqueued.drain()
    later = Completion.objects.filter(purpose=Completion.Purpose.REPLY).latest("pk")
    assert "title-watch" not in replies.render_ended(None, later)


def test_the_title_url_waits_then_gives_the_title_out_of_band(
    alice_client, chat, send, enqueued, simulator
):
    answer_title_with(simulator, NAMED)
    first_reply(send, enqueued, chat)
    url = reverse("conversation_title", args=[chat.pk])
    assert alice_client.get(url, **HTMX).status_code == 204  # still to come

    enqueued.drain()

    response = alice_client.get(url, **HTMX)
    page = response.content.decode()
    assert response.status_code == 286  # htmx stops asking
    assert '<span id="conversation-title-text" hx-swap-oob="true">Lisbon in a week</span>' in page
    assert "<title>Lisbon in a week · chatsite</title>" in page


def test_the_title_url_stops_waiting_for_a_lost_call(alice_client, chat, send, enqueued, clock):
    reply = first_reply(send, enqueued, chat)
    Completion.objects.filter(pk=reply.pk).update(finished_at=timezone.now() - timedelta(minutes=5))
    url = reverse("conversation_title", args=[chat.pk])
    assert alice_client.get(url, **HTMX).status_code == 286


def test_the_title_url_is_the_owners_only(client, bob, chat):
    client.force_login(bob)
    assert client.get(reverse("conversation_title", args=[chat.pk]), **HTMX).status_code == 404


def test_rows_inserted_by_code_older_than_the_new_columns_get_their_defaults(alice):
    """A rolling deploy: a web process still on the old code inserts without the columns."""
    from django.db import connection

    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO conversations_conversation (owner_id, title, model, system_prompt,"
            " stop, created_at, last_activity_at, flagged, review_note)"
            " VALUES (%s, 'old', 'gpt-4o-mini', '', '[]', %s, %s, %s, '')",
            [alice.pk, now, now, False],
        )
    assert Conversation.objects.get(title="old").title_is_auto is True
    for model, name in ((Completion, "purpose"), (SiteSettings, "max_choices")):
        assert model._meta.get_field(name).db_default is not models.NOT_PROVIDED
