"""The app's URLs, each domain's own."""

from django.urls import include, path

urlpatterns = [
    path("", include("conversations.accounts.urls")),
    path("", include("conversations.chat.urls")),
    path("", include("conversations.usage.urls")),
    path("", include("conversations.api.urls")),
    path("", include("conversations.search.urls")),
    path("", include("conversations.portability.urls")),
    path("", include("conversations.sharing.urls")),
    path("", include("conversations.review.urls")),
    path("", include("conversations.privacy.urls")),
]
