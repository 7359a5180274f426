"""Rates counted in the cache: "at most `limit` events per `window` seconds" for the abuse
limits (failed log-ins in accounts.throttling, messages sent in chat.limits).

Rates are counted in Django's cache. With REDIS_URL set that is Redis, shared by every
web process, so a limit holds however many processes serve the site; the embedded
default (LocMemCache) serves from one web process, whose memory is the whole count.

How a rate ("at most `limit` events per `window` seconds") is counted:

- The window is cut into BUCKETS buckets of window/BUCKETS seconds, numbered from the
  epoch; each is one cache key, ``limit:<scope>:<sha256 of who>:<bucket number>``.
- An event adds one to the current bucket (``cache.add`` then ``cache.incr``, both
  atomic in Redis and in LocMemCache; with Redis the add, the increment and the read of
  the older buckets go in one round trip). The count is the current bucket plus the
  BUCKETS before it: every event of the last `window` seconds, and of up to one bucket
  more. So the window slides in steps of a bucket, the (limit+1)th event within any
  `window` seconds is always refused, and there is no double burst at a window's edge
  as with one fixed window. A key expires a second after it leaves the window.
- The event is counted first and the limit checked against the total the increment
  returned, so parallel requests cannot all slip in under the limit. A refused event
  is taken back: the wait the refusal names is the time until the oldest buckets drop
  out of the window far enough for one more event.
- While the cache cannot be reached (Redis restarting) nothing is counted and every event
  goes through (logged): the site keeps working, its limits off for those seconds.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

from django.core.cache import cache
from django.core.cache.backends.redis import RedisCacheClient
from django.core.exceptions import ValidationError

logger = logging.getLogger(__name__)

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
    try:
        cache.decr(key)
    except ValueError:  # the key was evicted: nothing to take back
        pass
    except Exception:
        logger.warning("The cache is unavailable: an event could not be taken back")


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
        try:
            return self._hit(who)
        except Exception:
            logger.warning("The cache is unavailable: %s is not counted for now", self.scope)
            return Hit()

    def _hit(self, who: str) -> Hit:
        now = clock()
        current = int(now // self.bucket_seconds)
        key = self._key(who, current)
        # Lives until its bucket leaves the window, and a second more.
        timeout = math.ceil(self.bucket_seconds * (BUCKETS + 1)) + 1
        older = [self._key(who, b) for b in range(current - BUCKETS, current)]
        counts = _count_one(key, older, timeout)
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
            keys = [self._key(who, b) for b in range(current - BUCKETS, current + 1)]
            try:
                cache.delete_many(keys)
            except Exception:
                logger.warning("The cache is unavailable: %s is not cleared", self.scope)


def _count_one(key: str, older: list[str], timeout: int) -> list[int]:
    """Add one to `key` (made with `timeout` if new) and return the counts of `older`
    buckets, then `key`'s own."""
    client = getattr(cache, "_cache", None)
    if isinstance(client, RedisCacheClient):
        # One round trip instead of three or four (add, exists and incr, get_many). Django
        # stores a whole number as itself, so these keys read back as ints through the cache.
        full = cache.make_and_validate_key(key)
        pipe = client.get_client(write=True).pipeline(transaction=False)
        pipe.set(full, 0, ex=timeout, nx=True)
        pipe.incr(full)
        pipe.mget([cache.make_and_validate_key(k) for k in older])
        _, mine, found = pipe.execute()
        return [int(value or 0) for value in found] + [int(mine)]
    if cache.add(key, 1, timeout):
        mine = 1
    else:
        try:
            mine = cache.incr(key)
        except ValueError:  # evicted between the two calls
            cache.add(key, 1, timeout)
            mine = 1
    found = cache.get_many(older)
    return [int(found.get(k) or 0) for k in older] + [mine]


def whole_seconds(wait: float) -> int:
    return max(1, math.ceil(wait))
