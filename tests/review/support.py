"""Helpers of the review tests: admin URLs and an API call made through the ORM."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.urls import reverse

from conversations.models import Completion


def changelist(model) -> str:
    return reverse(f"admin:conversations_{model._meta.model_name}_changelist")


def change_url(obj) -> str:
    return reverse(f"admin:conversations_{obj._meta.model_name}_change", args=[obj.pk])


def make_api_call(user: User, asked: str = "the purple elephant", said: str = "a grey mouse"):
    """A call to the site's API: no conversation, its request and reply on its own row."""
    return Completion.objects.create(
        conversation=None,
        source=Completion.Source.API,
        user=user,
        model="gpt-4o-mini",
        request_body={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": asked}]},
        status=Completion.Status.SUCCEEDED,
        choices=[
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": said}}
        ],
        prompt_tokens=3,
        completion_tokens=3,
        total_tokens=6,
        attempts=1,
    )
