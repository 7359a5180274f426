"""A light, dark or system theme, chosen in the header, that sticks (issue 17)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.http import HTMX


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_a_chosen_theme_is_kept_and_drawn_on_every_page(client, alice, theme):
    response = client.post(reverse("theme_set"), {"theme": theme, "next": "/usage/"})
    assert response.status_code == 302 and response["Location"] == "/usage/"
    cookie = response.cookies["theme"]
    assert cookie.value == theme and cookie["max-age"] == 365 * 24 * 3600
    assert cookie["httponly"] and cookie["samesite"] == "Lax"

    page = client.get(reverse("login")).content.decode()
    assert f'data-theme="{theme}"' in page
    assert f'<option value="{theme}" selected>' in page


def test_system_draws_no_theme_and_follows_the_operating_system(client, db):
    client.post(reverse("theme_set"), {"theme": "system"})
    page = client.get(reverse("login")).content.decode()
    assert "data-theme" not in page
    assert '<option value="system" selected>' in page


def test_the_pages_script_gets_no_content(client, db):
    response = client.post(reverse("theme_set"), {"theme": "dark"}, **HTMX)
    assert response.status_code == 204
    assert response.cookies["theme"].value == "dark"


@pytest.mark.parametrize("theme", ["", "purple", "<script>"])
def test_an_unknown_theme_is_refused_and_nothing_is_kept(client, db, theme):
    response = client.post(reverse("theme_set"), {"theme": theme})
    assert response.status_code == 400
    assert "theme" not in response.cookies


def test_a_forged_theme_cookie_is_ignored(client, db):
    client.cookies["theme"] = '"><script>'
    page = client.get(reverse("login")).content.decode()
    assert "data-theme" not in page


def test_it_goes_back_only_to_this_site(client, db):
    response = client.post(reverse("theme_set"), {"theme": "dark", "next": "https://evil.test/"})
    assert response["Location"] == reverse("chat_home")


def test_it_takes_only_post_with_csrf(db):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    assert strict.get(reverse("theme_set")).status_code == 405
    assert strict.post(reverse("theme_set"), {"theme": "dark"}).status_code == 403
