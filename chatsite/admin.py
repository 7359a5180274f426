"""The site's admin: Django's, but it does not exist for someone logged in who is not staff
(404 on every page but log-in and log-out), where Django would send them to its log-in
page. A group manager, say, is such a person: nothing of the admin is theirs to find."""

from __future__ import annotations

from functools import update_wrapper

from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse


class SiteAdmin(admin.AdminSite):
    """`admin.site` (chatsite.apps.SiteAdminConfig): every page goes through admin_view."""

    def admin_view(self, view, cacheable: bool = False):
        checked = super().admin_view(view, cacheable)

        def inner(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            user = request.user
            # Log-out keeps Django's way (log-in is never wrapped: it is self.login).
            if (
                user.is_authenticated
                and not user.is_staff
                and request.path != reverse("admin:logout", current_app=self.name)
            ):
                raise Http404
            return checked(request, *args, **kwargs)

        return update_wrapper(inner, checked)
