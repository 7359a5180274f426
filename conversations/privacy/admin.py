"""Accounts in the admin as Django's own user pages, but deleted as a person deletes their
own (privacy.services.account_delete: their usage stays in the reports, the deletion is
audited), and with a download of everything of a person for superusers, audited too."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.admin.options import csrf_protect_m
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from conversations.accounts.models import SingleSignOnIdentity
from conversations.chat import reading as policy
from conversations.chat.models import Conversation, Message
from conversations.review.models import AuditEvent
from conversations.review.services import audit_record

from . import exports, selectors, services

User = get_user_model()

admin.site.unregister(User)


class IdentityInline(admin.TabularInline):
    """The account's identities at the OpenID provider, as its log-ins recorded them
    (read-only: the provider is the source; deleting the account deletes them)."""

    model = SingleSignOnIdentity
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "issuer",
        "subject",
        "email",
        "groups",
        "created_at",
        "last_login_at",
    )
    verbose_name = _("single sign-on identity")
    verbose_name_plural = _("single sign-on identities")

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(User)
class AccountAdmin(UserAdmin):
    change_form_template = "privacy/admin/user_change_form.html"
    inlines = (IdentityInline,)

    # --- Deletion: through account_delete, never the ORM's cascade ---

    @csrf_protect_m
    def delete_view(self, request, object_id, extra_context=None):
        # Django's runs in one transaction; account_delete commits batch by batch, so a
        # large account never holds its rows (or the database) locked all at once.
        return self._delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj) -> None:
        services.account_delete(user=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        # The "Delete selected" action too.
        for user in queryset:
            services.account_delete(user=user, actor=request.user)

    def get_deleted_objects(self, objs, request: HttpRequest):
        # Numbers instead of every row by name (message texts, titles: thousands of them).
        users = list(objs)
        counts = selectors.deletion_counts([user.pk for user in users])
        model_count = {
            str(capfirst(Conversation._meta.verbose_name_plural)): counts["conversations"],
            str(capfirst(Message._meta.verbose_name_plural)): counts["messages"],
            str(_("API calls")): counts["api_calls"],
        }
        allowed = self.has_delete_permission(request)
        perms_needed = set() if allowed else {str(self.opts.verbose_name)}
        return [str(user) for user in users], model_count, perms_needed, []

    def log_deletions(self, request: HttpRequest, queryset):
        # The admin's log keeps no name of a deleted account (the audit trail has its id).
        content_type = ContentType.objects.get_for_model(self.model)
        return LogEntry.objects.bulk_create(
            [
                LogEntry(
                    user_id=request.user.pk,
                    content_type=content_type,
                    object_id=str(user.pk),
                    object_repr=f"#{user.pk}",
                    action_flag=DELETION,
                )
                for user in queryset
            ]
        )

    # --- A person's data, downloaded by a superuser ---

    def may_download(self, request: HttpRequest) -> bool:
        # Their conversations are in it: only while staff may read every conversation.
        return request.user.is_active and request.user.is_superuser and policy.reads_all()

    def get_urls(self):
        download = path(
            "<id>/download/",
            self.admin_site.admin_view(self.download_view),
            name="auth_user_download",
        )
        return [download, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        if self.may_download(request):
            extra_context["download_url"] = reverse("admin:auth_user_download", args=[object_id])
        return super().change_view(request, object_id, form_url, extra_context)

    def download_view(self, request: HttpRequest, id: str) -> HttpResponse:
        if not self.may_download(request):
            raise PermissionDenied
        user = self.get_object(request, unquote(id))
        if user is None:
            raise Http404
        ids = selectors.conversation_ids(user.pk)
        audit_record(
            actor=request.user,
            action=AuditEvent.Action.EXPORT_ACCOUNT,
            conversation_ids=ids,
            details={"user_id": user.pk, "conversations": len(ids)},
        )
        return exports.zip_response(user)
