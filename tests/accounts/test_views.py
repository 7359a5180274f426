"""Sign-up, log-in and log-out pages."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse


def test_the_signup_page_uses_djangos_labels(client, db):
    page = client.get(reverse("signup")).content.decode()
    for label in ("Username", "Password", "Password confirmation"):
        assert f">{label}</label>" in page
    assert ">Sign up</button>" in page


def test_signing_up_creates_the_user_logs_in_and_opens_the_chat(client, db):
    response = client.post(
        reverse("signup"),
        {"username": "dora", "password1": "a-long-pass-phrase", "password2": "a-long-pass-phrase"},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("chat_home")
    user = User.objects.get(username="dora")
    assert not user.is_staff
    assert client.get(reverse("chat_home")).status_code == 200


def test_a_bad_signup_shows_the_error_beside_the_field(client, db):
    response = client.post(
        reverse("signup"),
        {"username": "dora", "password1": "a-long-pass-phrase", "password2": "different"},
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "field-invalid" in page
    assert "The two password fields didn’t match." in page
    assert not User.objects.filter(username="dora").exists()


def test_the_login_page_uses_djangos_labels(client, db):
    page = client.get(reverse("login")).content.decode()
    assert ">Username</label>" in page
    assert ">Password</label>" in page
    assert ">Log in</button>" in page


def test_logging_in_opens_the_chat_and_a_wrong_password_is_refused(client, alice):
    bad = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert bad.status_code == 200
    assert 'role="alert"' in bad.content.decode()
    good = client.post(reverse("login"), {"username": "alice", "password": "alice-password-1"})
    assert good["Location"] == reverse("chat_home")


def test_login_returns_to_the_page_asked_for(client, alice):
    response = client.get(reverse("chat_home"))
    assert response["Location"] == f"{reverse('login')}?next=/"
    response = client.post(
        f"{reverse('login')}?next=/conversations/",
        {"username": "alice", "password": "alice-password-1", "next": "/conversations/"},
    )
    assert response["Location"] == "/conversations/"


def test_logout_is_a_post_and_ends_the_session(client, alice):
    client.force_login(alice)
    assert client.get(reverse("logout")).status_code == 405
    response = client.post(reverse("logout"))
    assert response["Location"] == reverse("login")
    assert client.get(reverse("chat_home")).status_code == 302


def test_logout_without_a_csrf_token_is_refused(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(reverse("logout")).status_code == 403


def test_the_header_links_admin_only_for_staff(client, alice, charlie):
    client.force_login(alice)
    assert ">Admin</a>" not in client.get(reverse("chat_home")).content.decode()
    client.force_login(charlie)
    assert ">Admin</a>" in client.get(reverse("chat_home")).content.decode()


def test_static_assets_are_served_without_debug(client, db, settings):
    settings.DEBUG = False
    for path in ("css/app.css", "js/app.js", "vendor/htmx-2.0.11.min.js", "css/pygments.css"):
        response = client.get(f"/static/{path}")
        assert response.status_code == 200, path
