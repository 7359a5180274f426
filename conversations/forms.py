"""Forms of the chat pages: they parse and check input; services do the writing."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from . import accounts, limits
from .client import MAX_CHOICES, MAX_STOP_SEQUENCES, MAX_TOKENS_LIMIT
from .models import Conversation


class ServiceErrors:
    """Forms that show a service's errors."""

    def add_service_errors(self, error: ValidationError) -> None:
        """Put a service's {field: message} errors beside the fields they name."""
        if hasattr(error, "error_dict"):
            for name, errors in error.error_dict.items():
                self.add_error(name if name in self.fields else None, errors)
        else:
            self.add_error(None, error)


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
        problem = accounts.invitation_problem(code)
        if problem:
            raise ValidationError(problem, code="invitation")
        return code


class ThrottledLogin:
    """A log-in form under the failed log-in limits (limits.py): over them the attempt
    is refused without checking the password, and `refusal` tells the view to say 429.
    An account waiting for approval is told so when its password is right."""

    refusal: limits.RateLimited | None = None

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is None or not password:
            return super().clean()
        ip = self.request.META.get("REMOTE_ADDR", "") if self.request else ""
        try:
            attempt = limits.login_attempt(username=username, ip=ip)
        except limits.RateLimited as refusal:
            self.refusal = refusal
            raise
        try:
            cleaned = super().clean()
        except ValidationError:
            if self.user_cache is not None:
                # The password was right; the account may not log in here (inactive, not staff).
                attempt.succeeded()
            elif accounts.is_pending(username=username, password=password):
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


class _Form(ServiceErrors, forms.Form):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class MessageForm(_Form):
    content = forms.CharField(
        label=_("Message"),
        strip=True,
        max_length=100_000,
        widget=forms.Textarea(attrs={"rows": 1, "placeholder": _("Send a message…")}),
        error_messages={"required": _("Write a message first.")},
    )


class RenameForm(_Form):
    title = forms.CharField(label=_("Title"), max_length=200)


def _number(label: str, step: str, **kwargs: Any) -> forms.FloatField:
    # The placeholder shows the range; empty means the model's default.
    placeholder = f"{kwargs['min_value']:g} – {kwargs['max_value']:g}"
    return forms.FloatField(
        label=label,
        required=False,
        widget=forms.NumberInput(
            attrs={"step": step, "inputmode": "decimal", "placeholder": placeholder}
        ),
        **kwargs,
    )


class SettingsForm(_Form):
    """A conversation's model and generation parameters; empty means "not set"."""

    model = forms.ChoiceField(label=_("Model"))
    system_prompt = forms.CharField(
        label=_("System prompt"), required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    temperature = _number(_("Temperature"), "0.1", min_value=0, max_value=2)
    top_p = _number(_("Top P"), "0.05", min_value=0, max_value=1)
    max_tokens = forms.IntegerField(
        label=_("Max tokens"),
        required=False,
        min_value=1,
        max_value=MAX_TOKENS_LIMIT,
        widget=forms.NumberInput(attrs={"placeholder": _("model default")}),
    )
    n = forms.IntegerField(
        label=_("Choices"),
        required=False,
        min_value=1,
        max_value=MAX_CHOICES,
        widget=forms.NumberInput(attrs={"placeholder": "1"}),
    )
    stop = forms.CharField(
        label=_("Stop sequences"),
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("One per line, up to 4."),
    )
    presence_penalty = _number(_("Presence penalty"), "0.1", min_value=-2, max_value=2)
    frequency_penalty = _number(_("Frequency penalty"), "0.1", min_value=-2, max_value=2)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        models = list(settings.CHAT_MODELS)
        current = self.initial.get("model")
        # A conversation on a model no longer offered still shows what it uses.
        if current and current not in models:
            models.insert(0, current)
        self.fields["model"].choices = [(m, m) for m in models]

    @classmethod
    def for_conversation(cls, conversation: Conversation, data: Any = None) -> SettingsForm:
        initial = {
            name: getattr(conversation, name)
            for name in (
                "model", "system_prompt", "temperature", "top_p", "max_tokens", "n",
                "presence_penalty", "frequency_penalty",
            )
        }  # fmt: skip
        initial["stop"] = "\n".join(conversation.stop or [])
        return cls(data, initial=initial, prefix="settings")

    def clean_stop(self) -> list[str]:
        lines = [line.rstrip("\r") for line in self.cleaned_data["stop"].split("\n")]
        sequences = [line for line in lines if line.strip()]
        if len(sequences) > MAX_STOP_SEQUENCES:
            raise ValidationError(
                _("Enter at most %(count)s stop sequences (one per line)."),
                params={"count": MAX_STOP_SEQUENCES},
            )
        return sequences
