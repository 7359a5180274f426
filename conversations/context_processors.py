"""Template context shared by every page."""

from functools import cache

from django.conf import settings
from django.http import HttpRequest


def upstream(request: HttpRequest) -> dict:
    # Only whether the upstream is simulated; the base URL and key never reach a page.
    return {"upstream_simulated": settings.UPSTREAM_SIMULATED}


def signup(request: HttpRequest) -> dict:
    """Whether to link to sign-up: false when an admin has closed it. A callable, so the
    settings row is read only by a page that asks (templates call it)."""
    from .accounts import SignupMode, signup_mode

    @cache  # a page may ask twice (header and form): one query
    def signup_open() -> bool:
        return signup_mode() != SignupMode.CLOSED

    return {"signup_open": signup_open}
