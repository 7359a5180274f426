"""The usage tables: one list of cells per row (`table`), shown on the page and written to
CSV alike, so a downloaded row holds what the page shows; only the page groups its counts
as the language writes them (12,804), while the CSV keeps plain figures a spreadsheet
reads as numbers. CSV headers stay English in every language, and the files start with a
UTF-8 BOM so spreadsheet programs keep Chinese text intact."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpResponse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from conversations.shared import numbers
from conversations.shared.spreadsheets import UTF8_BOM, spreadsheet_safe

from . import reports

# Column headers (key -> header); the same headers head the CSV files.
HEADERS = {
    "day": gettext_lazy("Day"),
    "username": gettext_lazy("User"),
    "group": gettext_lazy("Group"),
    "members": gettext_lazy("Members"),
    "model": gettext_lazy("Model"),
    "provider": gettext_lazy("Provider"),
    "source": gettext_lazy("Source"),
    "requests": gettext_lazy("Requests"),
    "failed": gettext_lazy("Failed"),
    "prompt_tokens": gettext_lazy("Prompt tokens"),
    "completion_tokens": gettext_lazy("Completion tokens"),
    "total_tokens": gettext_lazy("Total tokens"),
    "cost": gettext_lazy("Cost"),
    "currency": gettext_lazy("Currency"),
    "unpriced": gettext_lazy("Requests without a price"),
}
NUMERIC = {
    "members",
    "requests",
    "failed",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "unpriced",
}
METRIC_COLUMNS = [*reports.METRICS, "currency", "unpriced"]


def cost_cell(row: dict[str, Any]) -> str:
    if row["mixed_currency"]:
        return _("several currencies")
    if row["cost"] is None:
        return _("no price")
    return reports.cost_text(row["cost"])


COUNTS = NUMERIC - {"cost"}
SOURCES = {"browser": gettext_lazy("Browser"), "api": gettext_lazy("API")}


def cell(row: dict[str, Any], key: str, *, grouped: bool = False) -> str:
    if key == "cost":
        return cost_cell(row)
    if key == "day":
        return row["day"].isoformat()
    if key == "group":
        return row["name"]
    if key == "source":
        return str(SOURCES.get(row["source"], row["source"]))
    if key == "provider":
        # "" is the environment's own provider (OPENAI_BASE_URL).
        return row["provider_name"] or settings.DEFAULT_PROVIDER_NAME
    if key == "username" and row.get("user_id") is None:
        # Their usage outlives them, without their name (privacy: account deletion).
        return _("Deleted accounts")
    if grouped and key in COUNTS:
        return numbers.grouped(row[key])
    return str(row[key])


@dataclass
class Column:
    key: str
    header: str
    numeric: bool
    sort_url: str = ""
    sorted: str = ""  # "ascending" / "descending" when the table is sorted by it


def table(rows: list[dict], keys: list[str], *, grouped: bool = False) -> list[dict[str, Any]]:
    """The cells of each row: for CSV, or `grouped` for the page."""
    return [
        {
            "user_id": row.get("user_id"),
            "group_id": row.get("group_id"),
            "cells": [(key, cell(row, key, grouped=grouped)) for key in keys],
        }
        for row in rows
    ]


def columns(keys: list[str], *, sort: dict[str, str] | None = None, order: str = "") -> list:
    """Column headers; with `sort` (key -> query string without order) they link to sorting."""
    result = []
    for key in keys:
        column = Column(key, str(HEADERS[key]), key in NUMERIC)
        if sort is not None and key in reports.ORDERS:
            current = order.removeprefix("-") == key
            descending = order.startswith("-")
            if current:
                column.sorted = "descending" if descending else "ascending"
            # Numbers sort biggest first on the first click; names A to Z.
            first = key if key in ("username", "model") else f"-{key}"
            target = (key if descending else f"-{key}") if current else first
            column.sort_url = "?" + urlencode({**sort, "order": target})
        result.append(column)
    return result


def csv_response(filename: str, keys: list[str], rows: list[dict]) -> HttpResponse:
    response = HttpResponse(UTF8_BOM, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    # Headers are stable English keys whatever the page's language; cells read as on the page.
    with translation.override(None):
        writer.writerow([str(HEADERS[key]) for key in keys])
    for row in table(rows, keys):
        # Numbers are left alone; a name such as "+cmd" is kept from running as a formula.
        writer.writerow(
            [text if key in NUMERIC else spreadsheet_safe(text) for key, text in row["cells"]]
        )
    return response
