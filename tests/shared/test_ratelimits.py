"""How a rate is counted: a window that slides in steps of a bucket."""

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache

from conversations.shared import ratelimits


def test_the_window_slides_so_a_burst_across_its_edge_is_still_refused(clock, db):
    rate = ratelimits.Rate("test", limit=5, window=60)
    clock.now = 1_800_000_055.0  # five seconds before a minute's edge
    assert not any(rate.hit("x").refused for _ in range(5))
    clock.advance(6)
    refused = rate.hit("x")
    assert refused.refused
    # The five stay counted until their bucket leaves the window: 65 s after them.
    assert refused.wait == pytest.approx(59)
    clock.advance(59)
    assert not rate.hit("x").refused


def test_while_the_cache_is_unreachable_events_go_through_uncounted(settings, caplog):
    """A Redis restart must not fail a send or a log-in: the limit is off for those
    seconds (and says so in the log), then counts again."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",  # the discard port: nothing answers
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    rate = ratelimits.Rate("test", limit=1, window=60)
    assert not any(rate.hit("x").refused for _ in range(3))
    rate.clear("x")
    assert "test is not counted for now" in caplog.text
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert not rate.hit("x").refused
    assert rate.hit("x").refused


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="the cache is Redis only with REDIS_URL")
def test_with_redis_an_event_is_counted_in_one_round_trip(monkeypatch):
    import redis.client

    trips = []
    monkeypatch.setattr(
        redis.client.Redis, "execute_command", _counted(redis.client.Redis.execute_command, trips)
    )
    monkeypatch.setattr(
        redis.client.Pipeline, "execute", _counted(redis.client.Pipeline.execute, trips)
    )
    rate = ratelimits.Rate("trips", limit=2, window=60)

    assert not rate.hit("x").refused
    assert len(trips) == 1
    assert not rate.hit("x").refused
    refused = rate.hit("x")  # the third: refused, and taken back
    assert refused.refused and refused.wait > 0
    assert trips.count("execute") == 3  # a pipeline per event (the take-back is apart)
    assert cache.get(refused_key := rate._key("x", rate.bucket_now())) == 2, refused_key


def _counted(method, trips):
    def counting(self, *args, **kwargs):
        trips.append(method.__name__)
        return method(self, *args, **kwargs)

    return counting
