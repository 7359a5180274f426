"""URLs of the review pages people see: the Privacy page (staff review is in the admin)."""

from django.urls import path

from . import views

urlpatterns = [
    path("privacy/", views.privacy, name="privacy"),
]
