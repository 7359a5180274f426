"""URLs of the search of one's own chats."""

from django.urls import path

from . import views

urlpatterns = [path("search/", views.chat_search, name="chat_search")]
