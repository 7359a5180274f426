"""chatsite: a self-hosted, multi-user chat web app for OpenAI-compatible models."""

from .celery import app as celery_app

__all__ = ("celery_app",)
