"""URLs of the usage reports: each person's own, and (staff) every user's."""

from django.urls import path

from . import views

urlpatterns = [
    path("usage/", views.usage_mine, name="usage_mine"),
    path("usage/export.csv", views.usage_mine_csv, name="usage_mine_csv"),
    path("usage/all/", views.usage_all, name="usage_all"),
    path("usage/all/export.csv", views.usage_all_csv, name="usage_all_csv"),
    path("usage/all/<int:user_id>/", views.usage_user, name="usage_user"),
]
