"""Request ids in every log line: set per web request, carried into Celery tasks.

A request takes the id a trusted proxy sent in X-Request-ID (when it looks like one) or a
new one, answers with it, and every line logged while serving it says it. A task sent
during the request carries the id in its message headers, and the worker's lines for that
task say it too, so one id follows a message from the browser to the upstream call.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponseBase
from django.utils.functional import empty

from chatsite.middleware import Middleware

NO_REQUEST = "-"
request_id_var: ContextVar[str] = ContextVar("request_id", default=NO_REQUEST)
HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")
# The attributes every LogRecord has; anything else was passed with `extra=` and is kept.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}

access_logger = logging.getLogger("chatsite.request")


def current_request_id() -> str:
    """The id of the request being served, or "" outside one."""
    request_id = request_id_var.get()
    return "" if request_id == NO_REQUEST else request_id


@contextmanager
def request_id_bound(request_id: str) -> Iterator[None]:
    """Log (and send tasks) under `request_id` for the duration."""
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)


def incoming_request_id(request: HttpRequest) -> str:
    return request_id_from(request.headers.get(HEADER, ""))


def request_id_from(offered: str) -> str:
    """The client's X-Request-ID when it is a sane one, else a new id."""
    return offered if _VALID_ID.fullmatch(offered) else uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", NO_REQUEST),
        }
        entry |= {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)

    converter = time.gmtime


class RequestIdMiddleware(Middleware):
    """Gives each request its id, answers with it, and logs one line per response."""

    def call(self, request: HttpRequest) -> HttpResponseBase:
        token = request_id_var.set(incoming_request_id(request))
        try:
            started = time.monotonic()
            return self._finish(request, self.get_response(request), started)
        finally:
            # A WSGI thread serves many requests; an ASGI request has its own context.
            request_id_var.reset(token)

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        # Not reset: the reply stream's body is sent after this returns, in this context.
        request_id_var.set(incoming_request_id(request))
        started = time.monotonic()
        return self._finish(request, await self.get_response(request), started)

    def _finish(
        self, request: HttpRequest, response: HttpResponseBase, started: float
    ) -> HttpResponseBase:
        response[HEADER] = request_id_var.get()
        if not access_logger.isEnabledFor(logging.INFO):
            return response  # LOG_LEVEL=WARNING: not even the line's fields are worked out
        access_logger.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "request_id": request_id_var.get(),
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
                "user_id": _user_id(request),
            },
        )
        return response


def _user_id(request: HttpRequest) -> int | None:
    # Only a user already loaded: loading one here would query (and fail in async code).
    user = getattr(request, "user", None)
    user = getattr(user, "_wrapped", user)
    return None if user is None or user is empty else user.pk
