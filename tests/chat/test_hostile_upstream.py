"""A hostile or broken upstream never leaves a reply pending forever nor bills it again
without end: what it wrote is stored cleaned, or the reply fails with a readable error
once its attempts are used up (issue 13, defect 1)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.chat import tasks
from conversations.chat.services import completions, results
from conversations.chat.services import conversations as chat_services
from conversations.models import Completion, Message
from conversations.upstream.simulated_text import INVALID_UTF8_MARK


@pytest.fixture(params=[True, False], ids=["streaming", "plain"])
def streaming(request, settings) -> bool:
    settings.UPSTREAM_STREAM = request.param
    return request.param


def sent(alice, send, text="Hello"):
    conversation = chat_services.conversation_create(owner=alice)
    _, completion = send(conversation, text)
    return completion


def ended(completion: Completion) -> Completion:
    completion.refresh_from_db()
    assert completion.status in (Completion.Status.SUCCEEDED, Completion.Status.FAILED)
    return completion


def test_a_nul_byte_in_the_reply_is_removed(alice, streaming, simulator, enqueued, send):
    simulator.control(faults=[{"kind": "content", "content": "before\u0000after"}])
    completion = sent(alice, send)
    enqueued.drain()
    assert ended(completion).status == Completion.Status.SUCCEEDED
    assert Message.objects.get(completion=completion).content == "beforeafter"
    assert len(simulator.requests()) == 1


def test_a_lone_surrogate_in_the_reply_is_replaced(alice, streaming, simulator, enqueued, send):
    # JSON can spell half a UTF-16 pair ("\ud800"), which no database can store.
    simulator.control(faults=[{"kind": "content", "content": "half \ud800 pair"}])
    completion = sent(alice, send)
    enqueued.drain()
    assert ended(completion).status == Completion.Status.SUCCEEDED
    assert Message.objects.get(completion=completion).content == "half \ufffd pair"


def test_an_over_long_finish_reason_is_cut_to_its_column(
    alice, streaming, simulator, enqueued, send
):
    simulator.control(faults=[{"kind": "finish_reason", "finish_reason": "x" * 100}])
    completion = sent(alice, send)
    enqueued.drain()
    assert ended(completion).status == Completion.Status.SUCCEEDED
    reply = Message.objects.get(completion=completion)
    limit = Message._meta.get_field("finish_reason").max_length
    assert reply.finish_reason == "x" * limit
    assert completion.choices == [{"index": 0, "finish_reason": "x" * limit}]


def test_bytes_that_are_not_utf8_are_replaced(alice, streaming, simulator, enqueued, send):
    simulator.control(faults=[{"kind": "invalid_utf8"}])
    completion = sent(alice, send)
    enqueued.drain()
    assert ended(completion).status == Completion.Status.SUCCEEDED, completion.error_message
    content = Message.objects.get(completion=completion).content
    assert "\ufffd" in content and content.endswith("end.")
    assert INVALID_UTF8_MARK not in content


@pytest.mark.parametrize(
    ("content", "stored"),
    [
        ([{"type": "text", "text": "one "}, {"type": "text", "text": "two"}], "one two"),
        (42, "42"),
        ({"answer": "yes"}, '{"answer": "yes"}'),
        (None, ""),
    ],
    ids=["parts", "number", "object", "null"],
)
def test_content_that_is_not_a_string_is_stored_as_text(
    content, stored, alice, streaming, simulator, enqueued, send
):
    simulator.control(faults=[{"kind": "content", "content": content}])
    completion = sent(alice, send)
    enqueued.drain()
    assert ended(completion).status == Completion.Status.SUCCEEDED, completion.error_message
    assert Message.objects.get(completion=completion).content == stored


def test_a_200_carrying_an_error_fails_with_the_upstreams_own_message(
    alice, streaming, simulator, enqueued, send, settings
):
    settings.COMPLETION_MAX_ATTEMPTS = 2
    fault = {"kind": "error_body", "message": "The engine is overloaded today", "times": 5}
    simulator.control(faults=[fault])
    completion = sent(alice, send)
    enqueued.drain()
    assert ended(completion).status == Completion.Status.FAILED
    assert "The engine is overloaded today" in completion.error_message
    assert completion.attempts == 2
    assert len(simulator.requests()) == 2
    assert not Message.objects.filter(completion=completion).exists()


def test_an_unexpected_error_ends_in_a_failed_reply_once_attempts_are_used_up(
    alice, simulator, enqueued, send, settings, monkeypatch
):
    settings.COMPLETION_MAX_ATTEMPTS = 3

    def broken(**kwargs):
        raise RuntimeError("a bug in saving")

    monkeypatch.setattr(results, "save_result", broken)
    completion = sent(alice, send)
    enqueued.drain()
    assert ended(completion).status == Completion.Status.FAILED
    assert completion.attempts == 3
    assert len(simulator.requests()) == 3
    assert "RuntimeError" in completion.error_message
    assert completion.budget_settled  # its reservation is given back
    # Nothing of the broken attempts is left behind as a reply being written.
    assert not Message.objects.filter(completion=completion).exists()


def test_the_sweep_fails_a_completion_whose_attempts_are_used_up(
    alice, simulator, enqueued, send, settings
):
    settings.COMPLETION_MAX_ATTEMPTS = 2
    completion = sent(alice, send)
    enqueued.calls.clear()
    # A worker died holding it at its last attempt: the lease ran out.
    Completion.objects.filter(pk=completion.pk).update(
        status=Completion.Status.RUNNING,
        attempts=2,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
        started_at=timezone.now() - timedelta(minutes=5),
    )
    completions.completions_sweep()
    enqueued.drain()
    assert ended(completion).status == Completion.Status.FAILED
    assert completion.error_message
    assert simulator.requests() == []  # not called (and billed) a third time


def test_a_redelivered_task_never_claims_past_the_attempt_cap(
    alice, simulator, enqueued, send, settings
):
    settings.COMPLETION_MAX_ATTEMPTS = 2
    completion = sent(alice, send)
    Completion.objects.filter(pk=completion.pk).update(
        status=Completion.Status.RUNNING,
        attempts=2,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    assert tasks._run_completion(completion.pk) == tasks.Outcome.SKIPPED
    assert simulator.requests() == []
