"""URLs of a person's API keys page (the API itself is served ahead of Django:
api/serving.py)."""

from django.urls import path

from . import views

urlpatterns = [
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
]
