"""Sign-up and log-in forms; log-in (the site's and the admin's) under the failed log-in
limits (throttling.py)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from conversations.shared.forms import ServiceErrors
from conversations.shared.ratelimits import RateLimited

from . import selectors, throttling


class SignupForm(ServiceErrors, UserCreationForm):
    """Django's own sign-up form (labels "Username", "Password", "Password confirmation"),
    and the invitation code first when sign-up is by invitation."""

    invite = forms.CharField(label=_("Invitation code"), max_length=64)
    field_order = ["invite", "username", "password1", "password2"]

    def __init__(self, *args: Any, invite_required: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        if not invite_required:
            del self.fields["invite"]

    def clean_invite(self) -> str:
        code = self.cleaned_data["invite"].strip()
        problem = selectors.invitation_problem(code)
        if problem:
            raise ValidationError(problem, code="invitation")
        return code


class ThrottledLogin:
    """A log-in form under the failed log-in limits (throttling.py): over them the attempt
    is refused without checking the password, and `refusal` tells the view to say 429.
    An account waiting for approval is told so when its password is right. While passwords
    are turned off every attempt is refused (`passwords_off`)."""

    refusal: RateLimited | None = None
    passwords_off = False

    def clean(self) -> dict[str, Any]:
        if not selectors.passwords_allowed():
            # PASSWORD_LOGIN=false: no password is checked, right or wrong (the view says 403).
            self.passwords_off = True
            raise ValidationError(
                _("Passwords are turned off on this site: log in with %(name)s.")
                % {"name": settings.OIDC_PROVIDER_NAME},
                code="passwords_off",
            )
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is None or not password:
            return super().clean()
        ip = self.request.META.get("REMOTE_ADDR", "") if self.request else ""
        try:
            attempt = throttling.login_attempt(username=username, ip=ip)
        except RateLimited as refusal:
            self.refusal = refusal
            raise
        try:
            cleaned = super().clean()
        except ValidationError:
            if self.user_cache is not None:
                # The password was right; the account may not log in here (inactive, not staff).
                attempt.succeeded()
            elif selectors.is_pending(username=username, password=password):
                attempt.succeeded()
                raise ValidationError(
                    _("Your account is waiting for approval by an administrator."),
                    code="pending",
                ) from None
            raise
        attempt.succeeded()
        return cleaned


class LoginForm(ThrottledLogin, AuthenticationForm):
    """Django's own login form, its labels without a trailing colon."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class AdminLoginForm(ThrottledLogin, AdminAuthenticationForm):
    """The admin's log-in form, under the same limits."""
