"""URLs of share links (names are the contract other parts of the site rely on)."""

from django.urls import path

from . import views

urlpatterns = [
    path("c/<int:pk>/share/", views.conversation_share, name="conversation_share"),
    path("shares/", views.share_links, name="share_links"),
    path("shares/<int:link_id>/revoke/", views.share_link_revoke, name="share_link_revoke"),
    path("s/<str:token>/", views.shared_conversation, name="shared_conversation"),
]
