"""The life of a completion, through the services and task, against the simulator."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from chatsite import logs
from chatsite.celery import app as celery_app
from conversations.chat import tasks
from conversations.chat.services import attempts, completions
from conversations.chat.services import conversations as chat_services
from conversations.chat.services import versions as chat_versions
from conversations.models import Completion, Message
from conversations.upstream.simulated_text import count_tokens


@pytest.fixture(params=[True, False], ids=["streaming", "plain"])
def streaming(request, settings) -> bool:
    """Both ways of calling the upstream: `stream: true` (the default) and one JSON body."""
    settings.UPSTREAM_STREAM = request.param
    return request.param


def test_every_parameter_reaches_the_upstream_as_set(alice, simulator, enqueued, send):
    conversation = chat_services.conversation_create(
        owner=alice,
        model="gpt-4o",
        system_prompt="You are a knowledgeable assistant",
        temperature=0.7,
        top_p=0.5,
        max_tokens=200,
        n=1,
        stop=["END"],
        presence_penalty=0.5,
        frequency_penalty=-0.5,
    )
    send(conversation, "Tell me the history of AI")
    enqueued.drain()
    [body] = simulator.bodies()
    assert {k: v for k, v in body.items() if k not in ("stream", "stream_options")} == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a knowledgeable assistant"},
            {"role": "user", "content": "Tell me the history of AI"},
        ],
        "temperature": 0.7,
        "top_p": 0.5,
        "max_tokens": 200,
        "n": 1,
        "stop": ["END"],
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
    }


def test_unset_parameters_are_not_sent(conversation, simulator, enqueued, send):
    send(conversation, "hi")
    enqueued.drain()
    [body] = simulator.bodies()
    assert set(body) - {"stream", "stream_options"} == {"model", "messages"}


def test_the_request_as_sent_is_stored(conversation, simulator, enqueued, send):
    _, completion = send(conversation, "hi")
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.request_body == simulator.bodies()[0]
    assert "sk-test-key" not in str(completion.request_body)


def test_the_response_fields_and_usage_are_stored(
    conversation, streaming, simulator, enqueued, send
):
    message, completion = send(conversation, "What is a token?")
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.SUCCEEDED
    assert completion.response_id.startswith("chatcmpl-sim-")
    assert completion.response_model == "gpt-4o-mini-simulated"
    assert completion.model == "gpt-4o-mini"
    assert completion.response_object == "chat.completion"
    assert completion.response_created is not None
    assert completion.choices == [{"index": 0, "finish_reason": "stop"}]
    [reply] = Message.objects.filter(completion=completion)
    assert reply.role == "assistant" and reply.position == message.position + 1
    assert completion.completion_tokens == count_tokens(reply.content)
    assert completion.total_tokens == completion.prompt_tokens + completion.completion_tokens
    assert completion.http_status == 200
    assert completion.attempts == 1
    assert not completion.usage_estimated
    assert completion.request_body.get("stream", False) == streaming
    assert completion.latency_ms is not None
    assert completion.started_at <= completion.finished_at


def test_n_3_stores_three_choices_and_selects_the_first(
    alice, streaming, simulator, enqueued, send
):
    conversation = chat_services.conversation_create(owner=alice, n=3)
    _, completion = send(conversation, "Give me options")
    enqueued.drain()
    replies = list(Message.objects.filter(completion=completion).order_by("choice_index"))
    assert [r.choice_index for r in replies] == [0, 1, 2]
    assert [r.is_selected for r in replies] == [True, False, False]
    assert len({r.content for r in replies}) == 3
    assert len({r.position for r in replies}) == 1


def test_only_the_selected_choice_goes_into_later_requests(alice, simulator, enqueued, send):
    conversation = chat_services.conversation_create(owner=alice, n=2)
    _, completion = send(conversation, "Pick one")
    enqueued.drain()
    second = Message.objects.get(completion=completion, choice_index=1)
    chat_versions.choice_select(message=second)
    send(conversation, "And then?")
    enqueued.drain()
    history = simulator.bodies()[1]["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    assert history[1]["content"] == second.content


def test_max_tokens_cut_is_stored_as_finish_reason_length(
    alice, streaming, simulator, enqueued, send
):
    conversation = chat_services.conversation_create(owner=alice, max_tokens=2)
    _, completion = send(conversation, "Say a lot")
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.choices == [{"index": 0, "finish_reason": "length"}]
    assert Message.objects.get(completion=completion).finish_reason == "length"
    assert completion.completion_tokens == 2


def test_the_second_message_carries_the_history(alice, simulator, enqueued, send):
    conversation = chat_services.conversation_create(owner=alice, system_prompt="Be brief")
    send(conversation, "First question")
    enqueued.drain()
    send(conversation, "Second question")
    enqueued.drain()
    first_reply = Message.objects.get(conversation=conversation, role="assistant", position=1)
    assert simulator.bodies()[1]["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": first_reply.content},
        {"role": "user", "content": "Second question"},
    ]


def test_a_429_with_retry_after_is_retried_and_succeeds(
    conversation, streaming, simulator, enqueued, send
):
    simulator.control(faults=[{"status": 429, "retry_after": 1}])
    _, completion = send(conversation, "hello")
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.SUCCEEDED
    assert completion.attempts == 2
    assert len(simulator.requests()) == 2
    # The retry was scheduled no sooner than the upstream asked.
    assert enqueued_countdowns(simulator) >= 1.0


def enqueued_countdowns(simulator) -> float:
    first, second = simulator.requests()
    return second["at"] - first["at"]


def test_a_persistent_500_fails_with_a_readable_error(
    conversation, simulator, enqueued, send, settings
):
    settings.COMPLETION_MAX_ATTEMPTS = 3
    simulator.control(faults=[{"status": 500, "message": "upstream exploded", "times": 10}])
    message, completion = send(conversation, "hello")
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.FAILED
    assert completion.attempts == 3
    assert len(simulator.requests()) == 3
    assert completion.http_status == 500
    assert "upstream exploded" in completion.error_message
    assert "3" in completion.error_message
    assert Message.objects.filter(pk=message.pk, content="hello").exists()
    assert not Message.objects.filter(conversation=conversation, role="assistant").exists()


def test_401_is_not_retried(conversation, simulator, enqueued, send):
    simulator.control(faults=[{"status": 401, "message": "Incorrect API key provided"}])
    _, completion = send(conversation, "hello")
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.FAILED
    assert completion.attempts == 1
    assert len(simulator.requests()) == 1
    assert "Incorrect API key provided" in completion.error_message


def test_a_non_json_200_is_retried(conversation, streaming, simulator, enqueued, send):
    simulator.control(faults=[{"kind": "not_json"}])
    _, completion = send(conversation, "hello")
    enqueued.drain()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.SUCCEEDED
    assert completion.attempts == 2


def test_the_same_task_delivered_twice_calls_once_and_replies_once(
    conversation, streaming, simulator, enqueued, send
):
    _, completion = send(conversation, "hello")
    tasks.run_completion(completion.pk)
    tasks.run_completion(completion.pk)
    assert len(simulator.requests()) == 1
    assert Message.objects.filter(completion=completion).count() == 1


def test_a_lost_claim_saves_no_second_reply(conversation, simulator, enqueued, send):
    _, completion = send(conversation, "hello")
    first = completions.completion_claim(completion_id=completion.pk)
    # The first worker looks dead: its lease runs out and another takes over.
    Completion.objects.filter(pk=completion.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    second = completions.completion_claim(completion_id=completion.pk)
    assert second is not None and second.token != first.token
    assert attempts.completion_attempt(claim=second) == "succeeded"
    assert attempts.completion_attempt(claim=first) == "lost"
    assert Message.objects.filter(completion=completion).count() == 1


def test_a_live_claim_is_not_taken_over(conversation, simulator, enqueued, send):
    _, completion = send(conversation, "hello")
    assert completions.completion_claim(completion_id=completion.pk) is not None
    assert completions.completion_claim(completion_id=completion.pk) is None


def test_the_sweep_resends_stale_queued_and_expired_running(
    conversation, alice, simulator, enqueued, send, settings
):
    _, stale = send(conversation, "lost by the broker")
    other = chat_services.conversation_create(owner=alice)
    _, expired = send(other, "worker died")
    third = chat_services.conversation_create(owner=alice)
    _, fresh = send(third, "just queued")
    enqueued.calls.clear()
    long_ago = timezone.now() - timedelta(seconds=settings.COMPLETION_STALE_QUEUED_SECONDS + 5)
    Completion.objects.filter(pk=stale.pk).update(available_at=long_ago)
    Completion.objects.filter(pk=expired.pk).update(
        status="running", lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert sorted(completions.completions_sweep()) == sorted([stale.pk, expired.pk])
    enqueued.drain()
    for completion in (stale, expired):
        completion.refresh_from_db()
        assert completion.status == Completion.Status.SUCCEEDED
        assert Message.objects.filter(completion=completion).count() == 1
    fresh.refresh_from_db()
    assert fresh.status == Completion.Status.QUEUED


def test_a_completion_keeps_its_request_id_and_the_sweep_resends_under_it(
    conversation, send, settings, monkeypatch
):
    with logs.request_id_bound("req-sent-by-web"):
        _, completion = send(conversation, "lost by the broker")
    assert completion.request_id == "req-sent-by-web"
    long_ago = timezone.now() - timedelta(seconds=settings.COMPLETION_STALE_QUEUED_SECONDS + 5)
    Completion.objects.filter(pk=completion.pk).update(available_at=long_ago)

    sent_under = []
    monkeypatch.setattr(
        celery_app,
        "send_task",
        lambda name, args, countdown=None: sent_under.append((args[0], logs.current_request_id())),
    )
    assert completions.completions_sweep() == [completion.pk]
    assert sent_under == [(completion.pk, "req-sent-by-web")]
    assert logs.current_request_id() == ""  # the sweep's own context is left as it was


def test_a_message_is_kept_when_the_broker_is_down(conversation, monkeypatch, send):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(celery_app, "send_task", broker_down)
    message, completion = send(conversation, "hello")
    assert Message.objects.filter(pk=message.pk).exists()
    completion.refresh_from_db()
    assert completion.status == Completion.Status.QUEUED


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"model": "not-offered"}, "model"),
    ],
)
def test_invalid_parameters_are_refused_naming_the_field(conversation, params, field, simulator):
    with pytest.raises(ValidationError) as raised:
        chat_services.conversation_update(conversation=conversation, **params)
    assert field in raised.value.message_dict
    conversation.refresh_from_db()
    assert getattr(conversation, field) != params[field]
    assert simulator.requests() == []


def test_a_conversation_is_titled_from_its_first_message(alice, send):
    conversation = chat_services.conversation_create(owner=alice)
    send(conversation, "How do   I bake\nbread at home?")
    conversation.refresh_from_db()
    assert conversation.title == "How do I bake bread at home?"


def test_no_second_message_while_a_reply_is_pending(conversation, send):
    send(conversation, "first")
    with pytest.raises(chat_services.ConversationBusy):
        send(conversation, "second")
    assert conversation.messages.count() == 1


def test_retry_makes_a_new_completion_for_the_same_message(
    conversation, simulator, enqueued, send, settings, django_capture_on_commit_callbacks
):
    settings.COMPLETION_MAX_ATTEMPTS = 1
    simulator.control(faults=[{"status": 503}])
    message, failed = send(conversation, "hello")
    enqueued.drain()
    failed.refresh_from_db()
    assert failed.status == Completion.Status.FAILED
    with django_capture_on_commit_callbacks(execute=True):
        retried = chat_versions.completion_retry(completion=failed)
    enqueued.drain()
    retried.refresh_from_db()
    assert retried.status == Completion.Status.SUCCEEDED
    assert retried.request_message_id == message.pk
    assert simulator.bodies()[1]["messages"] == [{"role": "user", "content": "hello"}]
