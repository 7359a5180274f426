"""Sessions from the shared cache, and from the database while the cache is away (a Redis
restart must not fail a page, a log-in or a log-out)."""

from __future__ import annotations

import time

import pytest
from django.contrib.sessions.models import Session
from django.core.cache import caches
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from conversations.accounts import sessions

UNREACHABLE = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:9/0",  # the discard port: nothing answers
        "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
    }
}
WORKING = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.fixture
def cached_sessions(settings):
    settings.SESSION_ENGINE = "conversations.accounts.sessions"
    return settings


def test_a_page_costs_no_session_query_while_the_cache_has_it(alice, cached_sessions):
    cached_sessions.CACHES = WORKING
    client = Client()
    client.force_login(alice)
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/").status_code == 200
    assert not [q for q in queries.captured_queries if "django_session" in q["sql"]]


def test_log_in_pages_and_log_out_work_while_the_cache_is_unreachable(
    alice, cached_sessions, caplog
):
    cached_sessions.CACHES = UNREACHABLE
    client = Client()
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "alice-password-1"}
    )
    assert response.status_code == 302, response.content[:300]
    assert client.get("/").status_code == 200
    assert Session.objects.count() == 1
    assert client.post("/accounts/logout/").status_code in (200, 302)
    assert Session.objects.count() == 0
    assert client.get("/").status_code == 302  # logged out: to the log-in page
    assert "deleted session stays cached" in caplog.text


def test_a_cached_session_lives_at_most_the_cache_limit(alice, cached_sessions):
    """A log-out that could not reach the cache leaves the session usable no longer."""
    cached_sessions.CACHES = WORKING
    client = Client()
    client.force_login(alice)
    cache = caches["default"]
    key = cache.make_key(sessions.SessionStore.cache_key_prefix + client.session.session_key)
    assert cache._expire_info[key] - time.time() <= sessions.CACHE_SECONDS
