"""Counts as the active language writes them (12,804): grouped by thousands with the
language's separator (chatsite/formats/ for Chinese). A chat page writes hundreds of them,
so the separator is looked up once per language, not Django's formatting once per number."""

from __future__ import annotations

from functools import lru_cache

from django.utils import formats
from django.utils.translation import get_language


def grouped(value: int) -> str:
    separator = _thousands(get_language())
    if separator is None:
        return formats.number_format(value, force_grouping=True)
    return f"{value:,}" if separator == "," else f"{value:,}".replace(",", separator)


@lru_cache(maxsize=32)
def _thousands(language: str | None) -> str | None:
    """The language's thousands separator when it groups by three (None otherwise)."""
    if formats.get_format("NUMBER_GROUPING", language) != 3:
        return None
    return formats.get_format("THOUSAND_SEPARATOR", language)
