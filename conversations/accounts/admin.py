"""Sign-up in the admin: the site's sign-up mode (superusers), invitations and the
accounts waiting for approval; the admin's own log-in under the failed log-in limits; and
groups with their managers (who see a group's usage and members, never their chats)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db.models import CharField, Count, QuerySet, Value
from django.db.models.functions import Concat
from django.http import HttpRequest
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from conversations.shared.admin import SuperusersOnly

from . import selectors, services
from .forms import AdminLoginForm
from .models import GroupManager, GroupRetention, Invitation, PendingAccount, SiteSettings

admin.site.login_form = AdminLoginForm


@admin.register(SiteSettings)
class SiteSettingsAdmin(SuperusersOnly, admin.ModelAdmin):
    """One row, changed only by superusers; the list goes straight to it."""

    fields = (
        "signup_mode",
        "max_choices",
        "model_titles",
        "api_keys",
        "sharing",
        "public_share_links",
        "retention_days",
        "staff_reading",
    )

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        # The row is made by a migration; a flushed database gets it back here.
        row, _created = SiteSettings.objects.get_or_create(pk=1)
        return redirect("admin:conversations_sitesettings_change", row.pk)


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Invitations for sign-up by invitation: each a random code, used once."""

    list_display = ("note", "state", "signup_link", "expires_at", "created_by", "used_by")
    list_select_related = ("created_by", "used_by")
    search_fields = ("note", "code", "used_by__username")
    EDITABLE = ("note", "expires_at")
    SHOWN = ("signup_link", "code", *EDITABLE, "created_by", "created_at", "used_by", "used_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Invitation]:
        # The whole link, from the address this admin was reached at.
        base = request.build_absolute_uri(f"{reverse('signup')}?invite=")
        return (
            super()
            .get_queryset(request)
            .annotate(signup_url=Concat(Value(base), "code", output_field=CharField()))
        )

    def get_fields(self, request: HttpRequest, obj=None):
        return self.EDITABLE if obj is None else self.SHOWN

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return () if obj is None else [f for f in self.SHOWN if f not in self.EDITABLE]

    @admin.display(description=_("sign-up link"))
    def signup_link(self, obj: Invitation) -> str:
        url = getattr(obj, "signup_url", "")
        return format_html('<a href="{}">{}</a>', url, url) if url else "-"

    @admin.display(description=_("state"))
    def state(self, obj: Invitation) -> str:
        if obj.used_at is not None:
            return _("used")
        if obj.expires_at is not None and obj.expires_at <= timezone.now():
            return _("expired")
        return _("can be used")

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(PendingAccount)
class PendingAccountAdmin(admin.ModelAdmin):
    """Accounts made while sign-up needs approval. Approve lets them log in; reject
    deletes them (they never had access; the username becomes free again)."""

    list_display = ("user", "requested_at")
    search_fields = ("user__username",)
    date_hierarchy = "requested_at"
    fields = ("user", "requested_at")
    readonly_fields = fields
    actions = ("approve_selected", "reject_selected")

    def get_queryset(self, request: HttpRequest) -> QuerySet[PendingAccount]:
        return selectors.pending_accounts().select_related("user")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.change_pendingaccount")

    def has_reject_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.delete_pendingaccount")

    @admin.action(description=_("Approve selected accounts"), permissions=["approve"])
    def approve_selected(self, request, queryset):
        count = services.accounts_approve(pending=queryset)
        self.message_user(
            request,
            ngettext(
                "Approved %(count)d account: it can log in now.",
                "Approved %(count)d accounts: they can log in now.",
                count,
            )
            % {"count": count},
        )

    @admin.action(description=_("Reject and delete selected accounts"), permissions=["reject"])
    def reject_selected(self, request, queryset):
        count = services.accounts_reject(pending=queryset)
        self.message_user(
            request,
            ngettext("Deleted %(count)d account.", "Deleted %(count)d accounts.", count)
            % {"count": count},
        )


class SuperusersChange:
    """An inline only superusers change; whoever may see the group sees it."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm("auth.view_group") or request.user.has_perm(
            "auth.change_group"
        )


class GroupRetentionInline(SuperusersChange, admin.StackedInline):
    """How long the group's members' chats are kept, instead of the site's setting."""

    model = GroupRetention
    extra = 0
    max_num = 1
    verbose_name_plural = _("retention for the group")


class GroupManagerInline(SuperusersChange, admin.TabularInline):
    """A group's managers: staff with the group permissions see them, superusers choose."""

    model = GroupManager
    extra = 0
    autocomplete_fields = ("user",)
    verbose_name = _("manager")
    verbose_name_plural = _("Managers")


admin.site.unregister(Group)


@admin.register(Group)
class SiteGroupAdmin(GroupAdmin):
    """Django's groups, with their managers and a count of members that leads to them."""

    inlines = (GroupManagerInline, GroupRetentionInline)
    list_display = ("name", "member_count")
    readonly_fields = ("member_count",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Group]:
        return super().get_queryset(request).annotate(member_total=Count("user", distinct=True))

    def get_fields(self, request: HttpRequest, obj=None):
        return ("name", "permissions") if obj is None else ("name", "member_count", "permissions")

    @admin.display(description=_("members"), ordering="member_total")
    def member_count(self, obj: Group) -> str:
        # Django's user list filters by group: the count opens it.
        url = reverse("admin:auth_user_changelist") + f"?groups__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.member_total)
