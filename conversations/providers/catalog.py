"""What models are offered, from which provider, and whether each can be used now: the
environment's CHAT_MODELS (always, a static list for servers without /models) and the
models admins enabled on their providers. Read through the cache (one query on a miss):
every chat page's settings panel and every send asks.

A provider model is available while its provider is enabled, its last model list was
read without error and listed it. Pages never ask a provider anything: availability is
what the background refresh last saw."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.utils.translation import gettext as _

from .models import ProviderModel

logger = logging.getLogger(__name__)

CACHE_KEY = "provider-offers"
CACHE_SECONDS = 60


@dataclass(frozen=True)
class Offer:
    provider_id: int | None  # None: the environment's own provider
    provider_name: str
    model: str
    label: str
    available: bool = True
    error: str = ""  # why it is unavailable (the provider's last error)
    is_default: bool = False

    @property
    def key(self) -> str:
        """The value a form sends for it: the model, or "<provider id>:<model>"."""
        return self.model if self.provider_id is None else f"{self.provider_id}:{self.model}"


def _environment_offers() -> list[Offer]:
    return [
        Offer(None, settings.DEFAULT_PROVIDER_NAME, model, model) for model in settings.CHAT_MODELS
    ]


def _provider_offers() -> list[Offer]:
    rows = ProviderModel.objects.filter(enabled=True, provider__enabled=True).select_related(
        "provider"
    )
    offers = []
    for row in rows.order_by("provider__name", "model_id"):
        provider = row.provider
        if provider.models_error:
            error = provider.models_error
        elif not row.listed:
            error = _("%(provider)s no longer lists this model.") % {"provider": provider.name}
        else:
            error = ""
        offers.append(
            Offer(
                provider.pk,
                provider.name,
                row.model_id,
                row.label,
                available=not error,
                error=error,
                is_default=row.is_default,
            )
        )
    return offers


def offers() -> list[Offer]:
    """Every model offered, the environment's first."""
    try:
        found = cache.get(CACHE_KEY)
    except Exception:  # the cache is away: the database answers
        found = None
    if found is None:
        found = _environment_offers() + _provider_offers()
        try:
            cache.set(CACHE_KEY, found, CACHE_SECONDS)
        except Exception:
            logger.warning("Cache unavailable: the model list is read from the database")
    return found


def forget() -> None:
    """Call after any change of providers or their models (the next read sees it)."""
    try:
        cache.delete(CACHE_KEY)
    except Exception:
        logger.error("Cache unavailable: other processes see the old model list a while")


def find(provider_id: int | None, model: str) -> Offer | None:
    return next((o for o in offers() if o.provider_id == provider_id and o.model == model), None)


def by_key(key: str) -> Offer | None:
    return next((o for o in offers() if o.key == key), None)


def default() -> Offer:
    """What new chats start on: the admins' default model, else CHAT_DEFAULT_MODEL."""
    chosen = next((o for o in offers() if o.is_default and o.available), None)
    return chosen or Offer(
        None, settings.DEFAULT_PROVIDER_NAME, settings.CHAT_DEFAULT_MODEL,
        settings.CHAT_DEFAULT_MODEL,
    )  # fmt: skip


def api_names() -> dict[str, Offer]:
    """The models the site's API (/v1/) offers, by the name a client asks for: the
    environment's by their names, a provider's by its model id, or "<provider>/<model>"
    where that id is already taken. Available ones only."""
    names: dict[str, Offer] = {}
    for offer in offers():
        if not offer.available:
            continue
        name = offer.model if offer.model not in names else f"{offer.provider_name}/{offer.model}"
        names.setdefault(name, offer)
    return names
