"""Single sign-on with the company's OpenID provider (OpenID Connect, the authorization
code flow), through mozilla-django-oidc: its backend and views, given the provider's
endpoints by discovery ({OIDC_ISSUER}/.well-known/openid-configuration, read once per
process), and the account and groups each log-in finds, makes and syncs.

An account is found by its identity at the provider (the issuer and the `sub` claim, which
never changes, unlike an email address). Else an existing account is matched by email,
only when the provider says it verified the address and exactly one active account has it
(and that account is not already some other subject's at this issuer: an address handed on
to a new employee). Else a new account is made, whatever the site's sign-up mode: the
company's provider decides who may come in. Only "approval" holds: the new account waits
for staff, as one made by sign-up would.

Groups: at every log-in the user is added to each group the claim OIDC_GROUPS_CLAIM names
(made when missing), and taken out of those it named last time (the identity's `groups`)
but no longer does; groups given in the admin stay.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import urlencode

import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.db import DatabaseError, transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.generic import View
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from . import selectors
from .models import PendingAccount, SingleSignOnIdentity

logger = logging.getLogger(__name__)

UNAVAILABLE = _("Single sign-on is not available right now. Try again later.")
FAILED = _("Single sign-on did not complete. Try again.")
EXPIRED = _("That log-in had expired or was started in another browser. Try again.")
REFUSED = _("The sign-on provider did not log you in.")
DISABLED = _("This account is disabled. Ask an administrator.")
# The sign-up form's own words (forms.ThrottledLogin).
PENDING = _("Your account is waiting for approval by an administrator.")


def provider_name() -> str:
    return str(settings.OIDC_PROVIDER_NAME)


def login_context() -> dict[str, Any]:
    """What the log-in pages (the site's and the admin's) show: the single sign-on button
    (None while it is off) and whether the password form is there."""
    sso = (
        {"name": provider_name(), "url": reverse("oidc_login")} if selectors.sso_enabled() else None
    )
    return {"sso": sso, "password_login": selectors.passwords_allowed()}


# --- Discovery ---

_discovered: dict[str, dict[str, Any]] = {}
_discovering = threading.Lock()
REQUIRED_METADATA = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


def provider_configuration() -> dict[str, Any]:
    """The provider's metadata (RFC 8414 / OpenID Connect Discovery), fetched on first use
    and kept for the life of the process; ImproperlyConfigured while it cannot be read."""
    issuer = settings.OIDC_ISSUER.rstrip("/")
    found = _discovered.get(issuer)
    if found is not None:
        return found
    with _discovering:
        if issuer in _discovered:
            return _discovered[issuer]
        url = f"{issuer}/.well-known/openid-configuration"
        try:
            response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
            response.raise_for_status()
            metadata = response.json()
        except (requests.RequestException, ValueError) as exc:
            logger.error("Single sign-on: cannot read %s: %s", url, exc)
            raise ImproperlyConfigured(f"OIDC_ISSUER: cannot read {url}: {exc}") from exc
        missing = [
            key
            for key in REQUIRED_METADATA
            if not isinstance(metadata, dict) or not metadata.get(key)
        ]
        if missing:
            logger.error("Single sign-on: %s lacks %s", url, ", ".join(missing))
            raise ImproperlyConfigured(f"OIDC_ISSUER: {url} lacks {', '.join(missing)}")
        if str(metadata["issuer"]).rstrip("/") != issuer:
            # The spec's rule: a document naming another issuer is not this provider's.
            logger.error("Single sign-on: %s names issuer %s", url, metadata["issuer"])
            raise ImproperlyConfigured(f"OIDC_ISSUER: {url} names issuer {metadata['issuer']}")
        _discovered[issuer] = metadata
        return metadata


def forget_configuration() -> None:
    """Read the provider's metadata again at next use."""
    _discovered.clear()


# mozilla-django-oidc's setting names, answered from ours and from discovery.
OUR_SETTINGS = {
    "OIDC_RP_CLIENT_ID": "OIDC_CLIENT_ID",
    "OIDC_RP_CLIENT_SECRET": "OIDC_CLIENT_SECRET",
    "OIDC_RP_SCOPES": "OIDC_SCOPES",
}
DISCOVERED_SETTINGS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}


def oidc_setting(name: str, *default: Any) -> Any:
    if name in OUR_SETTINGS:
        return getattr(settings, OUR_SETTINGS[name])
    if name in DISCOVERED_SETTINGS:
        value = provider_configuration().get(DISCOVERED_SETTINGS[name])
        if not value:
            raise ImproperlyConfigured(f"OIDC_ISSUER: the provider has no {name}")
        return value
    if name == "OIDC_RP_SIGN_ALGO":
        return "RS256"
    if name == "OIDC_AUTHENTICATION_CALLBACK_URL":
        return "oidc_callback"
    if name == "OIDC_USE_PKCE":
        # PKCE when the provider offers it (RFC 7636): a stolen code is then of no use.
        return "S256" in provider_configuration().get("code_challenge_methods_supported", [])
    if name == "OIDC_TOKEN_USE_BASIC_AUTH":
        # The spec's default method, unless the provider takes only the secret in the body.
        methods = provider_configuration().get(
            "token_endpoint_auth_methods_supported", ["client_secret_basic"]
        )
        return "client_secret_basic" in methods or "client_secret_post" not in methods
    return import_from_settings(name, *default)


# --- Accounts and groups ---


def email_verified(claims: dict[str, Any]) -> bool:
    # Some providers send the boolean as a string.
    value = claims.get("email_verified")
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def claimed_groups(claims: dict[str, Any]) -> list[str] | None:
    """The group names the claim gives (a list of names, or one name), or None when no
    claim is configured (groups are then not synced). A missing claim names no group."""
    claim = settings.OIDC_GROUPS_CLAIM
    if not claim:
        return None
    value = claims.get(claim)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        return []
    names = {item.strip() for item in value if isinstance(item, str) and item.strip()}
    too_long = {name for name in names if len(name) > Group._meta.get_field("name").max_length}
    if too_long:
        logger.warning("Single sign-on: group names too long to keep: %s", sorted(too_long))
    return sorted(names - too_long)


def identity_groups_sync(*, identity: SingleSignOnIdentity, names: list[str]) -> None:
    """Give the identity's user the groups `names` (made when missing), take away those the
    claim named last time and no longer does, and remember `names` (saved by the caller)."""
    user = identity.user
    wanted = set(names)
    groups = list(Group.objects.filter(name__in=wanted))
    missing = wanted - {group.name for group in groups}
    if missing:
        # Another log-in may make the same group meanwhile: take theirs.
        Group.objects.bulk_create([Group(name=name) for name in missing], ignore_conflicts=True)
        groups = list(Group.objects.filter(name__in=wanted))
    if groups:
        user.groups.add(*groups)
    dropped = set(identity.groups or []) - wanted
    if dropped:
        user.groups.remove(*Group.objects.filter(name__in=dropped))
    identity.groups = sorted(wanted)


USERNAME_SPARE = re.compile(r"[^\w.@+-]")


def unique_username(claims: dict[str, Any]) -> str:
    """preferred_username, else the email address's local part, kept to the characters a
    username may have, with a number after it when an account (any letter case) has it."""
    User = get_user_model()
    email = str(claims.get("email") or "")
    wanted = str(claims.get("preferred_username") or "").strip() or email.partition("@")[0]
    base = USERNAME_SPARE.sub("", wanted)[:140] or "user"
    candidate, number = base, 1
    while User.objects.filter(username__iexact=candidate).exists():
        number += 1
        candidate = f"{base}{number}"
    return candidate


def _matching_user(*, issuer: str, claims: dict[str, Any]) -> AbstractBaseUser | None:
    """The one active account with the claim's email, when the provider verified it."""
    email = str(claims.get("email") or "").strip()
    if not email or not email_verified(claims):
        return None
    found = list(get_user_model().objects.filter(email__iexact=email, is_active=True)[:2])
    if len(found) != 1:
        return None
    user = found[0]
    if SingleSignOnIdentity.objects.filter(user=user, issuer=issuer).exists():
        # Already another subject's here: the provider gave the address to someone else.
        return None
    return user


def _new_user(claims: dict[str, Any]) -> AbstractBaseUser:
    approval = selectors.site_settings().signup_mode == selectors.SignupMode.APPROVAL
    user = get_user_model().objects.create_user(
        unique_username(claims),
        # Only an address the provider verified: a later log-in matches accounts by it.
        email=str(claims.get("email") or "") if email_verified(claims) else "",
        first_name=str(claims.get("given_name") or "")[:150],
        last_name=str(claims.get("family_name") or "")[:150],
        is_active=not approval,
    )  # no password: an unusable one
    if approval:
        PendingAccount.objects.create(user=user)
    return user


def _profile_update(user: AbstractBaseUser, claims: dict[str, Any]) -> None:
    """The provider's names, and its verified address, replace the account's."""
    changed = {}
    for field, claim in (("first_name", "given_name"), ("last_name", "family_name")):
        value = claims.get(claim)
        if isinstance(value, str) and value[:150] != getattr(user, field):
            changed[field] = value[:150]
    email = claims.get("email")
    if isinstance(email, str) and email and email_verified(claims) and email != user.email:
        changed["email"] = email
    if changed:
        for field, value in changed.items():
            setattr(user, field, value)
        user.save(update_fields=list(changed))


def identity_login(*, issuer: str, claims: dict[str, Any]) -> AbstractBaseUser:
    """The account these verified claims log in to: found by (issuer, sub), else matched
    by verified email, else made; its identity row and groups brought up to date. An
    inactive account comes back untouched: the caller refuses it."""
    subject = str(claims.get("sub") or "")
    if not subject:
        raise SuspiciousOperation("Single sign-on: the claims have no sub")
    with transaction.atomic():
        identity = (
            SingleSignOnIdentity.objects.select_for_update()
            .select_related("user")
            .filter(issuer=issuer, subject=subject)
            .first()
        )
        if identity is not None and not identity.user.is_active:
            return identity.user
        if identity is None:
            user = _matching_user(issuer=issuer, claims=claims)
            if user is None:
                user = _new_user(claims)
            else:
                _profile_update(user, claims)
            identity = SingleSignOnIdentity(user=user, issuer=issuer, subject=subject)
        else:
            _profile_update(identity.user, claims)
        identity.email = str(claims.get("email") or "")[:254]
        identity.last_login_at = timezone.now()
        names = claimed_groups(claims)
        if names is not None:
            identity_groups_sync(identity=identity, names=names)
        identity.save()
    return identity.user


# --- mozilla-django-oidc's backend and views, given the discovered endpoints ---


class Backend(OIDCAuthenticationBackend):
    """Logs in the user the provider's ID token (RS256, checked against the provider's
    JWKS) and userinfo answer name. Permissions and sessions are ModelBackend's."""

    get_settings = staticmethod(oidc_setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Made for every request of a user it logged in (get_user) and every password
        # log-in: no discovery here, only once a log-in comes back from the provider.
        self.UserModel = get_user_model()
        self.OIDC_RP_SIGN_ALGO = "RS256"
        self.OIDC_RP_IDP_SIGN_KEY = None

    @property
    def OIDC_OP_TOKEN_ENDPOINT(self) -> str:
        return oidc_setting("OIDC_OP_TOKEN_ENDPOINT")

    @property
    def OIDC_OP_USER_ENDPOINT(self) -> str:
        return oidc_setting("OIDC_OP_USER_ENDPOINT")

    @property
    def OIDC_OP_JWKS_ENDPOINT(self) -> str:
        return oidc_setting("OIDC_OP_JWKS_ENDPOINT")

    @property
    def OIDC_RP_CLIENT_ID(self) -> str:
        return settings.OIDC_CLIENT_ID

    @property
    def OIDC_RP_CLIENT_SECRET(self) -> str:
        return settings.OIDC_CLIENT_SECRET

    def authenticate(self, request, nonce=None, code_verifier=None):
        # Only the callback's call carries a nonce; a password log-in's credentials do not
        # even fit this signature (Django then skips the backend).
        if request is None or nonce is None or not selectors.sso_enabled():
            return None
        return super().authenticate(request, nonce=nonce, code_verifier=code_verifier)

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        payload = super().verify_token(token, **kwargs)
        if "nonce" in kwargs:  # the ID token: from this provider, for this site
            audience = payload.get("aud")
            audiences = [audience] if isinstance(audience, str) else list(audience or [])
            if payload.get("iss") != provider_configuration()["issuer"]:
                raise SuspiciousOperation("Single sign-on: the ID token's issuer is another")
            if settings.OIDC_CLIENT_ID not in audiences:
                raise SuspiciousOperation("Single sign-on: the ID token is for another client")
        return payload

    def get_or_create_user(self, access_token, id_token, payload):
        userinfo = self.get_userinfo(access_token, id_token, payload)
        if userinfo.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("Single sign-on: userinfo is about another subject")
        # The ID token's claims and userinfo's over them: providers put groups in either.
        return identity_login(issuer=payload["iss"], claims={**payload, **userinfo})

    def get_user(self, user_id):
        # ModelBackend's: an account made inactive is logged out at its next request.
        return ModelBackend.get_user(self, user_id)


def _back_to_login(
    request: HttpRequest, message: str, *, next_url: str | None = None
) -> HttpResponse:
    messages.error(request, message)
    url = reverse("login")
    if next_url:
        url = f"{url}?{urlencode({'next': next_url})}"
    return HttpResponseRedirect(url)


class LoginStartView(OIDCAuthenticationRequestView):
    """/accounts/oidc/login/?next=...: off to the provider's log-in page."""

    def __init__(self, **kwargs: Any) -> None:
        # Not the parent's: it would discover the endpoints before a request needs them.
        View.__init__(self, **kwargs)

    get_settings = staticmethod(oidc_setting)

    def get(self, request: HttpRequest) -> HttpResponse:
        if not selectors.sso_enabled():
            raise Http404
        try:
            self.OIDC_OP_AUTH_ENDPOINT = oidc_setting("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except ImproperlyConfigured:
            return _back_to_login(request, UNAVAILABLE)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_CLIENT_ID
        return super().get(request)


class CallbackView(OIDCAuthenticationCallbackView):
    """/accounts/oidc/callback/: the provider sends the browser back here with a code (or
    an error). Every failure goes back to the log-in page with a message, never a 500."""

    get_settings = staticmethod(oidc_setting)

    def get(self, request: HttpRequest) -> HttpResponse:
        if not selectors.sso_enabled():
            raise Http404
        next_url = request.session.get("oidc_login_next")
        states = request.session.get("oidc_states")
        state = request.GET.get("state", "")
        flow = states.pop(state, None) if isinstance(states, dict) else None
        if flow is not None:
            # Used once: a replayed callback finds no state.
            request.session.modified = True
            request.session.save()
        if request.GET.get("error"):
            logger.info(
                "Single sign-on refused by the provider: %s %s",
                request.GET["error"],
                request.GET.get("error_description", ""),
            )
            return _back_to_login(request, REFUSED, next_url=next_url)
        if flow is None or not request.GET.get("code"):
            return _back_to_login(request, EXPIRED, next_url=next_url)
        # As the parent does: the session read again after the slow calls to the provider.
        request.session = request.session.__class__(request.session.session_key)
        try:
            user = authenticate(
                request=request, nonce=flow.get("nonce"), code_verifier=flow.get("code_verifier")
            )
        except ImproperlyConfigured:
            return _back_to_login(request, UNAVAILABLE, next_url=next_url)
        except (
            SuspiciousOperation,
            requests.RequestException,
            jwt.PyJWTError,
            DatabaseError,
            KeyError,
            ValueError,
        ) as exc:
            logger.warning("Single sign-on failed: %r", exc)
            return _back_to_login(request, FAILED, next_url=next_url)
        if user is None:
            return _back_to_login(request, FAILED, next_url=next_url)
        if not user.is_active:
            pending = PendingAccount.objects.filter(user=user).exists()
            logger.info("Single sign-on refused inactive account %s", user.pk)
            return _back_to_login(request, PENDING if pending else DISABLED, next_url=next_url)
        self.user = user
        return self.login_success()
