"""The audit trail of staff access to users' conversations."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AuditEvent(models.Model):
    """Staff access to users' conversations: who read or exported what, and when."""

    class Action(models.TextChoices):
        VIEW_TRANSCRIPT = "view_transcript", _("viewed transcript")
        EXPORT_JSON = "export_json", _("exported as JSON")
        EXPORT_MARKDOWN = "export_markdown", _("exported as Markdown")
        EXPORT_CSV = "export_csv", _("exported as CSV")
        VIEW_API_CALL = "view_api_call", _("viewed API call")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="audit_events"
    )
    action = models.CharField(_("action"), max_length=32, choices=Action.choices)
    conversation_ids = models.JSONField(_("conversations"), default=list)
    # API calls read (they belong to no conversation).
    completion_ids = models.JSONField(_("API calls"), default=list, blank=True)
    created_at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.actor} {self.get_action_display()} {self.conversation_ids}"
