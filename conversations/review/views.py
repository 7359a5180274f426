"""The Privacy page: what staff may read, how long chats are kept, and (for the person
logged in) each time staff opened or exported one of their conversations or API calls."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from conversations.accounts.selectors import retention_days_for, site_settings

from . import trail


@require_safe
@never_cache
def privacy(request: HttpRequest) -> HttpResponse:
    settings = site_settings()
    context = {
        "staff_reading": settings.staff_reading,
        "retention_days": settings.retention_days,
        "reads": None,
    }
    if request.user.is_authenticated:
        # Theirs: their groups may keep chats longer or shorter than the site.
        context["retention_days"] = retention_days_for(request.user.pk, settings.retention_days)
        reads = trail.staff_reads(owner=request.user, page=request.GET.get("page"))
        context["reads"] = reads
        context["page_range"] = reads.paginator.get_elided_page_range(
            reads.number, on_each_side=2, on_ends=1
        )
    return render(request, "review/privacy.html", context)
