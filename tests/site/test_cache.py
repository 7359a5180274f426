"""The shared cache keeps one Redis client (and connection pool) per process, not one per
request: Django makes a cache object per thread and async context."""

import threading

import pytest
from django.conf import settings as django_settings

from chatsite.cache import RedisCache

LOCATION = django_settings.REDIS_URL or "redis://127.0.0.1:6379/13"


def _in_threads(count: int, make):
    made = [None] * count

    def run(index):
        made[index] = make()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return made


def test_every_cache_object_of_a_process_shares_one_client():
    caches = _in_threads(4, lambda: RedisCache(LOCATION, {"KEY_PREFIX": "t"}))

    assert len({id(cache) for cache in caches}) == 4
    assert len({id(cache._cache) for cache in caches}) == 1


def test_a_different_server_or_options_gets_its_own_client():
    one = RedisCache(LOCATION, {})
    other = RedisCache(LOCATION, {"OPTIONS": {"socket_timeout": 1}})

    assert one._cache is not other._cache


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="a real round trip needs Redis")
def test_requests_in_turn_reuse_one_connection():
    def request():
        cache = RedisCache(LOCATION, {"KEY_PREFIX": "reuse"})
        cache.set("key", "value")
        return cache.get("key")

    pool = RedisCache(LOCATION, {"KEY_PREFIX": "reuse"})._cache._get_connection_pool(write=True)
    before = pool._created_connections
    for _ in range(10):  # each in a thread of its own, as a request on a pooled thread
        assert _in_threads(1, request) == ["value"]

    # At most one new connection (none when the process already had one free), not ten.
    assert pool._created_connections - before <= 1


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="the cache is Redis only with REDIS_URL")
def test_the_configured_cache_shares_its_client_across_threads():
    from django.core.cache import caches

    clients = _in_threads(2, lambda: caches["default"]._cache)

    assert clients[0] is clients[1]


def test_each_operation_reuses_the_pools_redis_client():
    # Django's own client builds a new redis.Redis (and its table of reply callbacks)
    # for every get and set.
    client = RedisCache(LOCATION, {"KEY_PREFIX": "t"})._cache

    first = client.get_client("a", write=True)

    assert client.get_client("b", write=True) is first
    assert client.get_client("c") is first  # one server: reads use the same pool
    assert first.connection_pool is client._get_connection_pool(write=True)
