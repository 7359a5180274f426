"""URLs of search."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
