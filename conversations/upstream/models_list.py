"""Reading a provider's `GET {base}/models` (the OpenAI-compatible model list): plain data
in, plain data out, with short timeouts, for the background refresh only."""

from __future__ import annotations

from typing import Any

import requests

from . import protocol


def list_models(
    *,
    base_url: str,
    api_key: str,
    connect_timeout: float = 3.0,
    timeout: float = 5.0,
    session: requests.Session | None = None,
) -> list[str]:
    """The model ids the server lists, sorted; raises protocol.UpstreamError (its message
    without the key) when it cannot be read."""
    url = base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    getter = session.get if session is not None else requests.get
    try:
        response = getter(url, headers=headers, timeout=(connect_timeout, timeout))
    except requests.RequestException as error:
        text = protocol.short_text(f"{type(error).__name__}: {error}", 500)
        raise protocol.RetryableError(
            text.replace(api_key, "[redacted]") if api_key else text, error_type="connection"
        ) from error
    if response.status_code != 200:
        raise protocol.error_for_answer(
            response.status_code,
            protocol.message_of(response.text, reason=response.reason, status=response.status_code),
            secret=api_key,
        )
    try:
        data: Any = response.json()
    except ValueError as error:
        raise protocol.PermanentError(
            "the model list is not JSON", error_type="bad_response"
        ) from error
    rows = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise protocol.PermanentError(
            'the model list has no "data" array', error_type="bad_response"
        )
    ids = {protocol.short_text(row.get("id"), 200) for row in rows if isinstance(row, dict)}
    return sorted(i for i in ids if i)
