"""Personal API keys in the admin: staff see every key (never its secret, which is not
kept) and revoke keys at once."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import services
from .models import ApiKey


class StaffOnly:
    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)

    # Revoking is the one change (an action); the key's fields are all read-only.
    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(StaffOnly, admin.ModelAdmin):
    list_display = ("name", "user", "shown", "created_at", "last_used_at", "expires_at", "state")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "created_at")
    list_select_related = ("user",)
    search_fields = ("name", "prefix", "user__username")
    search_help_text = _("Key name, its first characters (after cs-) or username.")
    ordering = ("-created_at",)
    fields = ("user", "name", "shown", "created_at", "last_used_at", "expires_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke_selected"]

    @admin.display(description=_("key"))
    def shown(self, obj: ApiKey) -> str:
        return obj.shown

    @admin.display(description=_("state"))
    def state(self, obj: ApiKey) -> str:
        if obj.revoked_at:
            return str(_("revoked"))
        return str(_("live")) if obj.is_live() else str(_("expired"))

    @admin.action(description=_("Revoke selected keys"))
    def revoke_selected(self, request, queryset):
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            services.api_key_revoke(key=key)
            count += 1
        self.message_user(
            request,
            ngettext("%(count)d key revoked.", "%(count)d keys revoked.", count) % {"count": count},
        )
