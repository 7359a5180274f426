"""/healthz and /readyz, in this process and in a uvicorn process whose database is down."""

from __future__ import annotations

import pytest
import requests
from django.test import Client

from tests.support import WebProcess, subprocess_env


def test_healthz_answers_without_touching_anything(client):
    # No `db` fixture: any query would fail this test.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


def test_probes_answer_any_host_and_plain_http(settings, db):
    """Balancers probe by IP over HTTP: no 400 for the host, no redirect to HTTPS."""
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    probe = Client(HTTP_HOST="10.1.2.3:8000")
    assert probe.get("/healthz").status_code == 200
    assert probe.get("/readyz").status_code == 200
    assert probe.get("/accounts/login/").status_code == 400  # other pages still check


def test_readyz_checks_the_database_broker_and_redis(client, db, settings):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    checks = response.json()["checks"]
    expected = {"database": "ok", "broker": "ok"}
    if settings.REDIS_URL:
        expected["redis"] = "ok"
    assert checks == expected


def test_readyz_fails_when_the_broker_is_unreachable(client, db, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"].startswith("error")
    assert body["checks"]["database"] == "ok"
    assert "127.0.0.1:9" not in response.content.decode()  # no addresses in the answer


def test_readyz_fails_when_the_database_is_unreachable(simulator, tmp_path):
    """A real uvicorn whose DATABASE_URL points at a port where nothing listens."""
    env = subprocess_env(
        simulator, DATABASE_URL="postgres://chat:secret@127.0.0.1:9/chatsite", DB_POOL_TIMEOUT="1"
    )
    web = WebProcess(env, tmp_path / "web.log")
    web.start(ready_path="/healthz")
    try:
        assert requests.get(f"{web.url}/healthz", timeout=5).status_code == 200
        response = requests.get(f"{web.url}/readyz", timeout=10)
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["database"].startswith("error")
        assert checks["broker"] == "ok"
        assert "secret" not in response.text
    finally:
        web.stop()


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_are_not_cached_by_the_proxy(client, db, path):
    assert client.get(path)["Cache-Control"] == "no-store"
