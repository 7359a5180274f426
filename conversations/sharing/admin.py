"""Share links in the admin: staff see every link, live or revoked, and revoke links; a
link is never added or changed here. Turning sharing off site-wide is the site settings'
"share links" field."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from conversations.chat import reading
from conversations.chat.reading_admin import ReadingPolicyMixin

from . import services
from .models import ShareLink


class StatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("live", _("live")), ("revoked", _("revoked"))]

    def queryset(self, request, queryset):
        if self.value() in ("live", "revoked"):
            return queryset.filter(revoked_at__isnull=self.value() == "live")
        return queryset


@admin.register(ShareLink)
class ShareLinkAdmin(ReadingPolicyMixin, admin.ModelAdmin):
    list_display = ("display_title", "owner", "conversation_number", "created_at", "status")
    list_filter = (StatusFilter, "created_at")
    list_select_related = ("owner", "conversation")
    list_display_links = ("display_title",)
    search_fields = ("title", "owner__username")
    search_help_text = _("Title (where staff may read chats) or username.")
    ordering = ("-created_at",)
    # The shared messages are not shown here: reading them is staff review's, audited there.
    fields = ("title", "owner", "conversation", "leaf_number", "created_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke_selected"]

    def get_search_fields(self, request: HttpRequest):
        # A link's title is its conversation's: searched only while staff may read them.
        return self.search_fields if reading.reads_all() else ("owner__username",)

    # A link's page shows its title: open only where staff may read the conversation.
    def may_read(self, obj: ShareLink) -> bool:
        return reading.may_read(obj.conversation)

    def row_name(self, obj: ShareLink) -> str:
        return self.display_title(obj)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)

    # Only the list's revoke action changes a link: each link's own page is read-only.
    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None and self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description=_("title"), ordering="title")
    def display_title(self, obj: ShareLink) -> str:
        # The shared title is chat content: shown only as far as staff may read chats.
        if not reading.may_read(obj.conversation):
            return reading.hidden_title(obj.conversation_id)
        return str(obj)

    @admin.display(description=_("conversation"), ordering="conversation_id")
    def conversation_number(self, obj: ShareLink) -> int:
        return obj.conversation_id

    @admin.display(description=_("last message shared"))
    def leaf_number(self, obj: ShareLink) -> int:
        return obj.leaf_id

    @admin.display(description=_("status"))
    def status(self, obj: ShareLink) -> str:
        return str(_("live")) if obj.is_live else str(_("revoked"))

    @admin.action(description=_("Revoke selected links"), permissions=["change"])
    def revoke_selected(self, request, queryset):
        count = services.share_links_revoke(links=queryset)
        self.message_user(
            request,
            ngettext("%(count)d link revoked.", "%(count)d links revoked.", count)
            % {"count": count},
        )
