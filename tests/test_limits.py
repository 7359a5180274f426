"""Abuse limits: failed log-ins per username and per address (site and admin), messages
per minute and replies in flight per user, each refused with a clear message."""

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

from conversations import limits, services
from conversations.models import Completion, Conversation, Message

from .support import ROOT

HTMX = {"HTTP_HX_REQUEST": "true"}
TOO_MANY_LOGINS = re.compile(r"Too many failed log-in attempts\. Try again in (\d+) seconds?\.")
TOO_FAST = re.compile(r"You are sending messages too fast\. Wait (\d+) seconds? and try again\.")
IN_FLIGHT = "You already have 3 replies being written. Wait for one to finish."


class Clock:
    """limits.clock, moved by the test instead of by sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(limits, "clock", clock)
    return clock


@pytest.fixture(autouse=True)
def _quick_passwords(settings) -> None:
    # Many log-in attempts here; the default hasher takes a good part of a second each.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("root", password="root-password-1")


def log_in(client: Client, username: str, password: str, *, ip: str = "127.0.0.1", url=None):
    return client.post(
        url or reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ip
    )


def fail(client: Client, username: str, times: int, **kwargs) -> None:
    for _ in range(times):
        response = log_in(client, username, "wrong-password", **kwargs)
        assert response.status_code == 200
        assert "Please enter a correct" in response.content.decode()


def refused_for(response) -> int:
    """The seconds a refused log-in names; it must be a 429 saying so."""
    assert response.status_code == 429
    found = TOO_MANY_LOGINS.search(response.content.decode())
    assert found, response.content.decode()
    assert response["Retry-After"] == found.group(1)
    return int(found.group(1))


def logged_in(client: Client) -> bool:
    return client.get(reverse("chat_home")).status_code == 200


# --- Log-in ---


def test_the_sixth_attempt_in_a_minute_is_refused_even_with_the_right_password(client, alice):
    fail(client, "alice", 5)
    response = log_in(client, "alice", "alice-password-1")
    assert 0 < refused_for(response) <= 70
    assert 'role="alert"' in response.content.decode()
    assert not logged_in(client)


def test_another_username_from_another_address_is_unaffected(client, alice, bob):
    fail(client, "alice", 5)
    assert log_in(client, "bob", "bob-password-1", ip="10.0.0.2").status_code == 302
    assert logged_in(client)


def test_the_username_is_counted_whatever_its_case_and_from_any_address(client, alice):
    fail(client, "ALICE", 3, ip="10.0.0.1")
    fail(client, "Alice", 2, ip="10.0.0.2")
    refused_for(log_in(client, "alice", "alice-password-1", ip="10.0.0.3"))


def test_log_in_works_again_once_the_window_has_passed(client, alice, clock):
    fail(client, "alice", 5)
    wait = refused_for(log_in(client, "alice", "alice-password-1"))
    clock.advance(wait - 1)
    # Refused attempts count nothing: the wait does not grow while one keeps trying.
    assert refused_for(log_in(client, "alice", "alice-password-1")) == 1
    clock.advance(1)
    assert log_in(client, "alice", "alice-password-1").status_code == 302


def test_a_tiny_window_from_the_settings_passes_as_quickly(client, alice, clock, settings):
    settings.LOGIN_FAILURE_WINDOW = 6
    fail(client, "alice", 5)
    assert refused_for(log_in(client, "alice", "alice-password-1")) <= 7
    clock.advance(7)
    assert log_in(client, "alice", "alice-password-1").status_code == 302


def test_a_successful_log_in_clears_the_usernames_failures(client, alice):
    fail(client, "alice", 4)
    assert log_in(client, "alice", "alice-password-1").status_code == 302
    client.post(reverse("logout"))
    fail(client, "alice", 5)
    refused_for(log_in(client, "alice", "alice-password-1"))


def test_failures_from_one_address_are_limited_across_usernames(client, alice, settings):
    settings.LOGIN_FAILURES_PER_IP = 20
    for number in range(20):
        fail(client, f"nobody-{number}", 1, ip="10.0.0.9")
    refused_for(log_in(client, "alice", "alice-password-1", ip="10.0.0.9"))
    assert log_in(client, "alice", "alice-password-1", ip="10.0.0.10").status_code == 302


def test_the_admin_log_in_is_limited_with_the_sites_count(client, superuser):
    admin_login = reverse("admin:login")
    fail(client, "root", 3)
    for _ in range(2):
        response = log_in(client, "root", "nope", url=admin_login)
        assert response.status_code == 200
        assert "Please enter the correct" in response.content.decode()
    response = log_in(client, "root", "root-password-1", url=admin_login)
    refused_for(response)
    assert client.get(reverse("admin:index")).status_code == 302


def test_the_admin_log_in_still_lets_staff_in(client, superuser):
    response = log_in(client, "root", "root-password-1", url=reverse("admin:login"))
    assert response.status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200


def test_log_in_limits_are_off_with_zero(client, alice, settings, send_htmx):
    settings.LOGIN_FAILURES_PER_USERNAME = 0
    settings.LOGIN_FAILURES_PER_IP = 0
    fail(client, "alice", 12)
    assert log_in(client, "alice", "alice-password-1").status_code == 302


# --- Sending ---


@pytest.fixture
def alice_client(client, alice) -> Client:
    client.force_login(alice)
    return client


def new_conversation(owner: User) -> Conversation:
    return services.conversation_create(owner=owner, title="chat")


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
    with pytest.raises(limits.RateLimited) as refused:
        services.completion_retry(completion=failed)
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
            services.message_send(conversation=conversations[i], content="at once")
            results[i] = "sent"
        except limits.RateLimited:
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


# --- The counting itself ---


def test_the_window_slides_so_a_burst_across_its_edge_is_still_refused(clock, db):
    rate = limits.Rate("test", limit=5, window=60)
    clock.now = 1_800_000_055.0  # five seconds before a minute's edge
    assert not any(rate.hit("x").refused for _ in range(5))
    clock.advance(6)
    refused = rate.hit("x")
    assert refused.refused
    # The five stay counted until their bucket leaves the window: 65 s after them.
    assert refused.wait == pytest.approx(59)
    clock.advance(59)
    assert not rate.hit("x").refused


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
        "from conversations import limits\n"
        f"settings.CACHES['default']['KEY_PREFIX'] = {settings.CACHES['default']['KEY_PREFIX']!r}\n"
        f"limits.clock = lambda: {limits.clock()!r}\n"
        "for _ in range(20):\n"
        f"    with limits.message_counted(user_id={alice.pk}): pass\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatsite.settings", "MESSAGES_PER_MINUTE": "20"}
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=60)
    with pytest.raises(limits.RateLimited), limits.message_counted(user_id=alice.pk):
        pass


def _spoofed_log_ins(web_url: str, attempts: int) -> list[int]:
    """Failed log-ins, each claiming another client address in X-Forwarded-For and each
    for another username (so only the per-address limit can refuse them)."""
    import requests

    session = requests.Session()
    session.get(f"{web_url}/accounts/login/", timeout=10)
    statuses = []
    for number in range(attempts):
        response = session.post(
            f"{web_url}/accounts/login/",
            data={"username": f"nobody{number}", "password": "wrong-password"},
            headers={
                "X-CSRFToken": session.cookies["csrftoken"],
                "Referer": web_url,
                "X-Forwarded-For": f"203.0.113.{number + 1}",
            },
            timeout=10,
        )
        statuses.append(response.status_code)
    return statuses


@pytest.mark.parametrize(
    ("trusted", "refused"),
    # Not believed by default: 8 failures from one real address, over a limit of 5.
    # Believed from a proxy named in DJANGO_TRUSTED_PROXIES: 8 different addresses.
    [("", 3), ("127.0.0.1", 0)],
    ids=["by-default", "from-a-trusted-proxy"],
)
def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(
    transactional_db, simulator, tmp_path, trusted, refused
):
    from .conftest import WebProcess
    from .support import subprocess_env

    env = subprocess_env(simulator, DJANGO_TRUSTED_PROXIES=trusted, LOGIN_FAILURES_PER_IP="5")
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    web = WebProcess(env, tmp_path / "web.log").start()
    try:
        statuses = _spoofed_log_ins(web.url, 8)
    finally:
        web.stop()
    assert statuses.count(429) == refused, statuses
    assert statuses.count(200) == 8 - refused
