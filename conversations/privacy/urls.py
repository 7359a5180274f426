"""URLs of a person's own account page: its download and its deletion."""

from django.urls import path

from . import views

urlpatterns = [
    path("account/", views.account, name="account"),
    path("account/export/", views.account_export, name="account_export"),
    path("account/delete/", views.account_delete, name="account_delete"),
]
