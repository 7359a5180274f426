"""The worker process's one stream watch (issue 15): leases renewed in one statement for
every call, stops heard or found in one read, one thread however many calls run."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.chat import channel
from conversations.chat.services import completions, watch
from conversations.chat.services import conversations as chat_services
from conversations.models import Completion, Message
from tests.support import wait_for

from .test_streaming_worker import run_in_thread


def claims(alice, send, count: int) -> list[completions.Claim]:
    found = []
    for index in range(count):
        conversation = chat_services.conversation_create(owner=alice)
        _, completion = send(conversation, f"Question {index}")
        found.append(completions.completion_claim(completion_id=completion.pk))
    return found


def statements(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]


@pytest.mark.django_db
def test_one_look_renews_every_lease_due_in_one_statement_and_cuts_a_lost_call(
    alice, send, enqueued, settings
):
    settings.COMPLETION_LEASE_SECONDS = 30
    held = claims(alice, send, 3)
    Completion.objects.update(lease_expires_at=timezone.now() + timedelta(seconds=1))
    # Another worker took the third over (its lease had run out, say).
    Completion.objects.filter(pk=held[2].completion.pk).update(claim_token=None)
    looked = watch.Watch()
    calls = [watch.Watched(claim, stream=True) for claim in held]
    for call in calls:
        call.renewed -= 11  # a third of the lease ago
    with CaptureQueriesContext(connection) as queries:
        looked.look(calls)
    [renew, *rest] = statements(queries)
    assert renew.startswith("UPDATE") and "RETURNING" in renew
    # One read for all the streams' stop flags: a query, or with Redis one MGET.
    assert len(rest) == (0 if settings.REDIS_URL else 1), rest
    leases = dict(Completion.objects.values_list("pk", "lease_expires_at"))
    for call in calls[:2]:
        assert leases[call.pk] > timezone.now() + timedelta(seconds=25)
        assert not call.stop.is_set()
    assert calls[2].lost and calls[2].stop.is_set()


@pytest.mark.django_db
def test_a_look_stops_the_streams_asked_to_stop_and_no_others(alice, send, enqueued):
    held = claims(alice, send, 3)
    chat_services.completion_stop(completion=held[1].completion)
    calls = [watch.Watched(claim, stream=True) for claim in held]
    watch.Watch().look(calls)
    assert [call.stop.is_set() for call in calls] == [False, True, False]
    assert not calls[1].lost and not calls[1].timed_out


@pytest.mark.django_db
def test_a_look_cuts_a_stream_at_the_time_limit(alice, send, enqueued, settings):
    settings.COMPLETION_MAX_SECONDS = 60
    [claim] = claims(alice, send, 1)
    call = watch.Watched(claim, stream=True)
    call.started -= 61
    watch.Watch().look([call])
    assert call.timed_out and call.stop.is_set()


@pytest.mark.django_db(transaction=True)
def test_streams_at_once_share_one_watch_thread_and_a_stop_ends_only_its_own(
    alice, simulator, enqueued, send, settings
):
    settings.UPSTREAM_STREAM = True
    settings.STREAM_STOP_CHECK_INTERVAL = 0.05
    simulator.control(token_delay=0.05, faults=[{"kind": "tokens", "tokens": 80}])
    sent = []
    for index in range(3):
        conversation = chat_services.conversation_create(owner=alice)
        sent.append(send(conversation, f"Stream {index}")[1])
    runs = [run_in_thread(completion.pk) for completion in sent]
    wait_for(lambda: len(watch._watch.calls) == 3, timeout=10, what="three calls being watched")
    watchers = [t for t in threading.enumerate() if t.name == "stream-watch"]
    assert len(watchers) == 1
    chat_services.completion_stop(completion=Completion.objects.get(pk=sent[0].pk))
    for run in runs:
        run.join(timeout=30)
    statuses = [Completion.objects.get(pk=c.pk).status for c in sent]
    assert statuses == [Completion.Status.SUCCEEDED] * 3
    replies = [Message.objects.get(completion_id=c.pk).status for c in sent]
    assert replies == [Message.Status.STOPPED] + [Message.Status.COMPLETE] * 2
    assert watch._watch.calls == []


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="stop messages need Redis")
def test_a_stop_request_is_heard_as_a_message():
    live = channel.reply_channel()
    listener = live.stop_listener()
    try:
        listener.wait(0.1)  # the subscription's own confirmation
        live.request_stop(424242)
        heard = set()
        wait_for(lambda: heard.update(listener.wait(0.2)) or 424242 in heard, timeout=5)
        assert live.stops_requested([424242, 424243]) == {424242}
    finally:
        listener.close()
