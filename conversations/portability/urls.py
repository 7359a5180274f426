"""URLs of a person's own export and import."""

from django.urls import path

from . import views

urlpatterns = [
    path("c/<int:pk>/export/", views.conversation_export, name="conversation_export"),
    path("export/chats.zip", views.chats_export, name="chats_export"),
    path("import/", views.chats_import, name="chats_import"),
]
