"""The shared cache (Redis), with one client and connection pool per process.

Django makes a cache object per thread and per async context (`caches` is an asgiref
`Local`), and `RedisCache` keeps its client, and so its connection pool, on that object.
Under ASGI each request runs in a context of its own, so every request made a new pool and
opened a new TCP connection to Redis for its session: measured, 9% of the web process's CPU
per completion, most of it in redis-py setting a connection up. The client is thread-safe
(redis-py's pool hands each thread a connection of its own) and notices a fork.

Django's client also builds a new `redis.Redis` for every operation (and redis-py fills
its table of reply callbacks, some 170 entries, each time): here one per pool is kept.
"""

import threading

from django.core.cache.backends import redis
from django.utils.functional import cached_property

_clients: dict[tuple, redis.RedisCacheClient] = {}
_lock = threading.Lock()


class RedisCacheClient(redis.RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(redis.RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient

    @cached_property
    def _cache(self) -> redis.RedisCacheClient:
        key = (self._class, tuple(self._servers), repr(sorted(self._options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._class(self._servers, **self._options)
            return client
