"""Accounts: how people may sign up, set by an administrator in the admin (site settings),
invitations, and approval of accounts that wait for it.

Sign-up modes: "open" (anyone; the default), "approval" (the account is made inactive,
with a PendingAccount row, until staff approve it), "invite" (a valid, unused, unexpired
invitation code is needed and is used up) and "closed". Rejecting a pending account
deletes it: it never had access, and its username becomes free again. An account being
deleted (privacy.services) is first locked out everywhere at once (`account_lock`).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import PendingAccount
from .selectors import SignupMode, invitation_problem, signup_mode, usable_invitations


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
                usable_invitations()
                .filter(code=invite_code.strip())
                .update(used_by=user, used_at=timezone.now())
            )
            if not claimed:
                problem = invitation_problem(invite_code)
                raise ValidationError({"invite": problem or _("This invitation cannot be used.")})
    return user


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


def account_lock(*, user: AbstractBaseUser) -> None:
    """Log the user out everywhere at once, for good: the account is made inactive, with
    an unusable password. Every request loads the session's user from the database (its
    session from the cache or the database alike) and refuses an inactive one, or one whose
    password no longer matches the session's hash of it: each session of theirs stops
    authenticating now, their keys stop (api.services.key_authenticate) and no log-in works.

    Sessions have no per-user index, and finding their rows would mean decoding every
    session: the rows of their other sessions stay (the user's id, no content) until they
    expire and `clearsessions` removes them."""
    get_user_model().objects.filter(pk=user.pk).update(
        is_active=False, password=make_password(None)
    )
