"""The secret of a personal API key (plain functions, no database): how one is made, how
it is split into the prefix it is found by and the part that is checked, and the check."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import NamedTuple

SCHEME = "cs-"
PREFIX_LENGTH = 8
# token_urlsafe(30) is 40 characters: with the prefix, 48 after "cs-".
SECRET_BYTES = 30


class Parts(NamedTuple):
    prefix: str
    secret: str


def new_key() -> str:
    return (
        SCHEME + secrets.token_urlsafe(PREFIX_LENGTH * 3 // 4) + secrets.token_urlsafe(SECRET_BYTES)
    )


def split(key: str) -> Parts | None:
    """A key's prefix and secret, or None when it cannot be one of ours."""
    if not key.startswith(SCHEME) or len(key) < len(SCHEME) + PREFIX_LENGTH + 32:
        return None
    body = key[len(SCHEME) :]
    return Parts(body[:PREFIX_LENGTH], body[PREFIX_LENGTH:])


def new_salt() -> str:
    return secrets.token_hex(16)


def digest(secret: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def matches(secret: str, *, salt: str, hashed: str) -> bool:
    # Constant time: how long the compare takes says nothing of how much matched.
    return hmac.compare_digest(digest(secret, salt), hashed)
