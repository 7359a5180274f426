"""Abuse limits: failed log-ins per username and per client address, messages sent per
user and minute, and replies in flight per user.

Rates are counted in Django's cache. With REDIS_URL set that is Redis, shared by every
web process, so a limit holds however many processes serve the site; the embedded
default (LocMemCache) serves from one web process, whose memory is the whole count.

How a rate ("at most `limit` events per `window` seconds") is counted:

- The window is cut into BUCKETS buckets of window/BUCKETS seconds, numbered from the
  epoch; each is one cache key, ``limit:<scope>:<sha256 of who>:<bucket number>``.
- An event adds one to the current bucket (``cache.add`` then ``cache.incr``, both
  atomic in Redis and in LocMemCache). The count is the current bucket plus the
  BUCKETS before it: every event of the last `window` seconds, and of up to one bucket
  more. So the window slides in steps of a bucket, the (limit+1)th event within any
  `window` seconds is always refused, and there is no double burst at a window's edge
  as with one fixed window. A key expires a second after it leaves the window.
- The event is counted first and the limit checked against the total the increment
  returned, so parallel requests cannot all slip in under the limit. A refused event
  is taken back: the wait the refusal names is the time until the oldest buckets drop
  out of the window far enough for one more event.

What is counted (scopes):

- ``login-user`` and ``login-ip``: failed log-ins per username (case-insensitive) and
  per REMOTE_ADDR (behind a proxy, uvicorn's --proxy-headers sets it), each within
  LOGIN_FAILURE_WINDOW seconds. An attempt counts as failed until its password proves
  right; over either limit it is refused before the password is checked. A successful
  log-in clears its username's count.
- ``send``: messages sent and failed replies retried per user, within 60 seconds.

Replies in flight are not counted here but in the database (the user's queued and
running completions), under a lock on the user's row, in the transaction that queues
the next one, so the count holds across processes too.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.utils.translation import ngettext

from .models import Completion

BUCKETS = 6
# Seconds since the epoch; tests replace it to move time without sleeping.
clock = time.time


class RateLimited(ValidationError):
    """Refused by an abuse limit; nothing was done. `retry_after` is in seconds, or None
    when the wait depends on other work ending."""

    def __init__(self, message: str, *, field: str | None = None, retry_after: int | None = None):
        super().__init__({field: message} if field else message, code="rate_limited")
        self.retry_after = retry_after


def _decr(key: str) -> None:
    with contextlib.suppress(ValueError):  # the key was evicted: nothing to take back
        cache.decr(key)


@dataclass(frozen=True)
class Hit:
    """One counted event; `wait` is set (seconds) when it was over the limit and so was
    not counted after all."""

    key: str | None = None
    bucket: int = 0
    rate: Rate | None = None
    wait: float | None = None

    @property
    def refused(self) -> bool:
        return self.wait is not None

    def undo(self) -> None:
        """Take the event back (it led to nothing), while its bucket is still counted."""
        if self.key is None or self.refused or self.rate is None:
            return
        if self.bucket >= self.rate.bucket_now() - BUCKETS:
            _decr(self.key)


@dataclass(frozen=True)
class Rate:
    scope: str
    limit: int
    window: float

    @property
    def on(self) -> bool:
        return self.limit > 0 and self.window > 0

    @property
    def bucket_seconds(self) -> float:
        return self.window / BUCKETS

    def bucket_now(self) -> int:
        return int(clock() // self.bucket_seconds)

    def _key(self, who: str, bucket: int) -> str:
        digest = hashlib.sha256(who.encode()).hexdigest()[:32]
        return f"limit:{self.scope}:{digest}:{bucket}"

    def hit(self, who: str) -> Hit:
        """Count one event of `who`; over the limit it is taken back and the Hit says how
        long to wait."""
        if not self.on:
            return Hit()
        now = clock()
        current = int(now // self.bucket_seconds)
        key = self._key(who, current)
        # Lives until its bucket leaves the window, and a second more.
        timeout = math.ceil(self.bucket_seconds * (BUCKETS + 1)) + 1
        if cache.add(key, 1, timeout):
            mine = 1
        else:
            try:
                mine = cache.incr(key)
            except ValueError:  # evicted between the two calls
                cache.add(key, 1, timeout)
                mine = 1
        older = [self._key(who, b) for b in range(current - BUCKETS, current)]
        found = cache.get_many(older)
        counts = [int(found.get(k) or 0) for k in older] + [mine]
        if sum(counts) <= self.limit:
            return Hit(key=key, bucket=current, rate=self)
        _decr(key)
        counts[-1] -= 1
        # Drop the oldest buckets one by one until one more event fits.
        for dropped in range(1, BUCKETS + 2):
            if sum(counts[dropped:]) < self.limit:
                return Hit(wait=(current + dropped) * self.bucket_seconds - now)
        raise AssertionError("unreachable: every bucket has dropped out")

    def clear(self, who: str) -> None:
        if self.on:
            current = self.bucket_now()
            cache.delete_many([self._key(who, b) for b in range(current - BUCKETS, current + 1)])


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


# --- Log-in ---


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
        seconds = _seconds(max(by_username.wait or 0, by_ip.wait or 0))
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


# --- Sending ---


@contextlib.contextmanager
def message_counted(*, user_id: int) -> Iterator[None]:
    """Count one message (or retry) of the user, or raise RateLimited naming "content"
    over MESSAGES_PER_MINUTE. A ValidationError inside (nothing was sent) takes it back."""
    hit = Rate("send", settings.MESSAGES_PER_MINUTE, 60.0).hit(str(user_id))
    if hit.refused:
        seconds = _seconds(hit.wait)
        raise RateLimited(
            ngettext(
                "You are sending messages too fast. Wait %(seconds)d second and try again.",
                "You are sending messages too fast. Wait %(seconds)d seconds and try again.",
                seconds,
            )
            % {"seconds": seconds},
            field="content",
            retry_after=seconds,
        )
    try:
        yield
    except ValidationError:
        hit.undo()
        raise


def sender_lock(*, user_id: int) -> None:
    """Lock the user's row until the transaction ends, so one user's sends (and the counts
    they check) go one by one. NO KEY: rows inserted meanwhile that point at the user
    (their foreign-key checks take KEY SHARE) need not wait, which is what deadlocked."""
    list(
        get_user_model().objects.select_for_update(no_key=True).filter(pk=user_id).values_list("pk")
    )


def replies_in_flight_check(*, user_id: int) -> None:
    """Raise RateLimited naming "content" when the user has MAX_REPLIES_IN_FLIGHT replies
    queued or being written. Runs under `sender_lock` in the transaction that queues the
    next reply, so parallel sends are counted one by one."""
    limit = settings.MAX_REPLIES_IN_FLIGHT
    if limit <= 0:
        return
    active = Completion.objects.filter(user_id=user_id, status__in=Completion.ACTIVE).count()
    if active >= limit:
        raise RateLimited(
            ngettext(
                "You already have %(count)d reply being written. Wait for it to finish.",
                "You already have %(count)d replies being written. Wait for one to finish.",
                limit,
            )
            % {"count": limit},
            field="content",
        )
