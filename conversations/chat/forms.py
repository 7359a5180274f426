"""Forms of the chat pages: they parse and check input; services do the writing."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from conversations.accounts.selectors import site_settings
from conversations.providers import catalog
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


class ModelSelect(forms.Select):
    """The Model select: models grouped by provider, the ones that cannot be used now
    greyed out (disabled) with the provider's last error as their title."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unavailable: dict[str, str] = {}

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        if value in self.unavailable:
            option["attrs"]["title"] = self.unavailable[value]
            if not selected:
                option["attrs"]["disabled"] = True
        return option


class SettingsForm(Form):
    """A conversation's model and generation parameters; empty means "not set"."""

    model = forms.ChoiceField(label=_("Model"), widget=ModelSelect)
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

    def __init__(self, *args: Any, owner_id: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The models the conversation's owner may use (model access rules of groups).
        offers = catalog.offers() if owner_id is None else catalog.offers_for(owner_id)
        self.offered = {offer.key: offer for offer in offers}
        groups: dict[str, list[tuple[str, str]]] = {}
        for offer in offers:
            label = (
                offer.label
                if offer.available
                else _("%(model)s (unavailable)") % {"model": offer.label}
            )
            groups.setdefault(offer.provider_name, []).append((offer.key, label))
        current = self.initial.get("model")
        # A conversation on a model no longer offered still shows what it uses.
        if current and current not in {offer.key for offer in offers}:
            groups = {"": [(current, current)], **groups}
        choices = list(groups.items())
        # One provider: a plain list (no group heading).
        self.fields["model"].choices = choices[0][1] if len(choices) == 1 else choices
        self.fields["model"].widget.unavailable = {
            offer.key: offer.error for offer in offers if not offer.available
        }
        self.fields["n"] = _choices(site_settings().max_choices)

    def clean_model(self) -> str:
        key = self.cleaned_data["model"]
        offer = self.offered.get(key)
        if offer is not None and not offer.available and key != self.initial.get("model"):
            raise ValidationError(
                _("%(model)s is unavailable right now (%(error)s)."),
                params={"model": offer.label, "error": offer.error},
                code="model_unavailable",
            )
        return key

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        # The select's value names the provider too ("<provider id>:<model>").
        key = cleaned.get("model")
        if key is not None:
            offer = self.offered.get(key)
            if offer is not None:
                cleaned["model"], cleaned["provider_id"] = offer.model, offer.provider_id
            else:
                cleaned["provider_id"] = self.initial.get("provider_id")
        return cleaned

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
        # The select's value for the conversation's model (`Offer.key`).
        initial["provider_id"] = conversation.provider_id
        initial["model"] = catalog.offer_key(conversation.provider_id, conversation.model)
        return cls(data, initial=initial, prefix="settings", owner_id=conversation.owner_id)

    def clean_stop(self) -> list[str]:
        lines = [line.rstrip("\r") for line in self.cleaned_data["stop"].split("\n")]
        sequences = [line for line in lines if line.strip()]
        if len(sequences) > MAX_STOP_SEQUENCES:
            raise ValidationError(
                _("Enter at most %(count)s stop sequences (one per line)."),
                params={"count": MAX_STOP_SEQUENCES},
            )
        return sequences
