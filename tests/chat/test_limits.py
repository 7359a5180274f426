"""Sending limits: messages per minute and replies in flight per user, each refused with a
clear message, nothing already saved lost."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client
from django.urls import reverse

from conversations.chat import limits
from conversations.chat.services import conversations as chat_services
from conversations.chat.services import versions as chat_versions
from conversations.models import Completion, Conversation, Message
from conversations.shared import ratelimits
from tests.http import HTMX
from tests.support import ROOT

pytestmark = pytest.mark.usefixtures("clock")

TOO_FAST = re.compile(r"You are sending messages too fast\. Wait (\d+) seconds? and try again\.")
IN_FLIGHT = "You already have 3 replies being written. Wait for one to finish."


def new_conversation(owner: User) -> Conversation:
    return chat_services.conversation_create(owner=owner, title="chat")


@pytest.fixture
def send_htmx(django_capture_on_commit_callbacks):
    """Send from the composer, with the after-commit work (enqueueing) run."""

    def send(client: Client, conversation: Conversation, content: str):
        url = reverse("message_send", args=[conversation.pk])
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(url, {"content": content}, **HTMX)

    return send


def finish_replies() -> None:
    """Every reply in flight ends, as if the worker had written them."""
    Completion.objects.filter(status__in=Completion.ACTIVE).update(
        status=Completion.Status.SUCCEEDED
    )


def test_the_21st_message_in_a_minute_is_refused_and_nothing_is_lost(
    alice_client, alice, enqueued, send_htmx
):
    conversation = new_conversation(alice)
    for number in range(20):
        assert (
            'id="composer-error"'
            not in send_htmx(alice_client, conversation, f"message {number}").content.decode()
        )
        finish_replies()
    response = send_htmx(alice_client, conversation, "one too many")
    page = response.content.decode()
    assert response.status_code == 200  # htmx swaps the composer with its error
    assert 'id="composer-error" role="alert"' in page
    assert TOO_FAST.search(page)
    assert "one too many</textarea>" in page
    assert list(conversation.messages.values_list("content", flat=True)) == [
        f"message {number}" for number in range(20)
    ]
    assert Completion.objects.count() == 20
    assert len(enqueued.ids) == 20


def test_without_javascript_a_refused_message_answers_429_with_the_page(
    alice_client, alice, enqueued, settings, send_htmx
):
    settings.MESSAGES_PER_MINUTE = 1
    conversation = new_conversation(alice)
    send_htmx(alice_client, conversation, "first")
    finish_replies()
    response = alice_client.post(
        reverse("message_send", args=[conversation.pk]), {"content": "second"}
    )
    page = response.content.decode()
    assert response.status_code == 429
    assert TOO_FAST.search(page)
    assert "second</textarea>" in page
    assert 'id="sidebar"' in page  # the whole page
    assert conversation.messages.count() == 1


def test_a_first_message_from_the_home_page_keeps_its_text_when_refused(
    alice_client, alice, enqueued, settings, send_htmx
):
    settings.MESSAGES_PER_MINUTE = 1
    send_htmx(alice_client, new_conversation(alice), "first")
    response = alice_client.post(reverse("conversation_create"), {"content": "a new topic"})
    page = response.content.decode()
    assert response.status_code == 429
    assert TOO_FAST.search(page)
    assert "a new topic</textarea>" in page
    assert not Message.objects.filter(content="a new topic").exists()


def test_the_message_limit_lifts_after_the_wait_it_names(
    alice_client, alice, enqueued, settings, clock, send_htmx
):
    settings.MESSAGES_PER_MINUTE = 2
    conversation = new_conversation(alice)
    for content in ("one", "two"):
        send_htmx(alice_client, conversation, content)
        finish_replies()
    wait = int(TOO_FAST.search(send_htmx(alice_client, conversation, "three").content.decode())[1])
    assert 0 < wait <= 70
    clock.advance(wait)
    assert (
        'id="composer-error"' not in send_htmx(alice_client, conversation, "three").content.decode()
    )
    assert conversation.messages.count() == 3


def test_a_send_refused_for_another_reason_is_not_counted(
    alice_client, alice, enqueued, settings, send_htmx
):
    settings.MESSAGES_PER_MINUTE = 2
    conversation = new_conversation(alice)
    send_htmx(alice_client, conversation, "one")
    busy = send_htmx(alice_client, conversation, "while the reply is written")
    assert "Wait for the reply to finish" in busy.content.decode()
    finish_replies()
    assert (
        'id="composer-error"' not in send_htmx(alice_client, conversation, "two").content.decode()
    )
    assert conversation.messages.count() == 2


def test_each_user_has_their_own_message_count(
    alice_client, alice, bob, enqueued, settings, send_htmx
):
    settings.MESSAGES_PER_MINUTE = 1
    send_htmx(alice_client, new_conversation(alice), "alice's one")
    bob_client = Client()
    bob_client.force_login(bob)
    response = send_htmx(bob_client, new_conversation(bob), "bob's one")
    assert 'id="composer-error"' not in response.content.decode()


def test_a_fourth_reply_in_flight_is_refused_across_conversations(
    alice_client, alice, enqueued, send_htmx
):
    conversations = [new_conversation(alice) for _ in range(4)]
    for conversation in conversations[:3]:
        send_htmx(alice_client, conversation, "busy work")
    response = send_htmx(alice_client, conversations[3], "and one more")
    page = response.content.decode()
    assert IN_FLIGHT in page
    assert "and one more</textarea>" in page
    assert not conversations[3].messages.exists()
    assert Completion.objects.count() == 3
    # One reply ends: there is room again.
    Completion.objects.filter(conversation=conversations[0]).update(status=Completion.Status.FAILED)
    response = send_htmx(alice_client, conversations[3], "and one more")
    assert 'id="composer-error"' not in response.content.decode()
    assert Completion.objects.filter(status__in=Completion.ACTIVE).count() == 3


def test_a_retry_counts_as_a_reply_in_flight(alice, enqueued, send):
    conversations = [new_conversation(alice) for _ in range(4)]
    _, failed = send(conversations[0], "this one fails")
    Completion.objects.filter(pk=failed.pk).update(status=Completion.Status.FAILED)
    failed.refresh_from_db()
    for conversation in conversations[1:]:
        send(conversation, "busy work")
    with pytest.raises(ratelimits.RateLimited) as refused:
        chat_versions.completion_retry(completion=failed)
    assert IN_FLIGHT in refused.value.messages
    assert Completion.objects.count() == 4


def test_parallel_sends_never_pass_the_in_flight_limit(transactional_db, alice, enqueued):
    """Ten sends at once, each in its own conversation and database connection (row
    locks on PostgreSQL): three are queued, the others refused, storing nothing."""
    conversations = [new_conversation(alice) for _ in range(10)]
    barrier = threading.Barrier(len(conversations))
    results: list[str] = [""] * len(conversations)

    def sender(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            chat_services.message_send(
                owner=alice, conversation_id=conversations[i].pk, content="at once"
            )
            results[i] = "sent"
        except ratelimits.RateLimited:
            results[i] = "refused"
        except Exception as exc:  # reported below, with the thread's number
            results[i] = repr(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(len(conversations))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == ["refused"] * 7 + ["sent"] * 3
    assert Completion.objects.filter(status__in=Completion.ACTIVE).count() == 3
    assert Message.objects.count() == 3


def test_sending_limits_are_off_with_zero(alice_client, alice, enqueued, settings, send_htmx):
    settings.MESSAGES_PER_MINUTE = 0
    settings.MAX_REPLIES_IN_FLIGHT = 0
    conversations = [new_conversation(alice) for _ in range(25)]
    for conversation in conversations:
        response = send_htmx(alice_client, conversation, "hello")
        assert 'id="composer-error"' not in response.content.decode()
    assert Completion.objects.filter(status__in=Completion.ACTIVE).count() == 25


@pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="one web process's memory is the embedded count"
)
def test_the_message_count_holds_across_processes(alice, settings):
    """Another process (a second web process) sends the user's 20 messages; this one is
    then refused, because the count lives in Redis."""
    settings.MESSAGES_PER_MINUTE = 20
    script = (
        "import django; django.setup()\n"
        "from django.conf import settings\n"
        "from conversations.chat import limits\n"
        "from conversations.shared import ratelimits\n"
        f"settings.CACHES['default']['KEY_PREFIX'] = {settings.CACHES['default']['KEY_PREFIX']!r}\n"
        f"ratelimits.clock = lambda: {ratelimits.clock()!r}\n"
        "for _ in range(20):\n"
        f"    with limits.message_counted(user_id={alice.pk}): pass\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatsite.settings", "MESSAGES_PER_MINUTE": "20"}
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=60)
    with pytest.raises(ratelimits.RateLimited), limits.message_counted(user_id=alice.pk):
        pass
