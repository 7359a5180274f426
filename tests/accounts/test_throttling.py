"""Failed log-ins per username and per address, on the site's log-in and the admin's, each
refused with a clear message (429); X-Forwarded-For believed only from a trusted proxy."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from tests.support import WebProcess, subprocess_env

pytestmark = pytest.mark.usefixtures("clock")

TOO_MANY_LOGINS = re.compile(r"Too many failed log-in attempts\. Try again in (\d+) seconds?\.")


@pytest.fixture(autouse=True)
def _quick_passwords(settings) -> None:
    # Many log-in attempts here; the default hasher takes a good part of a second each.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]


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


def test_log_in_limits_are_off_with_zero(client, alice, settings):
    settings.LOGIN_FAILURES_PER_USERNAME = 0
    settings.LOGIN_FAILURES_PER_IP = 0
    fail(client, "alice", 12)
    assert log_in(client, "alice", "alice-password-1").status_code == 302


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
    env = subprocess_env(simulator, DJANGO_TRUSTED_PROXIES=trusted, LOGIN_FAILURES_PER_IP="5")
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    web = WebProcess(env, tmp_path / "web.log").start()
    try:
        statuses = _spoofed_log_ins(web.url, 8)
    finally:
        web.stop()
    assert statuses.count(429) == refused, statuses
    assert statuses.count(200) == 8 - refused
