"""Accounts: how people may sign up, set by an administrator in the admin (site settings),
invitations, and approval of accounts that wait for it.

Sign-up modes: "open" (anyone; the default), "approval" (the account is made inactive,
with a PendingAccount row, until staff approve it), "invite" (a valid, unused, unexpired
invitation code is needed and is used up) and "closed". Rejecting a pending account
deletes it: it never had access, and its username becomes free again.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import Invitation, PendingAccount, SiteSettings

SignupMode = SiteSettings.SignupMode


def site_settings() -> SiteSettings:
    """The site settings (one row read by primary key; defaults when it is missing)."""
    return SiteSettings.objects.filter(pk=1).first() or SiteSettings(pk=1)


def signup_mode() -> str:
    return site_settings().signup_mode


def _usable_invitations() -> QuerySet[Invitation]:
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


def account_signup(*, username: str, password: str, invite_code: str = "") -> AbstractBaseUser:
    """Make the account as the current sign-up mode says (the form has checked the
    username and password). The user is inactive, and pending, under "approval"."""
    mode = signup_mode()
    if mode == SignupMode.CLOSED:
        raise ValidationError(_("Sign-up is closed."))
    with transaction.atomic():
        user = get_user_model().objects.create_user(
            username, password=password, is_active=mode != SignupMode.APPROVAL
        )
        if mode == SignupMode.APPROVAL:
            PendingAccount.objects.create(user=user)
        elif mode == SignupMode.INVITE:
            # Used up here, with a conditional update: two sign-ups never share one code.
            claimed = (
                _usable_invitations()
                .filter(code=invite_code.strip())
                .update(used_by=user, used_at=timezone.now())
            )
            if not claimed:
                problem = invitation_problem(invite_code)
                raise ValidationError({"invite": problem or _("This invitation cannot be used.")})
    return user


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


def accounts_approve(*, pending: QuerySet[PendingAccount]) -> int:
    """Let these accounts log in; returns how many were approved."""
    with transaction.atomic():
        user_ids = list(pending.values_list("user_id", flat=True))
        approved = get_user_model().objects.filter(pk__in=user_ids).update(is_active=True)
        PendingAccount.objects.filter(user_id__in=user_ids).delete()
    return approved


def accounts_reject(*, pending: QuerySet[PendingAccount]) -> int:
    """Delete these accounts (and their pending rows); returns how many were deleted.
    Only accounts still inactive: one activated meanwhile in the users admin stays."""
    with transaction.atomic():
        user_ids = list(pending.filter(user__is_active=False).values_list("user_id", flat=True))
        get_user_model().objects.filter(pk__in=user_ids, is_active=False).delete()
    return len(user_ids)
