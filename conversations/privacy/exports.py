"""A person's download of everything the site holds of them, as one ZIP streamed as it is
written: every conversation (portability's archive: `<id>-<slug>.json` and `.md`), then
`account.json`, `usage.csv`, `api_keys.json` and `staff_access.json`. Nobody else's data,
and no secret (a key's secret or hash, a password's hash)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.http import StreamingHttpResponse
from django.utils import timezone, translation
from django.utils.http import content_disposition_header

from conversations.portability import archive
from conversations.shared.spreadsheets import UTF8_BOM, spreadsheet_safe
from conversations.usage import reports
from conversations.usage.tables import HEADERS, METRIC_COLUMNS, NUMERIC, table

from . import selectors

DAY_KEYS = ["day", *METRIC_COLUMNS]
MODEL_KEYS = ["model", "provider", "source", *METRIC_COLUMNS]


def account_zip(user_id: int) -> AsyncIterator[bytes]:
    """The ZIP's bytes, as an async iterator (the site runs under ASGI)."""
    return archive.chats_zip(user_id, extra=lambda: account_files(user_id))


def zip_filename(user) -> str:
    return f"chatsite-{user.get_username()}-{timezone.localdate():%Y-%m-%d}.zip"


def zip_response(user) -> StreamingHttpResponse:
    """The download of the user's ZIP (their own page's, or staff's in the admin)."""
    response = StreamingHttpResponse(account_zip(user.pk), content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(True, zip_filename(user))
    # A person's data: never kept by a shared cache, nor on disk by the browser.
    response["Cache-Control"] = "private, no-store"
    return response


def account_files(user_id: int) -> list[tuple[str, bytes]]:
    """The files after the conversations: (name, content)."""
    user = get_user_model().objects.get(pk=user_id)
    return [
        ("account.json", _json(account_data(user))),
        ("usage.csv", usage_csv(user)),
        ("api_keys.json", _json(selectors.api_keys(user.pk))),
        ("staff_access.json", _json(selectors.staff_access(user.pk))),
    ]


def _plain(value: Any) -> Any:
    # Times at full precision, as the conversations' files write them.
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _json(document: Any) -> bytes:
    return json.dumps(document, default=_plain, ensure_ascii=False, indent=2).encode()


def account_data(user) -> dict[str, Any]:
    return {
        "username": user.get_username(),
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "date_joined": user.date_joined,
        "last_login": user.last_login,
    }


def usage_csv(user) -> bytes:
    """The person's usage since their first day: a table per day (days with calls only),
    an empty line, then a table per model and source. Written as the usage pages' CSV
    files are: English headers, a UTF-8 BOM, no cell a spreadsheet would run."""
    start, end = selectors.usage_start(user), timezone.localdate()
    sections = [
        (DAY_KEYS, reports.per_day(user.pk, start, end, fill=False)),
        (MODEL_KEYS, reports.per_model(user.pk, start, end)),
    ]
    out = io.StringIO()
    out.write(UTF8_BOM)
    writer = csv.writer(out)
    for index, (keys, rows) in enumerate(sections):
        if index:
            writer.writerow([])
        with translation.override(None):
            writer.writerow([str(HEADERS[key]) for key in keys])
        for row in table(rows, keys):
            writer.writerow(
                [text if key in NUMERIC else spreadsheet_safe(text) for key, text in row["cells"]]
            )
    return out.getvalue().encode()
