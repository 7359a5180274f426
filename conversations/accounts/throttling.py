"""Failed log-ins per username (any letter case) and per client address, each within
LOGIN_FAILURE_WINDOW seconds. An attempt counts as failed until its password proves right;
over either limit it is refused before the password is checked. A successful log-in
clears its username's count. The address is the connection's own (a proxy's
X-Forwarded-For only from DJANGO_TRUSTED_PROXIES: see chatsite.serving)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import ngettext

from conversations.shared.ratelimits import Hit, Rate, RateLimited, whole_seconds


def _username_rate() -> Rate:
    return Rate("login-user", settings.LOGIN_FAILURES_PER_USERNAME, settings.LOGIN_FAILURE_WINDOW)


def _ip_rate() -> Rate:
    return Rate("login-ip", settings.LOGIN_FAILURES_PER_IP, settings.LOGIN_FAILURE_WINDOW)


def _normal_username(username: str) -> str:
    return unicodedata.normalize("NFKC", username).casefold()


@dataclass(frozen=True)
class LoginAttempt:
    """An attempt counted as failed; `succeeded()` once the password proved right."""

    username: str
    ip_hit: Hit

    def succeeded(self) -> None:
        _username_rate().clear(self.username)
        self.ip_hit.undo()


def login_attempt(*, username: str, ip: str) -> LoginAttempt:
    """Count a log-in attempt as failed for its username and address, or raise
    RateLimited (then it counts nothing and the password must not be checked)."""
    who = _normal_username(username)
    by_username = _username_rate().hit(who)
    by_ip = _ip_rate().hit(ip)
    if by_username.refused or by_ip.refused:
        by_username.undo()
        by_ip.undo()
        seconds = whole_seconds(max(by_username.wait or 0, by_ip.wait or 0))
        raise RateLimited(
            ngettext(
                "Too many failed log-in attempts. Try again in %(seconds)d second.",
                "Too many failed log-in attempts. Try again in %(seconds)d seconds.",
                seconds,
            )
            % {"seconds": seconds},
            retry_after=seconds,
        )
    return LoginAttempt(username=who, ip_hit=by_ip)
