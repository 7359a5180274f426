"""Writes of the API: personal keys (made, revoked), and each call's row: opened under the
same limits and budget reservation as a chat message, then settled to the upstream's usage
(or released) once, only while the call still holds its claim."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chatsite import logs
from conversations.accounts.models import SiteSettings
from conversations.accounts.selectors import site_settings
from conversations.billing import budgets
from conversations.chat import limits
from conversations.chat.models import Completion
from conversations.chat.services import completions, rows
from conversations.chat.services.results import response_fields
from conversations.providers import catalog
from conversations.providers import services as providers
from conversations.shared import transactions
from conversations.shared.ratelimits import RateLimited
from conversations.upstream import protocol

from . import keys
from .contract import Asked
from .errors import ApiError
from .models import ApiKey

# Live keys one person may hold at once.
MAX_KEYS = 20
NAME_LENGTH = 100
LAST_USED_EVERY = timedelta(minutes=1)
# How long a form's one-time mark is remembered (a reload of its answer makes no key).
FORM_SECONDS = 24 * 3600


def api_key_create(
    *, user, name: str, expires_at: datetime | None = None, once: str = ""
) -> tuple[ApiKey, str]:
    """A new key for `user`, and its full text (shown once, never stored). `once`: the
    form's one-time mark; a second post of the same form (a reload) is refused."""
    name = " ".join(name.split())[:NAME_LENGTH]
    if not site_settings().api_keys:
        raise ValidationError(_("API keys are turned off on this site."), code="off")
    if not name:
        raise ValidationError({"name": _("Give the key a name.")})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": _("The expiry must be in the future.")})
    now = timezone.now()
    live = ApiKey.objects.filter(user=user, revoked_at__isnull=True).exclude(expires_at__lte=now)
    if live.count() >= MAX_KEYS:
        raise ValidationError(
            _("You have %(count)d keys already: revoke one first.") % {"count": MAX_KEYS}
        )
    if once and not cache.add(f"api-key-form:{user.pk}:{once[:64]}", 1, FORM_SECONDS):
        raise ValidationError(
            _("This form already made its key, shown once; it cannot be shown again."),
            code="again",
        )
    for _attempt in range(5):  # a prefix already taken (one in 2^48) draws again
        text = keys.new_key()
        parts = keys.split(text)
        salt = keys.new_salt()
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    user=user,
                    name=name,
                    prefix=parts.prefix,
                    salt=salt,
                    hashed=keys.digest(parts.secret, salt),
                    expires_at=expires_at,
                )
        except IntegrityError:
            continue
        return key, text
    raise RuntimeError("could not draw an unused key prefix")


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """The key stops working at once (its next call is refused); revoking twice keeps the
    first time."""
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    key.refresh_from_db(fields=["revoked_at"])
    return key


# --- Calls ---


def _refused(message: str) -> ApiError:
    return ApiError(401, message, code="invalid_api_key")


def key_authenticate(authorization: str, *, site: SiteSettings | None = None) -> ApiKey:
    """The live key an `Authorization: Bearer …` header holds, with its user; 401 for
    anything else (a missing, unknown, revoked or expired key, an inactive account or
    one waiting for approval, keys turned off)."""
    scheme, _space, text = authorization.partition(" ")
    if scheme.lower() != "bearer" or not text.strip():
        raise _refused("Send your API key as 'Authorization: Bearer cs-…'.")
    parts = keys.split(text.strip())
    # The user and their budget too: what the call may need to check (call_open).
    found = ApiKey.objects.select_related("user", "user__budget").annotate(
        in_budgeted_group=budgets.in_budgeted_group("user_id")
    )
    key = found.filter(prefix=parts.prefix).first() if parts else None
    if key is None or not keys.matches(parts.secret, salt=key.salt, hashed=key.hashed):
        raise _refused("Incorrect API key provided.")
    if not key.is_live():
        raise _refused("This API key has been revoked or has expired.")
    if not key.user.is_active:
        raise _refused("The account of this API key is not active.")
    if not (site or site_settings()).api_keys:
        raise _refused("API keys are turned off on this site.")
    return key


def models_for(key: ApiKey) -> list[str]:
    """The models this key's user may call, by the names the API knows them by."""
    return list(catalog.api_names_for(key.user_id))


@dataclass
class Opened:
    """A call's row, held by this process (its claim), and what to send."""

    completion_id: int
    token: uuid.UUID
    asked: Asked
    user_id: int
    queued_at: datetime
    reserved: budgets.Reservation
    # The provider to call (its address and key), found when the call was opened.
    route: providers.Route


def _limit_error(error: ValidationError) -> ApiError:
    if isinstance(error, RateLimited):
        return ApiError(
            429,
            error.messages[0],
            type="rate_limit_exceeded",
            code="rate_limit_exceeded",
            retry_after=error.retry_after,
        )
    return ApiError(
        402, error.messages[0], type="insufficient_quota", code=error.code or "budget_exceeded"
    )


def call_open(*, key: ApiKey, asked: Asked) -> Opened:
    """The call's row, running and claimed by this process, with its budget reserved; or
    429 (messages per minute, replies in flight) or 402 (budget) with nothing kept. The
    same locks in the same order as a chat message (the user's row, then the budget)."""
    user_id = key.user_id
    now = timezone.now()
    # The name asked for is the API's (catalog.api_names): the provider gets its own id.
    offer = catalog.api_names().get(asked.body["model"])
    provider_id = offer.provider_id if offer is not None else None
    if offer is not None:
        asked = replace(asked, body={**asked.body, "model": offer.model})
    try:
        route = providers.route(provider_id)
    except providers.ProviderGone as error:
        raise ApiError(503, error.message, type="server_error", code="model_unavailable") from None
    # Nothing to count or reserve (no budget, no in-flight limit): no lock to take either.
    checked = (
        settings.MAX_REPLIES_IN_FLIGHT > 0
        or getattr(key, "in_budgeted_group", True)
        or budgets.limits_of(budgets.override_of(key.user)).any
    )

    def open_row() -> Opened:
        reserved = budgets.Reservation()
        if checked:
            limits_in_force = rows.lock_sender(user_id)
            active = Completion.objects.filter(user_id=user_id, status__in=Completion.ACTIVE)
            limits.replies_in_flight_check(active=active.count())
            reserved = budgets.reserve(
                user_id=user_id,
                model=asked.body["model"],
                body=asked.body,
                at=now,
                limits=limits_in_force,
                saved_note=False,
                provider_id=provider_id,
            )
        token = uuid.uuid4()
        completion = Completion.objects.create(
            conversation=None,
            source=Completion.Source.API,
            api_key=key,
            user_id=user_id,
            model=asked.body["model"],
            provider_id=provider_id,
            provider_name=offer.provider_name if provider_id is not None else "",
            request_body=asked.body,
            status=Completion.Status.RUNNING,
            attempts=1,
            queued_at=now,
            available_at=now,
            started_at=now,
            claim_token=token,
            lease_expires_at=now + timedelta(seconds=settings.COMPLETION_LEASE_SECONDS),
            reserved_tokens=reserved.tokens,
            reserved_cost=reserved.cost,
            budget_groups=list(reserved.groups or ()),
            request_id=logs.current_request_id(),
        )
        if key.last_used_at is None or key.last_used_at < now - LAST_USED_EVERY:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return Opened(completion.pk, token, asked, user_id, now, reserved, route)

    try:
        with limits.message_counted(user_id=user_id):
            # Unchecked, the row is one INSERT: no transaction around it.
            return transactions.atomic_with_retry(open_row) if checked else open_row()
    except ValidationError as error:
        raise _limit_error(error) from None
    except OperationalError:
        raise ApiError(
            503, "The server is busy; try again.", type="server_error", code="busy"
        ) from None


def _held(opened: Opened):
    return completions.held_by(opened.completion_id, opened.token)


def call_renew(*, opened: Opened) -> bool:
    """Extend the call's lease while it runs: the sweep gives up calls whose process died
    (their lease ran out) and releases their budget."""
    lease = timedelta(seconds=settings.COMPLETION_LEASE_SECONDS)
    return bool(_held(opened).update(lease_expires_at=timezone.now() + lease))


def call_settle(
    *,
    opened: Opened,
    response: protocol.ChatResponse,
    latency_ms: int,
    closed_by_client: bool = False,
    broken: protocol.UpstreamError | None = None,
) -> bool:
    """Save the reply and its usage (the upstream's, or estimated from the text when it
    sent none: a stream the client left, or one that broke off), priced, and settle the
    budget to it: one transaction, once. A broken stream is saved failed, with the text it
    had and its usage, as the upstream bills for what it wrote."""
    now = timezone.now()
    fields = response_fields(
        model=opened.asked.body["model"],
        body=opened.asked.body,
        response=response,
        now=now,
        provider_id=opened.route.provider_id,
    )
    fields["choices"] = [
        {
            "index": choice.index,
            "finish_reason": choice.finish_reason,
            "message": {
                "role": choice.role,
                "content": choice.content,
                # The reasoning the provider sent beside it, kept apart as it came.
                **({"reasoning_content": choice.reasoning} if choice.reasoning else {}),
            },
        }
        for choice in sorted(response.choices, key=lambda c: c.index)
    ]
    fields |= {
        "status": Completion.Status.FAILED if broken else Completion.Status.SUCCEEDED,
        "latency_ms": latency_ms,
        "finished_at": now,
        "lease_expires_at": None,
        "budget_settled": True,
    }
    if closed_by_client:
        fields |= {
            "error_type": "client_closed",
            "error_message": _("The client closed the stream before the reply ended."),
        }
    elif broken is not None:
        fields |= {
            "error_type": broken.error_type,
            "error_message": completions.readable_error(broken, attempts=1),
        }

    def save() -> bool:
        if not _held(opened).update(**fields):
            return False  # given up by the sweep meanwhile: its budget is already released
        budgets.period_adjust(
            user_id=opened.user_id,
            at=opened.queued_at,
            reserved=opened.reserved,
            used_tokens=fields["total_tokens"] or 0,
            used_cost=fields["cost"] or Decimal(0),
        )
        return True

    return transactions.atomic_with_retry(save)


def call_fail(*, opened: Opened, error: protocol.UpstreamError, latency_ms: int) -> bool:
    """The call failed upstream: kept with its error, its reservation given back."""

    def fail() -> bool:
        updated = _held(opened).update(
            status=Completion.Status.FAILED,
            http_status=error.http_status,
            error_type=error.error_type,
            error_message=completions.readable_error(error, attempts=1),
            latency_ms=latency_ms,
            finished_at=timezone.now(),
            lease_expires_at=None,
        )
        if updated:
            completions.budget_release(completion_id=opened.completion_id)
        return bool(updated)

    return transactions.atomic_with_retry(fail)
