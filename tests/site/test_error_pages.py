"""404, 403 and 500 pages take the site's look, in both languages, with a way back
(issue 17, defect 5)."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from django.urls import reverse
from django.utils import translation
from django.views.defaults import server_error


def test_a_missing_page_is_the_sites_404_with_a_link_home(alice_client):
    response = alice_client.get("/no/such/page/")
    page = response.content.decode()

    assert response.status_code == 404
    assert "/static/css/app.css" in page or "app." in page  # the site's stylesheet
    assert "Page not found" in page
    assert f'href="{reverse("chat_home")}"' in page
    assert "Log out" in page  # the site's own header, signed in


def test_someone_elses_conversation_is_the_same_404(alice_client, bob):
    from conversations.chat.services import conversations as chat_services

    theirs = chat_services.conversation_create(owner=bob)
    response = alice_client.get(reverse("conversation_detail", args=[theirs.pk]))
    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


def test_the_404_in_chinese(client, db):
    response = client.get("/no/such/page/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    page = response.content.decode()
    assert '<html lang="zh-hans">' in page
    assert "页面不存在" in page
    assert "返回聊天" in page


def test_a_refused_page_is_the_sites_403(client, charlie):
    client.force_login(charlie)  # staff, not a superuser: the site settings are refused
    response = client.get(reverse("admin:conversations_sitesettings_changelist"))
    page = response.content.decode()
    assert response.status_code == 403
    assert "Not allowed" in page
    assert f'href="{reverse("chat_home")}"' in page


@pytest.mark.parametrize(
    ("language", "heading"), [("en", "Something went wrong"), ("zh-hans", "出错了")]
)
def test_the_500_page_needs_no_database_and_speaks_both_languages(language, heading):
    # No `db` fixture: a query here would raise.
    request = RequestFactory().get("/")
    with translation.override(language):
        response = server_error(request)
    page = response.content.decode()
    assert response.status_code == 500
    assert heading in page
    assert "css/app" in page
    assert f'href="{reverse("chat_home")}"' in page
