"""A person's own account page: who they are here, the download of everything the site
holds of them, and the deletion of their account."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import exports, selectors, services
from .forms import AccountDeleteForm


def _page(request: HttpRequest, form: AccountDeleteForm, *, status: int = 200) -> HttpResponse:
    context = {
        "form": form,
        "conversation_count": selectors.conversation_count(request.user.pk),
    }
    return render(request, "privacy/account.html", context, status=status)


@login_required
@never_cache
@require_GET
def account(request: HttpRequest) -> HttpResponse:
    return _page(request, AccountDeleteForm(user=request.user))


@login_required
@require_http_methods(["GET", "POST"])
def account_export(request: HttpRequest) -> HttpResponse:
    """Everything of the person in one ZIP, streamed (the page's button posts)."""
    return exports.zip_response(request.user)


@login_required
@require_POST
def account_delete(request: HttpRequest) -> HttpResponse:
    form = AccountDeleteForm(request.POST, user=request.user)
    if not form.is_valid():
        return _page(request, form, status=400)
    services.account_delete(user=request.user)
    logout(request)
    messages.success(request, _("Your account and conversations were deleted."))
    return redirect("login")
