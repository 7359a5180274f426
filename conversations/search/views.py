"""The search page: a person's own chats, from the sidebar's search box."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from . import selectors


def _page_number(value: str | None) -> int:
    try:
        return max(1, int(value or "1"))
    except ValueError:
        return 1


@login_required
@require_GET
def chat_search(request: HttpRequest) -> HttpResponse:
    results = selectors.search_own(
        request.user, request.GET.get("q", ""), _page_number(request.GET.get("page"))
    )
    response = render(request, "search/results.html", {"results": results})
    # The page holds the person's own text: never kept by a shared cache.
    response["Cache-Control"] = "private, no-store"
    return response
