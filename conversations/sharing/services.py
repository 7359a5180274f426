"""Writes of share links: made from the path the owner is on now, and revoked (at once)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.accounts.selectors import site_settings
from conversations.chat.models import Completion, Conversation, Message
from conversations.chat.selectors import get_conversation_for_user

from .models import ShareLink
from .selectors import message_tree

# Live links one conversation may have at once (a revoked one no longer counts).
MAX_LIVE_LINKS = 20


def share_link_create(*, owner: AbstractBaseUser, conversation: Conversation) -> ShareLink:
    """A new link to the path `owner` is on in `conversation` now, down to its last
    message, with the title as it is now. Refused (ValidationError) when sharing is off
    on the site, when nothing was sent yet, while a reply is being written, and past
    MAX_LIVE_LINKS live links; 404 for anyone else's conversation."""
    if not site_settings().sharing:
        raise ValidationError(_("Sharing is turned off on this site."), code="off")
    with transaction.atomic():
        # The lock a send takes: no reply can start between the check below and the link.
        locked = get_conversation_for_user(owner, conversation.pk, for_update=True)
        writing = Completion.objects.filter(
            conversation_id=locked.pk,
            purpose=Completion.Purpose.REPLY,
            status__in=Completion.ACTIVE,
        ).exists()
        leaf = message_tree(locked.pk).leaf()
        if leaf is None:
            raise ValidationError(
                _("There is nothing to share yet: send a message first."), code="empty"
            )
        # Refused rather than cut short at the last finished reply: a link would leave out
        # the question just asked (or end on it, never answered), without saying so.
        if writing or leaf.status == Message.Status.STREAMING:
            raise ValidationError(
                _("Wait for the reply being written to finish before sharing."), code="busy"
            )
        live = ShareLink.objects.filter(conversation_id=locked.pk, revoked_at__isnull=True)
        if live.count() >= MAX_LIVE_LINKS:
            raise ValidationError(
                _("This conversation has %(count)d live share links already: revoke one first.")
                % {"count": MAX_LIVE_LINKS},
                code="too_many",
            )
        return ShareLink.objects.create(
            conversation=locked, owner=owner, leaf_id=leaf.pk, title=locked.title
        )


def share_link_revoke(*, link: ShareLink) -> ShareLink:
    """The link stops opening at once; revoking twice keeps the first time."""
    share_links_revoke(links=ShareLink.objects.filter(pk=link.pk))
    link.refresh_from_db(fields=["revoked_at"])
    return link


def share_links_revoke(*, links: QuerySet[ShareLink]) -> int:
    """Revoke every live link of `links` (one UPDATE: staff's admin action); how many."""
    return links.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
