"""Providers' API keys encrypted at rest with Fernet (the `cryptography` package).

The keys come from CHATSITE_ENCRYPTION_KEY: one or more Fernet keys, comma-separated, the
first encrypting and every one decrypting (MultiFernet), which is how a key is rotated:
put the new key first, keep the old one after it, run `manage.py rotate_provider_keys`,
then drop the old one. Without the setting, one key is derived from DJANGO_SECRET_KEY
(changing the secret key then makes the stored keys unreadable: enter them again)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class UnreadableKey(Exception):
    """A stored key none of the configured encryption keys opens."""


def _fernet() -> MultiFernet:
    configured = [k.strip() for k in settings.CHATSITE_ENCRYPTION_KEY.split(",") if k.strip()]
    if not configured:
        digest = hashlib.sha256(b"chatsite provider keys:" + settings.SECRET_KEY.encode()).digest()
        configured = [base64.urlsafe_b64encode(digest).decode()]
    return MultiFernet([Fernet(key.encode()) for key in configured])


def encrypt(text: str) -> str:
    return _fernet().encrypt(text.encode()).decode() if text else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as error:
        raise UnreadableKey("no CHATSITE_ENCRYPTION_KEY opens this provider's key") from error


def rotate(token: str) -> str:
    """The token encrypted again under the first key (MultiFernet.rotate)."""
    return _fernet().rotate(token.encode()).decode() if token else ""
