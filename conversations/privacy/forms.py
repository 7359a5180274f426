"""The form that confirms the deletion of one's own account."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _


class AccountDeleteForm(forms.Form):
    """The current password (the right person, not a borrowed session), and a checkbox
    saying they know what goes. An account with no password of its own (made by single
    sign-on) types its username instead."""

    password = forms.CharField(
        label=_("Your password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    understood = forms.BooleanField(
        label=_("I understand this deletes all my conversations"),
        error_messages={"required": _("Tick the box to say you understand.")},
    )

    def __init__(self, *args: Any, user: AbstractBaseUser, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.user = user
        if not user.has_usable_password():
            self.fields["password"] = forms.CharField(
                label=_("Type your username to confirm"),
                widget=forms.TextInput(attrs={"autocomplete": "off"}),
            )

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.has_usable_password():
            if password != self.user.get_username():
                raise ValidationError(
                    _("That is not your username. Nothing was deleted."), code="password"
                )
            return password
        if not self.user.check_password(password):
            raise ValidationError(
                _("That is not your password. Nothing was deleted."), code="password"
            )
        return password
