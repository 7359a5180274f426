"""The site's answers to what goes wrong outside the views' own handling: a request Django
refuses before any view runs (400, 413), and a database that cannot be reached (503)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _

from chatsite.middleware import Middleware

logger = logging.getLogger(__name__)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """400, or 413 saying the limit when the request was too large (a pasted book): the
    page's script shows the reason beside the composer, whose text stays where it was."""
    if isinstance(exception, RequestDataTooBig):
        status = 413
        reason = _(
            "This is too long to send: a request may be at most %(size)s, and a message "
            "at most 100,000 characters. Nothing was sent."
        ) % {"size": filesizeformat(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)}
    else:
        status = 400
        reason = _("The request could not be understood. Nothing was changed.")
    if request.headers.get("HX-Request"):
        return HttpResponse(reason, status=status, content_type="text/plain; charset=utf-8")
    return render(request, "400.html", {"reason": reason}, status=status)


class DatabaseUnavailableMiddleware(Middleware):
    """A view that cannot reach the database (restarting, a network cut) answers 503 with
    Retry-After and says so, instead of a bare 500: nothing was done, trying again works."""

    def call(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        return await self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logger.warning("Database unavailable for %s %s", request.method, request.path)
        reason = _("The site cannot reach its database just now. Nothing was done; try again.")
        # Plain text: a page would need the database (the session) to be drawn.
        response = HttpResponse(reason, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = "5"
        return response
