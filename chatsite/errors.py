"""The site's answer to a request Django refuses before any view runs (400)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _


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
