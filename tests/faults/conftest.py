"""The fault suite's fixtures: a production-like stack per test, and the fault table.

The stack: two uvicorn web processes and two Celery workers (--pool threads; the first
runs beat), DJANGO_ENV=production, every process reaching PostgreSQL through a TcpProxy
(so a test can cut it) and Redis as configured (or a private redis-server that a test
can kill). The suite needs the production configuration (PostgreSQL + Redis) and skips
on the embedded one; when PostgreSQL is asked for it never skips.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings

from tests.services import REDIS_SERVER, RedisServer
from tests.support import Simulator, WebProcess, WorkerProcess, subprocess_env
from tests.support import test_database_url as database_url  # not collected as a test
from tests.tcpproxy import TcpProxy

from . import harness
from .harness import Stack, StackSetup

TABLE_FILE = "fault-table.md"
_basetemp: list[Path] = []


def _postgresql_requested() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


def _refuse(reason: str) -> None:
    """Skip on the embedded configuration; fail when PostgreSQL was asked for (CI)."""
    if _postgresql_requested():
        pytest.fail(f"DATABASE_URL asks for PostgreSQL, so the fault suite must run: {reason}")
    pytest.skip(
        f"the fault suite is the production configuration's (PostgreSQL + Redis): {reason}; "
        "set DATABASE_URL=postgres://..., CELERY_BROKER_URL=redis://... and "
        "REDIS_URL=redis://... (make faults)"
    )


@pytest.fixture(autouse=True)
def _production_configuration(tmp_path_factory) -> None:
    if not _basetemp:
        _basetemp.append(tmp_path_factory.getbasetemp())
    missing = []
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        missing.append("the database is not PostgreSQL")
    if not settings.REDIS_URL:
        missing.append("REDIS_URL is not set")
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        missing.append("the broker is not Redis")
    if missing:
        _refuse(", ".join(missing))


@pytest.fixture
def stack_setup() -> StackSetup:
    """What a module changes in its stack: it defines a fixture of this name."""
    return StackSetup()


def _through(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{auth}@{netloc}" if auth else netloc))


@pytest.fixture
def stack(
    transactional_db, simulator: Simulator, tmp_path: Path, stack_setup: StackSetup
) -> Iterator[Stack]:
    db = settings.DATABASES["default"]
    database = TcpProxy(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)).start()
    redis = None
    webs: tuple[WebProcess, ...] = ()
    workers: tuple[WorkerProcess, ...] = ()
    try:
        extra = {}
        if stack_setup.private_redis:
            if REDIS_SERVER is None:
                _refuse("redis-server is not installed (the Redis restart needs its own)")
            redis = RedisServer(tmp_path / "redis.log").start()
            extra = {"CELERY_BROKER_URL": redis.url(0), "REDIS_URL": redis.url(1)}
        env = subprocess_env(
            simulator,
            DATABASE_URL=_through(database, database_url()),
            DJANGO_ENV="production",
            DJANGO_HTTPS="false",  # plain HTTP on loopback: no TLS proxy in front
            DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
            DJANGO_ALLOWED_HOSTS="127.0.0.1",
            # Every process (this one's checks too) reads the same live replies and limits.
            REDIS_KEY_PREFIX=settings.REDIS_KEY_PREFIX,
            # Recovery within seconds: a dead worker's claim runs out, beat sweeps often,
            # quiet streams say so every second (readers check their deadline that often).
            COMPLETION_LEASE_SECONDS="3",
            COMPLETION_SWEEP_INTERVAL="0.5",
            STREAM_HEARTBEAT_SECONDS="1",
            # Budgets on (their rows are locked with every send); the send limits out of
            # the way: the faults count deliveries, not refusals by design.
            BUDGET_MONTHLY_TOKENS="1000000000",
            MAX_REPLIES_IN_FLIGHT="100",
            MESSAGES_PER_MINUTE="0",
            **extra,
        )
        # Not from this shell: no proxy is trusted, and production refuses DEBUG.
        for name in ("DJANGO_ALLOW_ASYNC_UNSAFE", "DJANGO_DEBUG", "DJANGO_TRUSTED_PROXIES"):
            env.pop(name, None)
        env.update(stack_setup.env)
        webs = (WebProcess(env, tmp_path / "web-a.log"), WebProcess(env, tmp_path / "web-b.log"))
        workers = (
            WorkerProcess(env, tmp_path / "worker-1.log", beat=True),
            WorkerProcess(env, tmp_path / "worker-2.log"),
        )
        starting = [*webs, *(workers if stack_setup.beat_worker_started else workers[1:])]
        with ThreadPoolExecutor(max_workers=len(starting)) as pool:
            for started in [pool.submit(p.start) for p in starting]:
                started.result()
        yield Stack(webs=webs, workers=workers, simulator=simulator, database=database, redis=redis)
    finally:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda process: process.stop(), (*webs, *workers)))
        database.close()
        if redis is not None:
            redis.stop()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """The fault table (Markdown), printed and written to <basetemp>/fault-table.md."""
    if not harness.ROWS:
        return
    table = "\n".join([harness.TABLE_HEADER, *(row.markdown() for row in harness.ROWS)])
    terminalreporter.section("fault table")
    terminalreporter.write_line(table)
    if _basetemp:
        path = _basetemp[0] / TABLE_FILE
        path.write_text(table + "\n")
        terminalreporter.write_line(f"(written to {path})")
