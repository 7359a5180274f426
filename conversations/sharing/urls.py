"""URLs of sharing."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
