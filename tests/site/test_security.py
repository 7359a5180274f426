"""Production settings: `check --deploy`, secrets from files, security headers, static files."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys

import pytest
from django.test import Client
from django.urls import reverse

from tests.support import ROOT

PRODUCTION_ENV = {
    "DJANGO_ENV": "production",
    "DJANGO_ALLOWED_HOSTS": "chat.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
    "OPENAI_API_KEY": "sk-production-test",
}


def manage(*args: str, env: dict[str, str], secret_key: bool = True) -> subprocess.CompletedProcess:
    """manage.py in a fresh process, with only the given settings (as a deployment has)."""
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "CHATSITE_VAR_DIR": str(ROOT / "var"),
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
    }
    if secret_key:
        base["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_deploy_is_clean_under_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_warns_on_the_embedded_default():
    """The embedded default is plain HTTP on loopback: the check must say what is missing,
    which proves the clean result above comes from the production settings."""
    result = manage("check", "--deploy", "--fail-level", "WARNING", env={})
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr + result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = manage("check", env=PRODUCTION_ENV, secret_key=False)
    assert result.returncode != 0
    assert "Set DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE)" in result.stderr


def test_production_refuses_debug():
    result = manage("check", env=PRODUCTION_ENV | {"DJANGO_DEBUG": "true"})
    assert result.returncode != 0
    assert "DJANGO_DEBUG must be false" in result.stderr


def test_secrets_can_come_from_files(tmp_path):
    key_file = tmp_path / "openai_key"
    key_file.write_text("sk-from-a-file\n")
    secret_file = tmp_path / "secret_key"
    secret_file.write_text(secrets.token_urlsafe(50))
    code = (
        "from django.conf import settings;"
        "print(settings.OPENAI_API_KEY == 'sk-from-a-file',"
        f" settings.SECRET_KEY == {secret_file.read_text()!r})"
    )
    env = PRODUCTION_ENV | {
        "OPENAI_API_KEY": "",
        "OPENAI_API_KEY_FILE": str(key_file),
        "DJANGO_SECRET_KEY_FILE": str(secret_file),
    }
    result = manage("shell", "--no-imports", "-c", code, env=env, secret_key=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


def test_an_unreadable_secret_file_is_a_clear_error(tmp_path):
    env = PRODUCTION_ENV | {"OPENAI_API_KEY_FILE": str(tmp_path / "missing")}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "OPENAI_API_KEY_FILE: cannot read" in result.stderr


def test_every_page_has_the_security_headers(client, alice):
    for url in (reverse("login"), reverse("chat_home"), reverse("usage_mine")):
        if url != reverse("login"):
            client.force_login(alice)
        response = client.get(url)
        assert response.status_code == 200
        csp = response["Content-Security-Policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["X-Frame-Options"] == "DENY"
        assert "camera=()" in response["Permissions-Policy"]


def test_pages_have_no_inline_script_or_style(client, alice):
    """What the CSP would block: <script> without src, <style>, style="" and on* handlers."""
    pages = [reverse("login"), reverse("signup"), reverse("chat_home"), reverse("usage_mine")]
    for url in pages:
        if url == reverse("chat_home"):
            client.force_login(alice)
        html = client.get(url).content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url
        assert "<style" not in html, url
        assert not re.search(r"\sstyle=", html), url
        assert not re.search(r"\son[a-z]+=", html), url


def test_static_files_have_hashed_names_and_are_cached_for_a_year(client, db):
    html = client.get(reverse("login")).content.decode()
    found = re.search(r'src="(/static/vendor/htmx-2\.0\.11\.min\.[0-9a-f]{12}\.js)"', html)
    assert found, "htmx is not referenced by its hashed name"
    response = client.get(found.group(1), HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert "max-age=315360000" in response["Cache-Control"]
    assert "immutable" in response["Cache-Control"]
    body = b"".join(response.streaming_content)
    assert len(body) > 1000


@pytest.fixture
def https_settings(settings):
    """The production HTTPS settings, applied to this process's new clients."""
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    return settings


def test_plain_http_is_redirected_to_https_behind_the_proxy(https_settings, db):
    response = Client().get(reverse("login"))
    assert response.status_code == 301
    assert response["Location"].startswith("https://")

    response = Client().get(reverse("login"), HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert response.cookies["csrftoken"]["secure"]
    assert response.cookies["csrftoken"]["httponly"]


def test_the_settings_in_the_deployment_guide_pass_check_deploy(tmp_path):
    """docs/deploy.md's /etc/chatsite/env, with its secret files, as written."""
    guide = (ROOT / "docs" / "deploy.md").read_text()
    block = re.search(r"```sh\n# /etc/chatsite/env\n(.*?)```", guide, re.S)
    assert block, "the guide's environment file is missing"
    env = {}
    for line in block.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, value = line.partition("=")
            env[name] = value
    secret_values = {
        "DJANGO_SECRET_KEY_FILE": secrets.token_urlsafe(50),
        "DATABASE_URL_FILE": "postgres://chat:password@127.0.0.1:9/chatsite",
        "OPENAI_API_KEY_FILE": "sk-guide",
    }
    for name, value in secret_values.items():
        assert env[name].startswith("/etc/chatsite/"), name
        path = tmp_path / name.lower()
        path.write_text(value + "\n")
        env[name] = str(path)
    env["DJANGO_STATIC_ROOT"] = str(tmp_path / "static")
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env, secret_key=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_processes_starting_together_agree_on_the_generated_secret_key(tmp_path):
    """The embedded default makes a key on first start; web and worker start together."""
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    env = {"CHATSITE_VAR_DIR": str(tmp_path), "DJANGO_SECRET_KEY": ""}
    base = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "DJANGO_SETTINGS_MODULE": "chatsite.settings"}
    processes = [
        subprocess.Popen(
            [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
            cwd=ROOT,
            env=base | env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    keys = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert len(keys) == 1
    assert len(keys.pop()) >= 50
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".secret_key")] == []


def test_production_hosts_share_live_replies_however_they_name_the_database():
    code = "from django.conf import settings; print(settings.REDIS_KEY_PREFIX)"
    prefixes = {
        manage("shell", "--no-imports", "-c", code, env=PRODUCTION_ENV | {"DATABASE_URL": url})
        .stdout.strip()
        .splitlines()[-1]
        for url in ("postgres://chat@127.0.0.1/chatsite", "postgres://chat@db.internal/chatsite")
    }
    assert prefixes == {"chatsite:"}


def test_a_request_too_large_to_read_says_the_limit(client, alice):
    from conversations.chat.services import conversations as chat_services

    client.force_login(alice)
    conversation = chat_services.conversation_create(owner=alice)
    huge = "x" * (10 * 1024 * 1024)
    url = f"/c/{conversation.pk}/messages/"
    page = client.post(url, {"content": huge})
    assert page.status_code == 413
    assert "at most 2.5\xa0MB" in page.content.decode()
    assert "Nothing was sent." in page.content.decode()
    htmx = client.post(url, {"content": huge}, HTTP_HX_REQUEST="true")
    assert htmx.status_code == 413
    assert htmx["Content-Type"].startswith("text/plain")
    assert "at most 100,000 characters" in htmx.content.decode()
    assert not conversation.messages.exists()


def test_pages_of_a_signed_in_person_are_kept_by_no_cache(client, alice):
    from conversations.chat.services import conversations as chat_services

    client.force_login(alice)
    conversation = chat_services.conversation_create(owner=alice)
    for path in ("/", f"/c/{conversation.pk}/", "/usage/", "/usage/export.csv"):
        cache_control = client.get(path)["Cache-Control"]
        assert "private" in cache_control and "no-store" in cache_control, path


def test_a_page_that_cannot_reach_the_database_answers_503_saying_so(alice_client, monkeypatch):
    from django.db import OperationalError

    from conversations.chat import selectors

    def unreachable(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(selectors, "sidebar_conversations", unreachable)
    response = alice_client.get("/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "cannot reach its database" in response.content.decode()
