"""Streaming on the worker side: text lands as it is written, Stop cuts the upstream,
a broken stream is an error with its partial text kept."""

import threading
import uuid

import pytest

from conversations.chat import channel, tasks
from conversations.chat.services import completions
from conversations.chat.services import conversations as chat_services
from conversations.models import Completion, Message
from tests.support import wait_for


@pytest.fixture
def streaming_settings(settings):
    settings.UPSTREAM_STREAM = True
    settings.STREAM_STOP_CHECK_INTERVAL = 0.05
    return settings


def run_in_thread(completion_id: int) -> threading.Thread:
    def run():
        from django.db import connection

        try:
            tasks.run_completion(completion_id)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def reply_text(completion) -> str:
    row = Message.objects.filter(completion=completion, choice_index=0).first()
    return row.content if row else ""


@pytest.mark.django_db(transaction=True)
def test_the_first_words_are_saved_before_the_reply_is_complete(
    alice, simulator, enqueued, send, streaming_settings
):
    simulator.control(token_delay=0.1)
    conversation = chat_services.conversation_create(owner=alice)
    _, completion = send(conversation, "Write slowly please")
    thread = run_in_thread(completion.pk)
    wait_for(lambda: reply_text(completion), timeout=10, what="the first words")
    completion.refresh_from_db()
    assert completion.status == Completion.Status.RUNNING
    assert Message.objects.get(completion=completion).status == Message.Status.STREAMING
    thread.join(timeout=20)
    completion.refresh_from_db()
    reply = Message.objects.get(completion=completion)
    assert completion.status == Completion.Status.SUCCEEDED
    assert reply.status == Message.Status.COMPLETE
    assert reply.content.startswith("Simulated reply 1")
    # Usage came from the stream's final chunk, not an estimate.
    assert not completion.usage_estimated
    assert completion.total_tokens == completion.prompt_tokens + completion.completion_tokens


@pytest.mark.django_db(transaction=True)
def test_stop_closes_the_upstream_and_keeps_the_partial_text(
    alice, simulator, enqueued, send, streaming_settings
):
    simulator.control(token_delay=0.2)
    conversation = chat_services.conversation_create(owner=alice)
    _, completion = send(conversation, "Tell me a very long story")
    thread = run_in_thread(completion.pk)
    wait_for(lambda: reply_text(completion), timeout=10, what="the first words")
    chat_services.completion_stop(completion=completion)
    wait_for(
        lambda: simulator.stats()["streams_disconnected"] == 1,
        timeout=1.5,
        what="the simulator to see the connection close",
    )
    thread.join(timeout=10)
    completion.refresh_from_db()
    reply = Message.objects.get(completion=completion)
    assert completion.status == Completion.Status.SUCCEEDED
    assert completion.choices == [{"index": 0, "finish_reason": "stopped"}]
    assert reply.status == Message.Status.STOPPED
    assert reply.finish_reason == "stopped"
    assert reply.content and not reply.content.endswith(".")
    assert simulator.stats()["streams_completed"] == 0
    # The usage known so far is recorded, marked as an estimate.
    assert completion.usage_estimated
    assert completion.completion_tokens > 0


@pytest.mark.django_db(transaction=True)
def test_a_stopped_reply_continues_the_conversation(
    alice, simulator, enqueued, send, streaming_settings
):
    simulator.control(token_delay=0.2)
    conversation = chat_services.conversation_create(owner=alice)
    _, completion = send(conversation, "Start something")
    thread = run_in_thread(completion.pk)
    wait_for(lambda: reply_text(completion), timeout=10, what="the first words")
    chat_services.completion_stop(completion=completion)
    thread.join(timeout=10)
    partial = reply_text(completion)
    simulator.control(token_delay=0)
    send(conversation, "Go on")
    enqueued.drain()
    assert simulator.bodies()[-1]["messages"][1] == {"role": "assistant", "content": partial}


def test_stop_before_the_call_starts_means_it_never_starts(alice, simulator, enqueued, send):
    conversation = chat_services.conversation_create(owner=alice)
    _, completion = send(conversation, "Never mind")
    chat_services.completion_stop(completion=completion)
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.FAILED
    assert completion.error_type == "stopped"
    assert simulator.requests() == []


def test_a_broken_stream_is_an_error_with_its_partial_text(
    alice, simulator, enqueued, send, streaming_settings
):
    simulator.control(faults=[{"kind": "break_stream", "after_tokens": 4}])
    conversation = chat_services.conversation_create(owner=alice)
    _, completion = send(conversation, "Break please")
    enqueued.drain()
    completion.refresh_from_db()
    reply = Message.objects.get(completion=completion)
    assert completion.status == Completion.Status.FAILED
    assert completion.error_type == "stream_broken"
    assert completion.error_message
    assert reply.status == Message.Status.FAILED
    assert reply.content.startswith("Simulated reply")
    assert len(simulator.requests()) == 1  # not retried over the partial text
    # A failed partial reply is not sent as history, and Retry gets a whole one.
    assert chat_services.history(conversation) == [{"role": "user", "content": "Break please"}]


def test_a_stream_broken_before_any_text_is_retried(
    alice, simulator, enqueued, send, streaming_settings
):
    simulator.control(faults=[{"kind": "break_stream", "after_tokens": 0}])
    conversation = chat_services.conversation_create(owner=alice)
    _, completion = send(conversation, "Try again")
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.SUCCEEDED
    assert completion.attempts == 2
    assert Message.objects.filter(completion=completion).count() == 1


class Sweeper:
    """Another worker's beat: sweeps often and runs at once whatever the sweep re-sends."""

    def __init__(self, enqueued) -> None:
        self.enqueued = enqueued
        self.stop = threading.Event()
        self.outcomes: list[str] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        from django.db import connection

        try:
            while not self.stop.wait(0.1):
                completions.completions_sweep()
                while self.enqueued.calls:
                    completion_id, _ = self.enqueued.calls.pop(0)
                    self.outcomes.append(tasks.run_completion(completion_id))
        finally:
            connection.close()

    def __enter__(self) -> "Sweeper":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=20)


@pytest.mark.django_db(transaction=True)
def test_a_stream_longer_than_the_lease_keeps_its_claim_and_finishes_once(
    alice, simulator, enqueued, send, streaming_settings
):
    streaming_settings.COMPLETION_LEASE_SECONDS = 1.0
    # About 3 s of text: three leases long.
    simulator.control(token_delay=0.05, faults=[{"kind": "tokens", "tokens": 60}])
    conversation = chat_services.conversation_create(owner=alice)
    _, completion = send(conversation, "Write for a long while")
    enqueued.calls.clear()
    with Sweeper(enqueued) as sweeper:
        thread = run_in_thread(completion.pk)
        thread.join(timeout=30)
    completion.refresh_from_db()
    assert completion.status == Completion.Status.SUCCEEDED, completion.error_message
    assert completion.attempts == 1
    assert len(simulator.requests()) == 1  # never called twice in parallel
    assert sweeper.outcomes == []  # the sweep found nothing to take over
    assert Message.objects.get(completion=completion).content.count(" ") >= 59


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_lost_its_claim_stops_streaming_and_publishes_nothing(
    alice, simulator, enqueued, send, streaming_settings, monkeypatch
):
    streaming_settings.COMPLETION_LEASE_SECONDS = 0.6
    simulator.control(token_delay=0.05, faults=[{"kind": "tokens", "tokens": 200}])
    ends = []
    monkeypatch.setattr(
        channel.reply_channel(), "publish_end", lambda pk, status: ends.append(status)
    )
    conversation = chat_services.conversation_create(owner=alice)
    _, completion = send(conversation, "Write for a long while")
    outcome = []
    thread = threading.Thread(
        target=lambda: outcome.append(tasks.run_completion(completion.pk)), daemon=True
    )
    thread.start()
    wait_for(lambda: reply_text(completion), timeout=10, what="the first words")
    # Another worker took it over (as a sweep does once a lease has run out).
    Completion.objects.filter(pk=completion.pk).update(claim_token=uuid.uuid4())
    thread.join(timeout=10)
    assert outcome == ["lost"]
    assert ends == []  # no "done" for a reply this worker did not save
    wait_for(lambda: simulator.stats()["streams_disconnected"] == 1, timeout=5)
    completion.refresh_from_db()
    assert completion.status == Completion.Status.RUNNING  # the new holder's to finish


@pytest.mark.django_db(transaction=True)
def test_a_stream_that_never_ends_is_cut_at_the_time_limit_with_its_text_kept(
    alice, simulator, enqueued, send, streaming_settings
):
    streaming_settings.COMPLETION_MAX_SECONDS = 1.0
    simulator.control(token_delay=0.05, faults=[{"kind": "tokens", "tokens": 400}])
    conversation = chat_services.conversation_create(owner=alice)
    _, completion = send(conversation, "Never stop")
    enqueued.drain(timeout=20)
    completion.refresh_from_db()
    reply = Message.objects.get(completion=completion)
    assert completion.status == Completion.Status.FAILED
    assert completion.error_type == "time_limit"
    assert "1 seconds" in completion.error_message
    assert reply.status == Message.Status.FAILED
    assert reply.content.startswith("the model") and reply.content.count(" ") < 399
    assert completion.attempts == 1 and len(simulator.requests()) == 1
    wait_for(lambda: simulator.stats()["streams_disconnected"] == 1, timeout=5)


@pytest.mark.django_db(transaction=True)
def test_a_stream_outlives_a_database_away_for_a_while_and_keeps_its_claim(
    alice, simulator, enqueued, send, streaming_settings, monkeypatch
):
    """Found by the fault suite: a failed lease renewal killed the stop watcher, so the
    lease ran out under a live worker and the sweep could take the reply over."""
    from django.db import OperationalError

    streaming_settings.COMPLETION_LEASE_SECONDS = 0.9
    simulator.control(token_delay=0.05, faults=[{"kind": "tokens", "tokens": 60}])
    real = completions.completions_renew
    failures = []

    def renew_after_an_outage(*, claims):
        if len(failures) < 3:
            failures.append(1)
            raise OperationalError("the database is away")
        return real(claims=claims)

    monkeypatch.setattr(completions, "completions_renew", renew_after_an_outage)
    conversation = chat_services.conversation_create(owner=alice)
    _, completion = send(conversation, "Write for a while")
    enqueued.calls.clear()
    with Sweeper(enqueued) as sweeper:
        thread = run_in_thread(completion.pk)
        thread.join(timeout=30)
    completion.refresh_from_db()
    assert len(failures) == 3  # the renewal was tried again after each failure
    assert completion.status == Completion.Status.SUCCEEDED
    assert completion.attempts == 1 and len(simulator.requests()) == 1
    assert sweeper.outcomes == []
