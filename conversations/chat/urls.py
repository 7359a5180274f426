"""URLs of the chat pages (names are the contract other parts of the site rely on)."""

from django.urls import path

from . import events, views

urlpatterns = [
    path("", views.chat_home, name="chat_home"),
    path("conversations/", views.conversation_list, name="conversation_list"),
    path("c/new/", views.conversation_create, name="conversation_create"),
    path("c/<int:pk>/", views.conversation_detail, name="conversation_detail"),
    path("c/<int:pk>/messages/", views.message_send, name="message_send"),
    path("c/<int:pk>/messages/<int:mid>/select/", views.choice_select, name="choice_select"),
    path("c/<int:pk>/messages/<int:mid>/versions/", views.version_switch, name="version_switch"),
    path(
        "c/<int:pk>/messages/<int:mid>/regenerate/",
        views.reply_regenerate,
        name="reply_regenerate",
    ),
    path("c/<int:pk>/messages/<int:mid>/edit/", views.message_edit, name="message_edit"),
    path("c/<int:pk>/messages/<int:mid>/source/", views.message_source, name="message_source"),
    path("c/<int:pk>/completions/<int:cid>/", views.completion_poll, name="completion_poll"),
    path(
        "c/<int:pk>/completions/<int:cid>/retry/",
        views.completion_retry,
        name="completion_retry",
    ),
    path(
        "c/<int:pk>/completions/<int:cid>/events/",
        events.completion_events,
        name="completion_events",
    ),
    path("c/<int:pk>/completions/<int:cid>/stop/", events.completion_stop, name="completion_stop"),
    path("c/<int:pk>/settings/", views.conversation_settings, name="conversation_settings"),
    path("c/<int:pk>/rename/", views.conversation_rename, name="conversation_rename"),
    path("c/<int:pk>/title/", views.conversation_title, name="conversation_title"),
    path("c/<int:pk>/delete/", views.conversation_delete, name="conversation_delete"),
    path("c/<int:pk>/pin/", views.conversation_pin, name="conversation_pin"),
    path("c/<int:pk>/archive/", views.conversation_archive, name="conversation_archive"),
    path("c/<int:pk>/temporary/", views.conversation_temporary, name="conversation_temporary"),
    path("archived/", views.conversation_archived, name="conversation_archived"),
]
