"""Sign-up (as the site's sign-up mode says) and log-in, the site's and the admin's, both
answering 429 while the failed log-in limits refuse them, and 403 to a password while
passwords are turned off. Both pages offer single sign-on when it is on (oidc.py)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from . import oidc, selectors, services
from .context_processors import THEME_COOKIE, THEMES
from .forms import LoginForm, SignupForm
from .selectors import SignupMode


def signup(request: HttpRequest) -> HttpResponse:
    """Sign-up as the site's sign-up mode says: open, by invitation (?invite=CODE fills
    the code in), with approval (then no log-in until staff approve) or closed."""
    if request.user.is_authenticated:
        return redirect("chat_home")
    mode = selectors.signup_mode()
    if mode == SignupMode.CLOSED:
        status = 403 if request.method == "POST" else 200
        return render(request, "registration/signup.html", {"closed": True}, status=status)
    form = SignupForm(
        request.POST or None,
        invite_required=mode == SignupMode.INVITE,
        initial={"invite": request.GET.get("invite", "")},
    )
    if request.method == "POST" and form.is_valid():
        try:
            user = services.account_signup(
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
                invite_code=form.cleaned_data.get("invite", ""),
            )
        except ValidationError as error:
            form.add_service_errors(error)
        else:
            if not user.is_active:
                return redirect("signup_pending")
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("chat_home")
    context = {"form": form, "approval": mode == SignupMode.APPROVAL}
    return render(request, "registration/signup.html", context)


@require_GET
def signup_pending(request: HttpRequest) -> HttpResponse:
    return render(request, "registration/signup.html", {"pending": True})


def _refused(response: HttpResponse, form) -> HttpResponse:
    """A log-in refused by the failed log-in limits answers 429 Too Many Requests, and a
    password while passwords are turned off 403 Forbidden."""
    refusal = getattr(form, "refusal", None)
    if refusal is not None:
        response.status_code = 429
        response["Retry-After"] = str(refusal.retry_after)
    elif getattr(form, "passwords_off", False):
        response.status_code = 403
    return response


class LoginView(auth_views.LoginView):
    authentication_form = LoginForm
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), **oidc.login_context()}

    def form_invalid(self, form):
        return _refused(super().form_invalid(form), form)


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's own log-in view (its form is AdminLoginForm), answering 429 when refused,
    with the single sign-on button (templates/admin/login.html)."""
    response = admin.site.login(request, extra_context=oidc.login_context())
    return _refused(response, (getattr(response, "context_data", None) or {}).get("form"))


THEME_COOKIE_SECONDS = 365 * 24 * 3600


@require_POST
def theme_set(request: HttpRequest) -> HttpResponse:
    """Keep this browser's theme (system, light or dark) in a cookie. htmx and the page's
    script (which has already applied it) get 204; a form without script goes back."""
    chosen = request.POST.get("theme", "")
    if chosen not in THEMES:
        return HttpResponseBadRequest(_("Unknown theme."))
    if request.headers.get("HX-Request"):
        response = HttpResponse(status=204)
    else:
        back = request.POST.get("next", "")
        safe = url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
        response = redirect(back if safe else "chat_home")
    response.set_cookie(
        THEME_COOKIE,
        chosen,
        max_age=THEME_COOKIE_SECONDS,
        samesite="Lax",
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
    )
    return response
