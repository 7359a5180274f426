"""A client's Chat Completions request checked against the seed contract (plain data, no
Django): the body to send upstream, or an ApiError naming the parameter at fault."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from conversations.upstream import protocol

from .errors import ApiError, bad_parameter

ROLES = ("system", "user", "assistant")
# Accepted and not sent on: OpenAI's end-user tag.
IGNORED = ("user",)
KNOWN = {"model", "messages", "stream", "stream_options", *protocol.PARAMETERS, *IGNORED}


@dataclass(frozen=True)
class Asked:
    """What to send upstream, and what the client asked of the stream."""

    body: dict[str, Any]
    stream: bool
    # The client asked for the usage chunk (it is always asked of the upstream, to bill).
    wants_usage: bool


def _content(index: int, value: Any) -> str:
    if isinstance(value, str):
        return value
    # Content parts: text only (this contract has no images or audio).
    if isinstance(value, list) and all(
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        for part in value
    ):
        return "".join(part["text"] for part in value)
    raise bad_parameter(f"messages[{index}].content", "must be a string or a list of text parts")


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise bad_parameter("messages", "must be a non-empty array of messages")
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            raise bad_parameter(f"messages[{index}]", "must be an object")
        role = message.get("role")
        if role == "developer":  # newer clients' name for the system message
            role = "system"
        if role not in ROLES:
            raise bad_parameter(
                f"messages[{index}].role", f"must be one of {', '.join(ROLES)}, not {role!r}"
            )
        messages.append(
            {"role": role, "content": protocol.clean_text(_content(index, message.get("content")))}
        )
    return messages


def asked(raw: bytes, *, models: Collection[str], max_choices: int) -> Asked:
    """The request as this site sends it upstream. 400 for a malformed body or parameter
    (naming it), 403 for a model not offered to this user."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    unknown = sorted(set(data) - KNOWN)
    if unknown:
        raise ApiError(
            400,
            f"Unrecognized request argument supplied: {unknown[0]}",
            code="unknown_parameter",
            param=unknown[0],
        )
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise bad_parameter("model", "is required and must be a string")
    if model not in models:
        raise ApiError(
            403,
            f"The model '{model}' is not offered to you here. GET /v1/models lists yours.",
            type="permission_error",
            code="model_not_allowed",
            param="model",
        )
    messages = _messages(data.get("messages"))
    stream = data.get("stream") or False
    if not isinstance(stream, bool):
        raise bad_parameter("stream", "must be a boolean")
    options = data.get("stream_options")
    if options is not None and (not isinstance(options, dict) or not stream):
        raise bad_parameter("stream_options", "is an object, allowed only with stream: true")
    params = {name: data[name] for name in protocol.PARAMETERS if data.get(name) is not None}
    if (params.get("n") or 1) > 1 and isinstance(params["n"], int) and params["n"] > max_choices:
        raise bad_parameter("n", f"must be at most {max_choices} on this site")
    try:
        body = protocol.build_request(model=model, messages=messages, stream=stream, **params)
    except protocol.ParameterError as exc:
        raise bad_parameter(exc.field, exc.message) from None
    return Asked(
        body=body, stream=stream, wants_usage=bool(options and options.get("include_usage"))
    )
