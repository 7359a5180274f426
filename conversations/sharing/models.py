"""Share links: a read-only snapshot of a conversation that its owner hands out by link."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def share_token() -> str:
    # 256 bits from the OS's CSPRNG, URL-safe: unguessable, and never derived from an id.
    return secrets.token_urlsafe(32)


class ShareLink(models.Model):
    """The snapshot is the path from the conversation's first message down to `leaf`, the
    last message of the path the owner was on when sharing: messages are never changed
    in place (an edit or a regeneration is a new sibling), so what the link shows stays
    what was shared, and nothing written later is on it. A revoked link stays listed."""

    conversation = models.ForeignKey(
        "conversations.Conversation", on_delete=models.CASCADE, related_name="share_links"
    )
    # Denormalised from the conversation: the owner's list of links, and the admin's.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="share_links"
    )
    token = models.CharField(max_length=64, unique=True, default=share_token, editable=False)
    leaf = models.ForeignKey(
        "conversations.Message",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("last message shared"),
    )
    # The title as it was when shared (a later rename does not change the link's page).
    title = models.CharField(_("title"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("share link")
        verbose_name_plural = _("share links")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="share_owner_created"),
            models.Index(
                fields=["-created_at"],
                name="share_live_created",
                condition=models.Q(revoked_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return self.title or str(_("New chat"))

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None
