"""Probes for load balancers and orchestrators.

`/healthz`: the process is up and serving (touches nothing else).
`/readyz`: it can do its work: the database answers, the broker takes connections and,
when configured, Redis answers. 503 with what failed, so a balancer stops sending traffic.

Answered by the first middleware, before host validation and the HTTPS redirect, because
probes come from inside the network by IP and over plain HTTP.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import cache
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from kombu import Connection

from chatsite.middleware import Middleware

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 3.0
# Few threads: a stuck dependency can hold them, and then later probes fail fast too.
_executor = ThreadPoolExecutor(max_workers=6, thread_name_prefix="readyz")


def check_database() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_broker() -> None:
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        # The embedded broker is a folder: ready when the worker and we can write to it.
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        probe = folder.parent / f".ready-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
        return
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=CHECK_TIMEOUT) as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, timeout=CHECK_TIMEOUT)


@cache
def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=CHECK_TIMEOUT)


def check_redis() -> None:
    _redis().ping()


def _in_own_thread(check: Callable[[], None]) -> None:
    try:
        check()
    finally:
        connections.close_all()  # this thread's; a pooled connection goes back to the pool


def readiness() -> dict[str, str]:
    """Each dependency's state: "ok" or the error, never a secret (no URLs).

    The checks run side by side in threads of their own with a deadline: a database that
    doesn't answer (a pool waiting out its timeout, a firewall dropping packets) makes
    the probe say so within CHECK_TIMEOUT instead of hanging it."""
    checks = {"database": check_database, "broker": check_broker}
    if settings.REDIS_URL:
        checks["redis"] = check_redis
    futures = {name: _executor.submit(_in_own_thread, check) for name, check in checks.items()}
    deadline = time.monotonic() + CHECK_TIMEOUT
    results = {}
    for name, future in futures.items():
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            results[name] = "error: no answer in time"
        except Exception as exc:  # any failure means "not ready"
            results[name] = f"error: {type(exc).__name__}"
        else:
            results[name] = "ok"
        if results[name] != "ok":
            logger.warning("Readiness: %s is not available (%s)", name, results[name])
    return results


def _ready_response(results: dict[str, str]) -> JsonResponse:
    ready = all(state == "ok" for state in results.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": results},
        status=200 if ready else 503,
        headers={"Cache-Control": "no-store"},
    )


def _alive() -> JsonResponse:
    return JsonResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


class HealthCheckMiddleware(Middleware):
    def call(self, request: HttpRequest) -> HttpResponseBase:
        if request.path == "/healthz":
            return _alive()
        if request.path == "/readyz":
            return _ready_response(readiness())
        return self.get_response(request)

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        if request.path == "/healthz":
            return _alive()
        if request.path == "/readyz":
            return _ready_response(await sync_to_async(readiness)())
        return await self.get_response(request)
