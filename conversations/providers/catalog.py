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
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.utils.translation import gettext as _

from .models import ModelAccess, ProviderModel

logger = logging.getLogger(__name__)

CACHE_KEY = "provider-offers"
ACCESS_KEY = "model-access"
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
        return offer_key(self.provider_id, self.model)


def offer_key(provider_id: int | None, model: str) -> str:
    """How forms and access rules name a model: the model, or "<provider id>:<model>"."""
    return model if provider_id is None else f"{provider_id}:{model}"


def _cached(key: str, make, what: str):
    """`make()` read through the cache (the database answers while the cache is away)."""
    try:
        found = cache.get(key)
    except Exception:
        found = None
    if found is None:
        found = make()
        try:
            cache.set(key, found, CACHE_SECONDS)
        except Exception:
            logger.warning("Cache unavailable: %s is read from the database", what)
    return found


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
    return _cached(CACHE_KEY, lambda: _environment_offers() + _provider_offers(), "the model list")


def forget() -> None:
    """Call after any change of providers, their models or the model access rules: now,
    and again once the change commits (a read in between may have cached the old list)."""

    def delete() -> None:
        try:
            cache.delete_many([CACHE_KEY, ACCESS_KEY])
        except Exception:
            logger.error("Cache unavailable: other processes see the old model list a while")

    delete()
    transaction.on_commit(delete)


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


def _access_rules() -> dict[str, frozenset[int]]:
    kept: dict[str, set[int]] = {}
    for rule in ModelAccess.objects.prefetch_related("groups"):
        groups = {group.pk for group in rule.groups.all()}
        for key in rule.model_keys:
            kept.setdefault(key, set()).update(groups)
    return {key: frozenset(groups) for key, groups in kept.items()}


def _kept_for() -> dict[str, frozenset[int]]:
    """The models some rule keeps for groups: offer key -> the groups that may use it."""
    return _cached(ACCESS_KEY, _access_rules, "the model access rules")


def _allowed(user_id: int):
    """Whether an offer key is the user's to use: a model no rule keeps is everyone's;
    the user's groups are read (one query) only while some rule keeps a model."""
    kept = _kept_for()
    if not kept:
        return lambda key: True
    groups = set(
        get_user_model()
        .groups.through.objects.filter(user_id=user_id)
        .values_list("group_id", flat=True)
    )
    return lambda key: key not in kept or bool(kept[key] & groups)


def offers_for(user_id: int) -> list[Offer]:
    """The models this user may use: every offer, less those kept for others' groups."""
    allowed = _allowed(user_id)
    return [o for o in offers() if allowed(o.key)]


def may_use(user_id: int, provider_id: int | None, model: str) -> bool:
    """Whether the user may call this model (a model no longer offered is not kept)."""
    key = offer_key(provider_id, model)
    kept = _kept_for()
    return key not in kept or _allowed(user_id)(key)


def api_names_for(user_id: int) -> dict[str, Offer]:
    """`api_names()` less the models kept for groups the user is not in."""
    allowed = _allowed(user_id)
    return {name: o for name, o in api_names().items() if allowed(o.key)}
