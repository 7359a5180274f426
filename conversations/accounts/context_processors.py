"""Template context every page gets from the accounts domain."""

from functools import cache

from django.http import HttpRequest

from .selectors import SignupMode, signup_mode


def signup(request: HttpRequest) -> dict:
    """Whether to link to sign-up: false when an admin has closed it. A callable, so the
    settings row is read only by a page that asks (templates call it)."""

    @cache  # a page may ask twice (header and form): one query
    def signup_open() -> bool:
        return signup_mode() != SignupMode.CLOSED

    return {"signup_open": signup_open}


THEMES = ("system", "light", "dark")
THEME_COOKIE = "theme"


def chosen_theme(request: HttpRequest) -> str:
    value = request.COOKIES.get(THEME_COOKIE, "system")
    return value if value in THEMES else "system"


def theme(request: HttpRequest) -> dict:
    """The light/dark theme this browser chose (a cookie, so it holds before log-in too);
    "system" follows the operating system's setting."""
    return {"theme": chosen_theme(request)}
