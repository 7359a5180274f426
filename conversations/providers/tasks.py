"""Celery tasks of providers: their model lists read in the background (beat, every
PROVIDER_REFRESH_INTERVAL, and "Refresh now" in the admin)."""

from __future__ import annotations

from celery import shared_task

from . import services
from .models import Provider


@shared_task(name="conversations.tasks.providers_refresh", ignore_result=True)
def providers_refresh() -> str:
    listed = services.providers_refresh()
    return f"{len(listed)} providers, {sum(listed.values())} models"


@shared_task(name="conversations.tasks.provider_refresh", ignore_result=True)
def provider_refresh(provider_id: int) -> int:
    provider = Provider.objects.filter(pk=provider_id).first()
    if provider is None:
        return 0
    return len(services.provider_models_refresh(provider=provider))
