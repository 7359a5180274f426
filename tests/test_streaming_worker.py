"""Streaming on the worker side: text lands as it is written, Stop cuts the upstream,
a broken stream is an error with its partial text kept."""

import threading

import pytest

from conversations import services, tasks
from conversations.models import Completion, Message

from .support import wait_for


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
    conversation = services.conversation_create(owner=alice)
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
    conversation = services.conversation_create(owner=alice)
    _, completion = send(conversation, "Tell me a very long story")
    thread = run_in_thread(completion.pk)
    wait_for(lambda: reply_text(completion), timeout=10, what="the first words")
    services.completion_stop(completion=completion)
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
    conversation = services.conversation_create(owner=alice)
    _, completion = send(conversation, "Start something")
    thread = run_in_thread(completion.pk)
    wait_for(lambda: reply_text(completion), timeout=10, what="the first words")
    services.completion_stop(completion=completion)
    thread.join(timeout=10)
    partial = reply_text(completion)
    simulator.control(token_delay=0)
    send(conversation, "Go on")
    enqueued.drain()
    assert simulator.bodies()[-1]["messages"][1] == {"role": "assistant", "content": partial}


def test_stop_before_the_call_starts_means_it_never_starts(alice, simulator, enqueued, send):
    conversation = services.conversation_create(owner=alice)
    _, completion = send(conversation, "Never mind")
    services.completion_stop(completion=completion)
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.FAILED
    assert completion.error_type == "stopped"
    assert simulator.requests() == []


def test_a_broken_stream_is_an_error_with_its_partial_text(
    alice, simulator, enqueued, send, streaming_settings
):
    simulator.control(faults=[{"kind": "break_stream", "after_tokens": 4}])
    conversation = services.conversation_create(owner=alice)
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
    assert services.history(conversation) == [{"role": "user", "content": "Break please"}]


def test_a_stream_broken_before_any_text_is_retried(
    alice, simulator, enqueued, send, streaming_settings
):
    simulator.control(faults=[{"kind": "break_stream", "after_tokens": 0}])
    conversation = services.conversation_create(owner=alice)
    _, completion = send(conversation, "Try again")
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.SUCCEEDED
    assert completion.attempts == 2
    assert Message.objects.filter(completion=completion).count() == 1
