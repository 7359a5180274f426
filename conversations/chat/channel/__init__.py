"""The reply channel: how a reply's text gets from the worker writing it to the web
processes showing it, live. One channel per deployment, chosen once from the settings:
Redis Streams when REDIS_URL is set (any web process on any host replays a reply from its
start), else the reply's rows in the database, which every channel keeps up to date (what
a reloaded page starts from)."""

from __future__ import annotations

from functools import cache

from .base import Ended, KeepAlive, Pacer, Publisher, Status, Texts
from .database import DatabaseChannel
from .redis import RedisChannel, redis_client

__all__ = [
    "DatabaseChannel",
    "Ended",
    "KeepAlive",
    "Pacer",
    "Publisher",
    "RedisChannel",
    "Status",
    "Texts",
    "reply_channel",
]


@cache
def reply_channel() -> DatabaseChannel:
    """The one question in the code base of whether Redis is configured."""
    if redis_client() is not None:
        return RedisChannel(redis_client())
    return DatabaseChannel()
