"""Live reply text, between the worker that receives it and the web processes that show it.

The worker publishes each delta to a Redis Stream per reply when REDIS_URL is set (any
web process on any host can replay it from the start), and writes the growing text to
the reply's Message rows in the database (throttled), which is the channel of the
embedded default and what a reloaded page starts from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from django.conf import settings

logger = logging.getLogger(__name__)

# A finished reply's stream stays readable this long, for late readers.
STREAM_TTL_SECONDS = 3600


@cache
def redis_client():
    """The shared Redis connection pool, or None in the embedded default."""
    if not settings.REDIS_URL:
        return None
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)


def stream_key(completion_id: int) -> str:
    return f"{settings.REDIS_KEY_PREFIX}reply:{completion_id}"


def stop_key(completion_id: int) -> str:
    return f"{settings.REDIS_KEY_PREFIX}stop:{completion_id}"


@dataclass
class Publisher:
    """Worker side: hands deltas on to Redis (batched per `redis_interval`, the first at
    once) and to the database (batched per `flush_interval`)."""

    completion_id: int
    flush_interval: float
    write_db: Callable[[dict[int, str]], None]
    # Each entry names its attempt: a reader drops what an earlier (dead) attempt wrote.
    attempt: int = 1
    redis_interval: float = 0.02
    contents: dict[int, str] = field(default_factory=dict)
    last_flush: float = 0.0
    dirty: bool = False
    unsent: dict[int, str] = field(default_factory=dict)  # text not yet in Redis
    last_redis: float = 0.0

    def publish(self, deltas) -> None:
        for delta in deltas:
            self.contents[delta.index] = self.contents.get(delta.index, "") + delta.content
            if delta.content:
                self.unsent[delta.index] = self.unsent.get(delta.index, "") + delta.content
        now = time.monotonic()
        if self.unsent and (self.last_redis == 0.0 or now - self.last_redis >= self.redis_interval):
            self.send_redis()
        self.dirty = True
        # The first text goes out at once; after that, at most one write per interval.
        if self.last_flush == 0.0 or now - self.last_flush >= self.flush_interval:
            self.flush()

    def send_redis(self) -> None:
        """One round trip for everything not yet in the reply's Redis Stream."""
        redis = redis_client()
        if redis is None or not self.unsent:
            self.unsent.clear()
            return
        try:
            pipe = redis.pipeline(transaction=False)
            for index, text in self.unsent.items():
                pipe.xadd(
                    stream_key(self.completion_id), {"i": index, "d": text, "a": self.attempt}
                )
            pipe.expire(stream_key(self.completion_id), STREAM_TTL_SECONDS)
            pipe.execute()
        except Exception:  # the database copy still carries the text
            logger.warning("Could not publish deltas of %s to Redis", self.completion_id)
        self.unsent.clear()
        self.last_redis = time.monotonic()

    def flush(self) -> None:
        """Write everything out: the Redis batch and the database copy."""
        self.send_redis()
        if self.dirty:
            self.write_db(dict(self.contents))
            self.dirty = False
            self.last_flush = time.monotonic()

    @property
    def has_text(self) -> bool:
        return any(self.contents.values())


def publish_status(completion_id: int, state: str, *, attempt: int) -> None:
    """Tell readers the call is "running" or "retrying" (Redis only; else they poll).
    "running" starts an attempt: readers forget the text of the attempts before it."""
    redis = redis_client()
    if redis is None:
        return
    try:
        redis.xadd(stream_key(completion_id), {"s": state, "a": attempt})
        redis.expire(stream_key(completion_id), STREAM_TTL_SECONDS)
    except Exception:
        logger.warning("Could not publish the state of %s to Redis", completion_id)


def publish_end(completion_id: int, status: str) -> None:
    redis = redis_client()
    if redis is None:
        return
    try:
        redis.xadd(stream_key(completion_id), {"end": status})
        redis.expire(stream_key(completion_id), STREAM_TTL_SECONDS)
    except Exception:  # readers fall back to the database
        logger.warning("Could not publish the end of %s to Redis", completion_id)


def request_stop(completion_id: int) -> None:
    redis = redis_client()
    if redis is not None:
        try:
            redis.set(stop_key(completion_id), "1", ex=STREAM_TTL_SECONDS)
        except Exception:  # the database flag is the record
            logger.warning("Could not set the stop flag of %s in Redis", completion_id)


def stop_requested_in_redis(completion_id: int) -> bool | None:
    """True/False from Redis, or None when Redis is not in use (ask the database)."""
    redis = redis_client()
    if redis is None:
        return None
    try:
        return bool(redis.exists(stop_key(completion_id)))
    except Exception:
        return None
