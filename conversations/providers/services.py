"""Writes of providers: their model lists read in the background, what the worker's
calls tell of their health, admins' changes, and the keys' rotation."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.upstream import protocol
from conversations.upstream.models_list import list_models

from . import catalog, secrets
from .models import Provider, ProviderModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """Where a call goes: a provider's address and key (never logged, never stored)."""

    provider_id: int | None
    name: str
    base_url: str
    api_key: str
    connect_timeout: float
    timeout: float


class ProviderGone(protocol.PermanentError):
    """The provider a call was queued for was deleted or turned off since."""


def route(provider_id: int | None) -> Route:
    """The provider to call for a completion queued on `provider_id` (None: the
    environment's own)."""
    if provider_id is None:
        return Route(
            None,
            settings.DEFAULT_PROVIDER_NAME,
            settings.OPENAI_BASE_URL,
            settings.OPENAI_API_KEY,
            settings.OPENAI_CONNECT_TIMEOUT,
            settings.OPENAI_TIMEOUT,
        )
    provider = Provider.objects.filter(pk=provider_id, enabled=True).first()
    if provider is None:
        raise ProviderGone(
            _("This model's provider was removed or turned off."), error_type="provider_gone"
        )
    return Route(
        provider.pk,
        provider.name,
        provider.base_url,
        provider.api_key,
        provider.connect_timeout,
        provider.read_timeout,
    )


def provider_models_refresh(*, provider: Provider) -> list[str]:
    """Read the provider's model list (short timeouts) and keep it: new models appear
    (not offered until an admin enables them), missing ones are marked, and the provider's
    health notes the time and any error. Returns the ids listed ([] on error)."""
    now = timezone.now()
    try:
        ids = list_models(
            base_url=provider.base_url,
            api_key=provider.api_key,
            connect_timeout=settings.PROVIDER_MODELS_CONNECT_TIMEOUT,
            timeout=settings.PROVIDER_MODELS_TIMEOUT,
        )
    except protocol.UpstreamError as error:
        if error.http_status == 404:
            # A server without /models: its models are the ones added by hand, and reaching
            # it at all says it is up.
            Provider.objects.filter(pk=provider.pk).update(
                models_checked_at=now, models_ok_at=now, models_error=""
            )
            catalog.forget()
            return list(provider.models.values_list("model_id", flat=True))
        logger.warning("Provider %s: model list unreadable (%s)", provider.pk, error.error_type)
        Provider.objects.filter(pk=provider.pk).update(
            models_checked_at=now, models_error=error.message or error.error_type
        )
        catalog.forget()
        return []
    with transaction.atomic():
        known = set(provider.models.values_list("model_id", flat=True))
        ProviderModel.objects.bulk_create(
            [
                ProviderModel(provider=provider, model_id=i, last_seen_at=now)
                for i in ids
                if i not in known
            ],
            ignore_conflicts=True,
        )
        provider.models.filter(model_id__in=ids).update(listed=True, last_seen_at=now)
        provider.models.exclude(model_id__in=ids).update(listed=False)
        Provider.objects.filter(pk=provider.pk).update(
            models_checked_at=now, models_ok_at=now, models_error=""
        )
    catalog.forget()
    return ids


def providers_refresh() -> dict[int, int]:
    """Every enabled provider's model list; {provider id: models listed}."""
    return {
        provider.pk: len(provider_models_refresh(provider=provider))
        for provider in Provider.objects.filter(enabled=True)
    }


def provider_call_succeeded(*, provider_id: int | None) -> None:
    """A call to the provider worked (its health's "last successful call")."""
    if provider_id is not None:
        Provider.objects.filter(pk=provider_id).update(last_success_at=timezone.now())


# --- Admins' changes (the admin pages call these) ---


def provider_save(
    *, provider: Provider, api_key: str = "", clear_api_key: bool = False
) -> Provider:
    """Save a provider an admin added or changed. A non-empty `api_key` replaces the saved
    key (stored encrypted); empty keeps it, unless `clear_api_key`."""
    if api_key:
        provider.api_key = api_key
    elif clear_api_key:
        provider.api_key_encrypted = ""
    if provider.pk is None:
        provider.save()
    else:
        # Not the health fields: the refresh and the worker write those meanwhile.
        provider.save(
            update_fields=[
                "name", "base_url", "api_key_encrypted", "connect_timeout", "read_timeout",
                "enabled",
            ]
        )  # fmt: skip
    catalog.forget()
    return provider


def provider_delete(*, provider: Provider) -> None:
    """Delete a provider and its models. Its conversations and completions stay (their
    provider becomes None; completions keep `provider_name` for the reports)."""
    provider.delete()
    catalog.forget()


def provider_model_save(*, provider_model: ProviderModel, is_default: bool) -> ProviderModel:
    """Save an admin's changes to a provider's model, or one added by hand (for servers
    without /models). One default for the whole site: making this one it clears any other."""
    if is_default and not provider_model.enabled:
        raise ValidationError(_("Offer the model to make it the default for new chats."))
    with transaction.atomic():
        if is_default:
            ProviderModel.objects.filter(is_default=True).exclude(pk=provider_model.pk).update(
                is_default=False
            )
        provider_model.is_default = is_default
        if provider_model.pk is None:
            provider_model.save()
        else:
            # Not `listed` or `last_seen_at`: the refresh writes those meanwhile.
            provider_model.save(update_fields=["display_name", "enabled", "is_default"])
    catalog.forget()
    return provider_model


def provider_model_delete(*, provider_model: ProviderModel) -> None:
    """Forget a model (a refresh lists it again, not offered, if the provider still has it)."""
    provider_model.delete()
    catalog.forget()


@dataclass(frozen=True)
class Rotated:
    rotated: int
    unreadable: list[str]  # names of providers whose key no configured key opens


def provider_keys_rotate() -> Rotated:
    """Encrypt every saved key again under the first CHATSITE_ENCRYPTION_KEY (after a new
    key was put first, before the old one is dropped)."""
    rotated, unreadable = 0, []
    for pk, name, token in Provider.objects.exclude(api_key_encrypted="").values_list(
        "pk", "name", "api_key_encrypted"
    ):
        try:
            secrets.decrypt(token)
        except secrets.UnreadableKey:
            unreadable.append(name)
            continue
        # Only if unchanged since read: a key an admin saved meanwhile is already current.
        rotated += Provider.objects.filter(pk=pk, api_key_encrypted=token).update(
            api_key_encrypted=secrets.rotate(token)
        )
    return Rotated(rotated, unreadable)
