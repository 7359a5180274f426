"""The "API keys" page: a person makes keys (each shown once in full), sees when they were
last used, and revokes them."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from conversations.accounts.selectors import site_settings

from . import selectors, services
from .forms import ApiKeyForm


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def api_keys(request: HttpRequest) -> HttpResponse:
    enabled = site_settings().api_keys
    form = ApiKeyForm(request.POST or None)
    made = None
    status = 200
    if request.method == "POST" and enabled and form.is_valid():
        try:
            key, text = services.api_key_create(
                user=request.user,
                name=form.cleaned_data["name"],
                expires_at=form.expires_at(),
                once=form.cleaned_data["once"],
            )
        except ValidationError as error:
            if error.code == "again":  # a reload of the answer that showed the key
                messages.warning(request, error.messages[0])
                form = ApiKeyForm()
            else:
                _form_errors(form, error)
            status = 400
        else:
            # Shown on this answer only: never stored, never in a redirect or the session.
            made = {"key": key, "text": text}
            form = ApiKeyForm()
    elif request.method == "POST":
        status = 403 if not enabled else 400
    context = {
        "enabled": enabled,
        "form": form,
        "made": made,
        "keys": selectors.api_keys_for_user(request.user),
        "base_url": request.build_absolute_uri("/v1"),
    }
    return render(request, "api/keys.html", context, status=status)


def _form_errors(form: ApiKeyForm, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field, errors in error.error_dict.items():
            for item in errors:
                form.add_error(field if field in form.fields else None, item)
    else:
        form.add_error(None, error)


@login_required
@require_POST
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    key = selectors.get_api_key_for_user(request.user, key_id)
    services.api_key_revoke(key=key)
    messages.success(request, _("The key “%(name)s” is revoked.") % {"name": key.name})
    return redirect("api_keys")
