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
        EXPORT_ACCOUNT = "export_account", _("downloaded an account's data")
        DELETE_ACCOUNT = "delete_account", _("deleted an account")
        RETENTION_PURGE = "retention_purge", _("deleted idle conversations")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # None for the site itself (a retention purge) and for a person deleting their own
    # account; a staff member who leaves keeps their records, without their name.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_events",
    )
    action = models.CharField(_("action"), max_length=32, choices=Action.choices)
    conversation_ids = models.JSONField(_("conversations"), default=list)
    # API calls read (they belong to no conversation).
    completion_ids = models.JSONField(_("API calls"), default=list, blank=True)
    # Counts and ids, never content (a purge's counts, a deleted account's id).
    details = models.JSONField(_("details"), default=dict, blank=True)
    created_at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.actor} {self.get_action_display()} {self.conversation_ids}"


class AuditSubject(models.Model):
    """Whose conversation (or API call) an audit event read: one row per item, so a
    person's Privacy page lists every time staff opened or exported their chats."""

    event = models.ForeignKey(AuditEvent, on_delete=models.CASCADE, related_name="subjects")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="audit_subjects"
    )
    conversation_id = models.PositiveBigIntegerField(null=True, blank=True)
    completion_id = models.PositiveBigIntegerField(null=True, blank=True)
    # The event's time, copied: the Privacy page lists a person's newest first by index.
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["owner", "-created_at"], name="audit_subject_owner")]

    def __str__(self) -> str:
        return f"{self.event_id} {self.owner_id}"
