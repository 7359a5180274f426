"""How people sign up: the site settings an administrator changes, invitations, and
accounts waiting for approval."""

import logging
import secrets

from django.conf import settings
from django.core.cache import cache
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.upstream.protocol import MAX_CHOICES

logger = logging.getLogger(__name__)


def retention_days_field(help_text) -> models.PositiveIntegerField:
    """Idle days before conversations are deleted (the site's, or a group's); empty: kept."""
    return models.PositiveIntegerField(
        _("delete conversations idle for (days)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=help_text,
    )


class SiteSettings(models.Model):
    """Settings an administrator changes in the admin; one row (id 1)."""

    class SignupMode(models.TextChoices):
        OPEN = "open", _("Open: anyone may sign up")
        APPROVAL = "approval", _("Approval: new accounts wait for an administrator")
        INVITE = "invite", _("Invitation: sign-up needs an invitation code")
        CLOSED = "closed", _("Closed: nobody may sign up")

    signup_mode = models.CharField(
        _("sign-up"), max_length=16, choices=SignupMode.choices, default=SignupMode.OPEN
    )
    # Both defaults: in Python for new objects, in the database for rows inserted by code
    # that predates the column (a rolling deploy).
    max_choices = models.PositiveSmallIntegerField(
        _("most choices per reply"),
        default=4,
        db_default=4,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_CHOICES)],
        help_text=_(
            'The highest "Choices" (n) a conversation may ask for: each choice is a reply '
            "the model writes and the site pays for."
        ),
    )

    model_titles = models.BooleanField(
        _("titles made by the model"),
        default=True,
        db_default=True,
        help_text=_(
            "After a conversation's first reply, ask its model for a short title (a small "
            "call, counted in usage as a title call). Off: the first words of the first "
            "message stay the title."
        ),
    )

    api_keys = models.BooleanField(
        _("personal API keys"),
        default=True,
        db_default=True,
        help_text=_(
            "People may make keys to call the site's OpenAI-compatible API (/v1/) from "
            "scripts and tools, under their own budgets and limits. Off: no key works."
        ),
    )

    sharing = models.BooleanField(
        _("share links"),
        default=True,
        db_default=True,
        help_text=_(
            "People may share a read-only snapshot of a conversation by link. Off: no "
            "link opens and no new one can be made."
        ),
    )

    public_share_links = models.BooleanField(
        _("public share links"),
        default=False,
        db_default=False,
        help_text=_(
            "Anyone with a share link may open it, without an account on this site. Off: "
            "only people who are logged in."
        ),
    )

    retention_days = retention_days_field(
        _(
            "Conversations with no new message for this many days are deleted, with their "
            "messages and stored requests; usage figures stay as daily totals. Flagged "
            "conversations are kept until unflagged. Empty: conversations are kept."
        )
    )

    class StaffReading(models.TextChoices):
        ALL = "all", _("Staff may read every conversation")
        FLAGGED = "flagged", _("Staff may read only flagged conversations")
        NONE = "none", _("Staff may not read conversations")

    staff_reading = models.CharField(
        _("staff reading chats"),
        max_length=8,
        choices=StaffReading.choices,
        default=StaffReading.ALL,
        db_default=StaffReading.ALL,
        help_text=_(
            "Whether reviewers and administrators may open the content of people's chats. "
            "Everyone sees this on the Privacy page, with each time staff read their chats."
        ),
    )

    CACHE_KEY = "site-settings"

    class Meta:
        verbose_name = _("site settings")
        verbose_name_plural = _("site settings")
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="site_settings_one")]

    def __str__(self) -> str:
        return str(_("Site settings"))


@receiver([post_save, post_delete], sender=SiteSettings)
def _site_settings_changed(**kwargs) -> None:
    """The row is read through the cache (accounts.selectors.site_settings): forget it now,
    and again once the change commits (a read in between may have cached the old row)."""

    def forget() -> None:
        try:
            cache.delete(SiteSettings.CACHE_KEY)
        except Exception:
            logger.error("Cache unavailable: other processes see the old site settings a while")

    forget()
    transaction.on_commit(forget)


def invitation_code() -> str:
    return secrets.token_urlsafe(18)


class Invitation(models.Model):
    """A single-use code that lets one person sign up while sign-up is by invitation."""

    code = models.CharField(
        _("code"), max_length=64, unique=True, default=invitation_code, editable=False
    )
    note = models.CharField(
        _("note"), max_length=200, blank=True, help_text=_("Who it is for (only staff see it).")
    )
    expires_at = models.DateTimeField(
        _("expires"), null=True, blank=True, help_text=_("Leave empty for no expiry.")
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
        verbose_name=_("used by"),
    )
    used_at = models.DateTimeField(_("used"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.note or self.code


class PendingAccount(models.Model):
    """An account made while sign-up needs approval: inactive until staff approve it."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="pending_account",
        verbose_name=_("user"),
    )
    requested_at = models.DateTimeField(_("signed up"), default=timezone.now)

    class Meta:
        verbose_name = _("pending account")
        verbose_name_plural = _("pending accounts")
        ordering = ["requested_at"]

    def __str__(self) -> str:
        return str(self.user)


class GroupManager(models.Model):
    """Someone who manages a group (Django's auth.Group): they see the group's members and
    its usage report, never the members' conversations. Not staff: a manager has no admin."""

    group = models.ForeignKey(
        "auth.Group", on_delete=models.CASCADE, related_name="managers", verbose_name=_("group")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="managed_groups",
        verbose_name=_("manager"),
    )

    class Meta:
        verbose_name = _("group manager")
        verbose_name_plural = _("group managers")
        constraints = [
            models.UniqueConstraint(fields=["group", "user"], name="group_manager_once"),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.group})"


class SingleSignOnIdentity(models.Model):
    """An account's identity at the OpenID provider: the issuer and its `sub` claim, which
    find the account at each log-in (an email address can change; the subject does not).
    `groups` are the group names the last log-in's claim gave, so that a group the claim
    no longer names is taken away, and groups given in the admin are left alone."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="sso_identities",
        verbose_name=_("user"),
    )
    issuer = models.CharField(_("issuer"), max_length=255)
    subject = models.CharField(_("subject"), max_length=255)
    email = models.EmailField(_("email"), blank=True)
    groups = models.JSONField(_("groups from the claim"), default=list, blank=True)
    created_at = models.DateTimeField(_("first log-in"), default=timezone.now)
    last_login_at = models.DateTimeField(_("last log-in"), default=timezone.now)

    class Meta:
        verbose_name = _("single sign-on identity")
        verbose_name_plural = _("single sign-on identities")
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="sso_identity_once"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.issuer}"


class GroupRetention(models.Model):
    """How long a group's members' conversations are kept, instead of the site's limit
    ("delete conversations idle for (days)"). Someone in several such groups gets the
    longest of their groups' (and "keep" beats any number): a group's rule may be a
    duty to keep records, so no other group shortens it."""

    group = models.OneToOneField(
        "auth.Group", on_delete=models.CASCADE, related_name="retention", verbose_name=_("group")
    )
    retention_days = retention_days_field(
        _(
            "For this group's members, instead of the site's setting. Empty: their "
            "conversations are kept until they delete them."
        )
    )

    class Meta:
        verbose_name = _("retention for the group")
        verbose_name_plural = _("retention for the group")

    def __str__(self) -> str:
        return str(self.group)
