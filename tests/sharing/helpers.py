"""What the share links' tests do often: make a link through the service, add a turn
after it, change the site settings."""

from __future__ import annotations

from django.urls import reverse

from conversations.accounts.models import SiteSettings
from conversations.chat.models import Completion, Conversation, Message
from conversations.sharing import services
from conversations.sharing.models import ShareLink


def share(conversation: Conversation) -> ShareLink:
    return services.share_link_create(owner=conversation.owner, conversation=conversation)


def url_of(link: ShareLink) -> str:
    return reverse("shared_conversation", args=[link.token])


def add_turn(conversation: Conversation, user_text: str, reply_text: str, *, after: Message):
    """A user message after `after` and its reply (the path goes on through them)."""
    asked = Message.objects.create(
        conversation=conversation,
        role="user",
        content=user_text,
        parent=after,
        position=after.position + 1,
    )
    completion = Completion.objects.create(
        conversation=conversation,
        user=conversation.owner,
        request_message=asked,
        model=conversation.model,
        status=Completion.Status.SUCCEEDED,
    )
    reply = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content=reply_text,
        parent=asked,
        position=asked.position + 1,
        completion=completion,
        choice_index=0,
    )
    return asked, reply


def site(**fields) -> None:
    SiteSettings.objects.update_or_create(pk=1, defaults=fields)
