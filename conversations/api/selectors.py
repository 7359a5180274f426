"""Reads of personal API keys: a person's own, and one of theirs by id (404 for anyone
else's)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from .models import ApiKey


def api_keys_for_user(user) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(user=user).order_by("revoked_at", "-created_at")


def get_api_key_for_user(user, key_id: int) -> ApiKey:
    return get_object_or_404(ApiKey, pk=key_id, user=user)
