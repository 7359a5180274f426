"""Providers' keys at rest: Fernet tokens under CHATSITE_ENCRYPTION_KEY (the first key
encrypts, every one decrypts), rotated by `manage.py rotate_provider_keys`."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from conversations.providers import secrets, services
from conversations.providers.models import Provider

OLD, NEW, OTHER = (Fernet.generate_key().decode() for _ in range(3))


def test_a_key_comes_back_from_its_token(settings):
    settings.CHATSITE_ENCRYPTION_KEY = OLD
    token = secrets.encrypt("sk-round-trip-1234")
    assert "sk-round-trip-1234" not in token
    assert secrets.decrypt(token) == "sk-round-trip-1234"
    assert secrets.encrypt("") == "" and secrets.decrypt("") == ""


def test_without_the_setting_the_key_is_derived_from_the_secret_key(settings):
    settings.CHATSITE_ENCRYPTION_KEY = ""
    token = secrets.encrypt("sk-derived")
    assert secrets.decrypt(token) == "sk-derived"
    settings.SECRET_KEY = "another-secret-key-entirely-0123456789"
    with pytest.raises(secrets.UnreadableKey):
        secrets.decrypt(token)


def test_an_old_token_opens_after_a_new_key_is_put_first_and_rotates_to_it(settings):
    settings.CHATSITE_ENCRYPTION_KEY = OLD
    token = secrets.encrypt("sk-rotate-me")
    settings.CHATSITE_ENCRYPTION_KEY = f"{NEW}, {OLD}"
    assert secrets.decrypt(token) == "sk-rotate-me"
    rotated = secrets.rotate(token)
    assert rotated != token
    settings.CHATSITE_ENCRYPTION_KEY = NEW
    assert secrets.decrypt(rotated) == "sk-rotate-me"
    with pytest.raises(secrets.UnreadableKey):
        secrets.decrypt(token)


def test_a_token_of_a_key_not_configured_is_unreadable(settings):
    settings.CHATSITE_ENCRYPTION_KEY = OTHER
    token = secrets.encrypt("sk-elsewhere")
    settings.CHATSITE_ENCRYPTION_KEY = f"{NEW},{OLD}"
    with pytest.raises(secrets.UnreadableKey):
        secrets.decrypt(token)
    with pytest.raises(secrets.UnreadableKey):
        Provider(name="x", base_url="http://x/v1", api_key_encrypted=token).api_key  # noqa: B018


def provider(name: str, key: str) -> Provider:
    return services.provider_save(provider=Provider(name=name, base_url="http://x/v1"), api_key=key)


def test_the_command_encrypts_every_providers_key_under_the_first_key(db, settings):
    settings.CHATSITE_ENCRYPTION_KEY = OLD
    alpha, beta = provider("Alpha", "sk-alpha"), provider("Beta", "sk-beta")
    keyless = services.provider_save(provider=Provider(name="Open", base_url="http://o/v1"))
    settings.CHATSITE_ENCRYPTION_KEY = f"{NEW},{OLD}"
    out = StringIO()
    call_command("rotate_provider_keys", stdout=out)
    assert "2 provider keys" in out.getvalue()
    settings.CHATSITE_ENCRYPTION_KEY = NEW  # the old key dropped
    for row, key in ((alpha, "sk-alpha"), (beta, "sk-beta")):
        row.refresh_from_db()
        assert row.api_key == key
    keyless.refresh_from_db()
    assert keyless.api_key_encrypted == ""


def test_the_command_names_the_providers_whose_key_it_cannot_open(db, settings):
    settings.CHATSITE_ENCRYPTION_KEY = OTHER
    lost = provider("Lost", "sk-lost")
    settings.CHATSITE_ENCRYPTION_KEY = OLD
    kept = provider("Kept", "sk-kept")
    settings.CHATSITE_ENCRYPTION_KEY = f"{NEW},{OLD}"
    with pytest.raises(CommandError, match="Lost"):
        call_command("rotate_provider_keys", stdout=StringIO())
    settings.CHATSITE_ENCRYPTION_KEY = NEW
    kept.refresh_from_db()
    assert kept.api_key == "sk-kept"  # the others are rotated all the same
    token = lost.api_key_encrypted
    lost.refresh_from_db()
    assert lost.api_key_encrypted == token  # left as it was
