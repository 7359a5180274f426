"""Personal API keys: a person's scripts and tools call the site's OpenAI-compatible API
with one (api/serving.py), under the same budgets, limits, usage and review as the chat."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ApiKey(models.Model):
    """A key is shown once in full (`cs-` + prefix + secret) and kept only as a salted
    SHA-256 of itself: a lookup by its unique prefix, then a constant-time compare
    (api/keys.py). A revoked key stays listed (its calls keep pointing at it)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(_("name"), max_length=100)
    # The first characters after "cs-": how a key is found, and how it is shown in lists.
    prefix = models.CharField(_("prefix"), max_length=16, unique=True, editable=False)
    salt = models.CharField(max_length=32, editable=False)
    hashed = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    # Written at most once a minute (api/services.py), not on every call.
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "-created_at"], name="apikey_user_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.shown})"

    @property
    def shown(self) -> str:
        """The key as lists show it: its start only."""
        return f"cs-{self.prefix}…"

    def is_live(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
