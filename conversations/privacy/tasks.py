"""Celery tasks of privacy: the retention purge, run by beat (RETENTION_PURGE_INTERVAL)."""

from __future__ import annotations

from celery import shared_task

from . import retention


@shared_task(name="conversations.tasks.retention_purge", ignore_result=True)
def retention_purge() -> str:
    done = retention.retention_purge()
    return f"{done.conversations} conversations, {done.api_calls} API calls"
