"""Errors of the API in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`
with the HTTP status a client library maps to its own exception."""

from __future__ import annotations

import json


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = str(message)
        self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return json.dumps({"error": error}, ensure_ascii=False).encode()


def bad_parameter(param: str, message: str) -> ApiError:
    return ApiError(400, f"Invalid '{param}': {message}", code="invalid_value", param=param)
