"""Checks of providers' fields."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _


def validate_base_url(value: str) -> None:
    """http(s), a host and no password in it. A host without a dot is fine: a container's
    name (http://vllm:8000/v1), which Django's URLValidator refuses."""
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises on a port that is no number
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in value)
    ):
        raise ValidationError(
            _("Enter the http:// or https:// address its API starts at, e.g. http://vllm:8000/v1"),
            code="invalid",
        )
    if parts.username or parts.password:
        # It would be shown on every admin page, and in logs: the key has its own field.
        raise ValidationError(
            _("Leave the user and password out of the address: the key goes in API key."),
            code="credentials",
        )
