"""Forms of the chat pages: they parse and check input; services do the writing."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from conversations.accounts.selectors import site_settings
from conversations.shared.forms import Form
from conversations.upstream.protocol import MAX_CHOICES, MAX_STOP_SEQUENCES, MAX_TOKENS_LIMIT

from .models import Conversation


class MessageForm(Form):
    content = forms.CharField(
        label=_("Message"),
        strip=True,
        max_length=100_000,
        widget=forms.Textarea(attrs={"rows": 1, "placeholder": _("Send a message…")}),
        error_messages={"required": _("Write a message first.")},
    )


class RenameForm(Form):
    title = forms.CharField(label=_("Title"), max_length=200)


class ToggleForm(Form):
    """Pin or unpin, archive or unarchive: `on` is 1 to set it, anything else to clear it."""

    on = forms.BooleanField(required=False)


class TemporaryForm(Form):
    """How long a chat is kept: for good (blank), a day after its last message, or until
    its owner opens another chat."""

    mode = forms.ChoiceField(
        label=_("Keep this chat"),
        choices=Conversation.Temporary.choices,
        required=False,
    )


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


def _choices(most: int) -> forms.IntegerField:
    return forms.IntegerField(
        label=_("Choices"),
        required=False,
        min_value=1,
        max_value=most,
        widget=forms.NumberInput(attrs={"placeholder": "1"}),
        help_text=ngettext_lazy(
            "Replies written at once, up to %(most)d on this site.",
            "Replies written at once, up to %(most)d on this site.",
            "most",
        )
        % {"most": most},
    )


class SettingsForm(Form):
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
    n = _choices(MAX_CHOICES)  # the site's own limit is set in __init__
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
        self.fields["n"] = _choices(site_settings().max_choices)

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
