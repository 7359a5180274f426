"""Expired sessions leave the database every day (beat), the others stay."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.sessions.models import Session
from django.utils import timezone

from chatsite.celery import app as celery_app
from conversations.accounts import tasks


def test_expired_sessions_are_cleared_daily(db, settings):
    schedule = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "conversations.tasks.sessions_clear" in schedule
    assert "conversations.tasks.sessions_clear" in celery_app.tasks
    now = timezone.now()
    Session.objects.create(session_key="old", session_data="", expire_date=now - timedelta(1))
    Session.objects.create(session_key="live", session_data="", expire_date=now + timedelta(1))
    assert tasks.sessions_clear() == 1
    assert list(Session.objects.values_list("session_key", flat=True)) == ["live"]
