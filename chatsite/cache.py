"""The shared cache (Redis), with one client and connection pool per process.

Django makes a cache object per thread and per async context (`caches` is an asgiref
`Local`), and `RedisCache` keeps its client, and so its connection pool, on that object.
Under ASGI each request runs in a context of its own, so every request made a new pool and
opened a new TCP connection to Redis for its session: measured, 9% of the web process's CPU
per completion, most of it in redis-py setting a connection up. The client is thread-safe
(redis-py's pool hands each thread a connection of its own) and notices a fork.
"""

import threading

from django.core.cache.backends import redis
from django.utils.functional import cached_property

_clients: dict[tuple, redis.RedisCacheClient] = {}
_lock = threading.Lock()


class RedisCache(redis.RedisCache):
    @cached_property
    def _cache(self) -> redis.RedisCacheClient:
        key = (self._class, tuple(self._servers), repr(sorted(self._options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._class(self._servers, **self._options)
            return client
