"""Admin: staff review of conversations (read-only chat content, flags and notes, exports,
audit trail), model prices, per-user budgets, and sign-up (the site's sign-up mode,
invitations, accounts waiting for approval).

What users and the model said is never editable here; reviewers may only flag and note.
The queries, writes and exports live in `review.py`.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import (
    CharField,
    DecimalField,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Concat
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import accounts, budgets, review, services
from .forms import AdminLoginForm
from .models import (
    AuditEvent,
    BudgetPeriod,
    Completion,
    Conversation,
    Invitation,
    Message,
    ModelPrice,
    PendingAccount,
    SiteSettings,
    UserBudget,
)

admin.site.site_header = _("chatsite administration")
admin.site.site_title = _("chatsite admin")

CONTENT_FIELDS = ("owner", "title", *services.PARAMETER_FIELDS, "created_at", "last_activity_at")


def _download(body: str, *, content_type: str, extension: str) -> HttpResponse:
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="conversations-{stamp}.{extension}"'
    return response


def _pretty_json(value) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


class AuditedReadMixin:
    """Every rendering of a page that shows chat content leaves an audit record."""

    def audited_conversation_id(self, obj) -> int:
        return obj.conversation_id

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            review.audit_record(
                actor=request.user,
                action=AuditEvent.Action.VIEW_TRANSCRIPT,
                conversation_ids=[self.audited_conversation_id(obj)],
            )
        return super().render_change_form(request, context, add, change, form_url, obj)


class ChatContentAdmin(AuditedReadMixin, admin.ModelAdmin):
    """Messages and completions: readable, never added or changed; superusers may delete."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser


class FailedCompletionsFilter(admin.SimpleListFilter):
    title = _("failed completions")
    parameter_name = "failed"

    def lookups(self, request, model_admin):
        return [("yes", _("Has failed completions")), ("no", _("No failed completions"))]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return review.with_failed_completions(queryset, self.value() == "yes")
        return queryset


@admin.register(Conversation)
class ConversationAdmin(AuditedReadMixin, admin.ModelAdmin):
    list_display = (
        "display_title",
        "owner",
        "model",
        "message_count",
        "tokens",
        "cost",
        "created_at",
        "last_activity_at",
        "flagged",
    )
    list_display_links = ("display_title",)
    list_filter = (
        "flagged",
        FailedCompletionsFilter,
        ("owner", admin.RelatedOnlyFieldListFilter),
        "model",
        "created_at",
        "last_activity_at",
    )
    list_select_related = ("owner",)
    # Shown for the search box; the search itself is review.conversations_search.
    search_fields = ("title", "owner__username", "messages__content")
    search_help_text = _(
        "Finds every word in titles, usernames or message text; "
        'put a phrase in quotes to find it whole, e.g. "exact phrase".'
    )
    ordering = ("-last_activity_at",)
    actions = ("flag_selected", "unflag_selected", "export_json", "export_markdown", "export_csv")
    save_on_top = True
    readonly_fields = (*CONTENT_FIELDS, "flagged_by", "flagged_at")
    fieldsets = (
        (_("Review"), {"fields": ("flagged", "review_note", "flagged_by", "flagged_at")}),
        (
            _("Conversation"),
            {"fields": ("owner", "title", "model", "created_at", "last_activity_at")},
        ),
        (
            _("Parameters"),
            {
                "classes": ("collapse",),
                "fields": tuple(f for f in services.PARAMETER_FIELDS if f != "model"),
            },
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return review.conversations_with_totals(super().get_queryset(request))

    def get_search_results(self, request, queryset, search_term):
        if not search_term:
            return queryset, False
        return review.conversations_search(queryset, search_term), False

    # Permissions: content is read-only for everyone; reviewers change flag and note only.

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm(review.REVIEW_PERMISSION)

    def has_review_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(review.REVIEW_PERMISSION)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser

    # Columns

    @admin.display(description=_("title"), ordering="title")
    def display_title(self, obj: Conversation) -> str:
        return review.conversation_title(obj)

    @admin.display(description=_("messages"), ordering="message_count")
    def message_count(self, obj: Conversation) -> int:
        return obj.message_count

    @admin.display(description=_("tokens"), ordering="total_tokens")
    def tokens(self, obj: Conversation) -> int:
        return obj.total_tokens

    @admin.display(description=_("cost"), ordering="total_cost")
    def cost(self, obj: Conversation) -> str:
        return review.cost_label(obj)

    # Pages

    def audited_conversation_id(self, obj: Conversation) -> int:
        return obj.pk

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["title"] = _("Review conversation")
            context["transcript"] = review.transcript(obj)
            if request.user.is_superuser:
                context["audit_url"] = (
                    reverse("admin:conversations_auditevent_changelist") + f"?q={obj.pk}"
                )
            context["completions_url"] = (
                reverse("admin:conversations_completion_changelist")
                + f"?conversation__id__exact={obj.pk}"
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request, obj, form, change):
        review.conversation_review(
            conversation=obj,
            reviewer=request.user,
            flagged=form.cleaned_data["flagged"],
            note=form.cleaned_data["review_note"],
        )

    def delete_model(self, request, obj):
        services.conversation_delete(conversation=obj)

    def delete_queryset(self, request, queryset):
        for conversation in queryset:
            services.conversation_delete(conversation=conversation)

    # Actions

    @admin.action(description=_("Flag selected conversations"), permissions=["review"])
    def flag_selected(self, request, queryset):
        count = review.conversations_flag(
            conversations=queryset, reviewer=request.user, flagged=True
        )
        self.message_user(
            request,
            ngettext("Flagged %(count)d conversation.", "Flagged %(count)d conversations.", count)
            % {"count": count},
        )

    @admin.action(description=_("Remove flag from selected conversations"), permissions=["review"])
    def unflag_selected(self, request, queryset):
        count = review.conversations_flag(
            conversations=queryset, reviewer=request.user, flagged=False
        )
        self.message_user(
            request,
            ngettext(
                "Removed the flag from %(count)d conversation.",
                "Removed the flag from %(count)d conversations.",
                count,
            )
            % {"count": count},
        )

    @admin.action(description=_("Export selected as JSON"), permissions=["view"])
    def export_json(self, request, queryset):
        body = review.export_json(
            conversations=Conversation.objects.filter(pk__in=queryset.values("pk")),
            actor=request.user,
        )
        return _download(body, content_type="application/json", extension="json")

    @admin.action(description=_("Export selected as Markdown"), permissions=["view"])
    def export_markdown(self, request, queryset):
        body = review.export_markdown(
            conversations=Conversation.objects.filter(pk__in=queryset.values("pk")),
            actor=request.user,
        )
        return _download(body, content_type="text/markdown", extension="md")

    @admin.action(description=_("Export selected as CSV"), permissions=["view"])
    def export_csv(self, request, queryset):
        body = review.export_csv(
            conversations=Conversation.objects.filter(pk__in=queryset.values("pk")),
            actor=request.user,
        )
        return _download(body, content_type="text/csv", extension="csv")


@admin.register(Message)
class MessageAdmin(ChatContentAdmin):
    list_display = (
        "id",
        "conversation",
        "role",
        "position",
        "choice_index",
        "is_selected",
        "status",
        "created_at",
    )
    list_filter = ("role", "status", "created_at")
    list_select_related = ("conversation",)
    # Content is not listed: reading it is an audited visit to the message or transcript.
    search_fields = ("=conversation__id",)
    search_help_text = _("Conversation number.")
    ordering = ("-created_at",)
    fields = (
        "conversation",
        "role",
        "position",
        "status",
        "completion",
        "choice_index",
        "finish_reason",
        "is_selected",
        "created_at",
        "rendered_content",
    )
    readonly_fields = fields

    @admin.display(description=_("content"))
    def rendered_content(self, obj: Message) -> str:
        return format_html('<div class="message-content">{}</div>', review.message_html(obj))


@admin.register(Completion)
class CompletionAdmin(ChatContentAdmin):
    list_display = (
        "id",
        "status",
        "user",
        "model",
        "total_tokens",
        "latency_ms",
        "attempts",
        "short_error",
        "queued_at",
    )
    list_filter = (
        "status",
        "model",
        "queued_at",
        ("user", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("user",)
    search_fields = ("=id", "response_id", "=request_id", "user__username", "error_message")
    search_help_text = _("Completion number, response id, request id, username or error text.")
    ordering = ("-queued_at",)
    fieldsets = (
        (
            _("Call"),
            {
                "fields": (
                    "conversation",
                    "user",
                    "request_message",
                    "model",
                    "status",
                    "attempts",
                    "http_status",
                    "error_type",
                    "error_message",
                    "request_id",
                )
            },
        ),
        (_("Request"), {"fields": ("request_parameters", "request_json")}),
        (
            _("Response"),
            {
                "fields": (
                    "response_id",
                    "response_model",
                    "response_object",
                    "response_created",
                    "choices",
                    "prompt_tokens",
                    "completion_tokens",
                    "total_tokens",
                    "usage_estimated",
                    "latency_ms",
                )
            },
        ),
        (_("Cost"), {"fields": ("price", "cost", "currency")}),
        (_("Timing"), {"fields": ("queued_at", "available_at", "started_at", "finished_at")}),
    )
    readonly_fields = ("request_parameters", "request_json")

    @admin.display(description=_("error"), ordering="error_message")
    def short_error(self, obj: Completion) -> str:
        return Truncator(obj.error_message).chars(80)

    @admin.display(description=_("parameters sent"))
    def request_parameters(self, obj: Completion) -> str:
        return format_html("<pre>{}</pre>", review.Reply(completion=obj).parameters)

    @admin.display(description=_("request as sent"))
    def request_json(self, obj: Completion) -> str:
        return _pretty_json(obj.request_body)


class SuperusersOnly:
    """Pages only superusers see; their rows are never added or deleted here."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(SuperusersOnly, admin.ModelAdmin):
    """Who opened or exported whose conversations: superusers only, never editable."""

    list_display = ("created_at", "actor", "action", "conversation_links")
    list_filter = ("action", "created_at", ("actor", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("actor",)
    search_fields = ("actor__username",)
    search_help_text = _(
        "Staff username, or a conversation number to see who opened or exported it."
    )
    date_hierarchy = "created_at"
    fields = ("created_at", "actor", "action", "conversation_links")
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        if not search_term:
            return queryset, False
        return review.audit_events_search(queryset, search_term), False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description=_("conversations"))
    def conversation_links(self, obj: AuditEvent) -> str:
        return format_html_join(
            ", ",
            '<a href="{}">#{}</a>',
            (
                (reverse("admin:conversations_conversation_change", args=[pk]), pk)
                for pk in obj.conversation_ids
            ),
        )


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = (
        "model",
        "prompt_price_per_million",
        "completion_price_per_million",
        "currency",
        "valid_from",
    )
    list_editable = (
        "prompt_price_per_million",
        "completion_price_per_million",
        "currency",
        "valid_from",
    )
    list_filter = ("model", "currency")
    search_fields = ("model",)


@admin.register(UserBudget)
class UserBudgetAdmin(admin.ModelAdmin):
    list_display = (
        "user",
        "monthly_token_limit",
        "monthly_cost_limit",
        "unlimited",
        "tokens_this_month",
        "cost_this_month",
    )
    list_filter = ("unlimited",)
    list_select_related = ("user",)
    search_fields = ("user__username",)
    autocomplete_fields = ("user",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[UserBudget]:
        period = BudgetPeriod.objects.filter(
            user=OuterRef("user"), month=budgets.month_of(timezone.now())
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                used_tokens=Subquery(period.values("used_tokens"), output_field=IntegerField()),
                used_cost=Subquery(
                    period.values("used_cost"),
                    output_field=DecimalField(max_digits=18, decimal_places=8),
                ),
            )
        )

    @admin.display(description=_("tokens used this month"), ordering="used_tokens")
    def tokens_this_month(self, obj: UserBudget) -> int:
        return obj.used_tokens or 0

    @admin.display(description=_("cost this month"), ordering="used_cost")
    def cost_this_month(self, obj: UserBudget):
        return obj.used_cost


# --- Accounts: sign-up mode, invitations, accounts waiting for approval (accounts.py) ---

# The admin's log-in form counts failed attempts like the site's (limits.py).
admin.site.login_form = AdminLoginForm


@admin.register(SiteSettings)
class SiteSettingsAdmin(SuperusersOnly, admin.ModelAdmin):
    """One row, changed only by superusers; the list goes straight to it."""

    fields = ("signup_mode",)

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
        return accounts.pending_accounts().select_related("user")

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
        count = accounts.accounts_approve(pending=queryset)
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
        count = accounts.accounts_reject(pending=queryset)
        self.message_user(
            request,
            ngettext("Deleted %(count)d account.", "Deleted %(count)d accounts.", count)
            % {"count": count},
        )
