"""The admin's forms of providers: the provider itself (its API key write-only) and the
rows of its models (one default for the whole site)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from . import catalog
from .models import ModelAccess, Provider, ProviderModel


class ProviderForm(forms.ModelForm):
    # Not the model's field (which holds the encrypted token): write-only, never rendered.
    api_key = forms.CharField(
        label=_("API key"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Leave empty to keep the saved key."),
    )
    clear_api_key = forms.BooleanField(
        label=_("Remove the saved key"),
        required=False,
        help_text=_("For servers that take no key."),
    )

    class Meta:
        model = Provider
        fields = ("name", "base_url", "connect_timeout", "read_timeout", "enabled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance.has_api_key and "clear_api_key" in self.fields:
            del self.fields["clear_api_key"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("api_key") and cleaned.get("clear_api_key"):
            self.add_error("clear_api_key", _("Enter a new key or remove the saved one, not both."))
        for field in ("connect_timeout", "read_timeout"):
            if cleaned.get(field) is not None and cleaned[field] <= 0:
                self.add_error(field, _("Enter a number of seconds above 0."))
        return cleaned


class ProviderModelForm(forms.ModelForm):
    """A provider's model, on its provider's page (a table row) or in the list of models."""

    class Meta:
        model = ProviderModel
        fields = ("model_id", "display_name", "enabled", "is_default")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:
            return
        if "model_id" in self.fields:
            # Its id is what the provider answers to; a different one is another row.
            self.fields["model_id"].disabled = True
        # A table's inputs say which model they are for (screen readers, tests).
        names = {
            "display_name": _("Display name of %(model)s"),
            "enabled": _("Offer %(model)s"),
            "is_default": _("Make %(model)s the default for new chats"),
        }
        for field, name in names.items():
            if field in self.fields:
                label = name % {"model": self.instance.model_id}
                self.fields[field].widget.attrs["aria-label"] = label

    def _get_validation_exclusions(self) -> set[str]:
        # Another model being the default is no error here: saving this one clears it
        # (services.provider_model_save), where the model's constraint check would refuse.
        return {*super()._get_validation_exclusions(), "is_default"}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        enabled = cleaned.get("enabled", self.instance.enabled)
        if cleaned.get("is_default") and not enabled:
            self.add_error("is_default", _("Offer the model to make it the default for new chats."))
        return cleaned


class OneDefault:
    """A formset of models in which at most one is ticked the default."""

    def clean(self) -> None:
        super().clean()
        defaults = [
            form
            for form in self.forms
            if form.cleaned_data.get("is_default") and not form.cleaned_data.get("DELETE")
        ]
        if len(defaults) > 1:
            raise ValidationError(_("Only one model can be the default for new chats."))


class ProviderModelFormSet(OneDefault, forms.BaseInlineFormSet):
    pass


class ProviderModelListFormSet(OneDefault, forms.BaseModelFormSet):
    pass


class ModelAccessForm(forms.ModelForm):
    """A rule: many models at once, kept for the groups chosen."""

    model_keys = forms.MultipleChoiceField(
        label=_("Models"),
        widget=forms.CheckboxSelectMultiple,
        help_text=_(
            "Only members of the groups below may use these models (members of any rule "
            "that lists a model). A model no rule lists is for everyone."
        ),
    )

    class Meta:
        model = ModelAccess
        fields = ("name", "model_keys", "groups")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [
            (offer.key, f"{offer.label} ({offer.provider_name})") for offer in catalog.offers()
        ]
        known = {key for key, _label in choices}
        # A model no longer offered stays listed while the rule names it.
        choices += [(key, key) for key in self.instance.model_keys or [] if key not in known]
        self.fields["model_keys"].choices = choices
