"""Reads about signing up: the site's sign-up mode, whether an invitation can be used,
and the accounts waiting for approval."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import GroupRetention, Invitation, PendingAccount, SiteSettings

logger = logging.getLogger(__name__)

SignupMode = SiteSettings.SignupMode


# Saving the row empties the shared cache; a per-process cache (the embedded default's)
# in another process sees the change within this many seconds.
SETTINGS_CACHE_SECONDS = 60


def site_settings() -> SiteSettings:
    """The site settings (one row read by primary key, through the cache; defaults when
    it is missing). Every chat page and send reads them: no query while cached."""
    try:
        row = cache.get(SiteSettings.CACHE_KEY)
    except Exception:  # the cache is away: the database has the row
        row = None
    if row is None:
        row = SiteSettings.objects.filter(pk=1).first() or SiteSettings(pk=1)
        try:
            cache.set(SiteSettings.CACHE_KEY, row, SETTINGS_CACHE_SECONDS)
        except Exception:
            logger.warning("Cache unavailable: the site settings are read from the database")
    return row


def signup_mode() -> str:
    """How people may sign up with a password: closed, whatever the admin chose, while
    passwords are turned off (single sign-on makes its accounts itself: accounts.oidc)."""
    if not passwords_allowed():
        return SignupMode.CLOSED
    return site_settings().signup_mode


def sso_enabled() -> bool:
    """Whether log-in with the company's OpenID provider is on (accounts.oidc)."""
    return bool(settings.OIDC_ISSUER and settings.OIDC_CLIENT_ID)


def passwords_allowed() -> bool:
    """Whether local passwords log in (PASSWORD_LOGIN); never off without single sign-on,
    which would leave no way in."""
    return settings.PASSWORD_LOGIN or not sso_enabled()


def usable_invitations() -> QuerySet[Invitation]:
    return Invitation.objects.filter(used_at__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
    )


def invitation_problem(code: str) -> str | None:
    """Why this invitation code cannot be used, or None when it can."""
    invitation = Invitation.objects.filter(code=code.strip()).first() if code.strip() else None
    if invitation is None:
        return _("This invitation code is not valid. Check the link you were sent.")
    if invitation.used_at is not None:
        return _("This invitation has already been used.")
    if invitation.expires_at is not None and invitation.expires_at <= timezone.now():
        return _("This invitation has expired. Ask for a new one.")
    return None


def is_pending(*, username: str, password: str) -> bool:
    """Whether these are the right credentials of an account waiting for approval."""
    user = (
        get_user_model()
        .objects.filter(username=username, is_active=False, pending_account__isnull=False)
        .first()
    )
    return user is not None and user.check_password(password)


def pending_accounts() -> QuerySet[PendingAccount]:
    return PendingAccount.objects.filter(user__is_active=False)


def retention_days_for(user_id: int, site_days: int | None) -> int | None:
    """How many idle days the person's conversations are kept (None: until they delete
    them): their groups' retention when any of their groups has one (the longest, "keep"
    beating any number), else the site's `site_days`."""
    rules = list(
        GroupRetention.objects.filter(group__user=user_id).values_list("retention_days", flat=True)
    )
    if not rules:
        return site_days
    return None if None in rules else max(rules)
