"""Celery tasks of accounts: expired sessions cleared from the database (beat, daily)."""

from __future__ import annotations

from celery import shared_task
from django.contrib.sessions.models import Session
from django.utils import timezone


@shared_task(name="conversations.tasks.sessions_clear", ignore_result=True)
def sessions_clear() -> int:
    """Delete expired sessions (Django's `clearsessions`, counted): a deleted account's
    other sessions no longer work at once, and their rows go here."""
    deleted, _per_model = Session.objects.filter(expire_date__lt=timezone.now()).delete()
    return deleted
