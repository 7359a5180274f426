"""Template context every page gets from the chat domain."""

from django.conf import settings
from django.http import HttpRequest


def upstream(request: HttpRequest) -> dict:
    # Only whether the upstream is simulated; the base URL and key never reach a page.
    return {"upstream_simulated": settings.UPSTREAM_SIMULATED}
