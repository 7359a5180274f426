"""Staff review in the admin: conversations (read-only chat content, flags and notes,
exports), their messages and completions, and the audit trail of who read what.

What users and the model said is never editable here; reviewers may only flag and note.
What staff may read at all is the site's policy (`policy.py`): a page showing content it
forbids answers 403, to superusers too, and lists show numbers instead of titles.
The queries, writes and exports live in `selectors.py`, `services.py` and `exports.py`.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator, capfirst
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from conversations.chat import reading as policy
from conversations.chat.models import Completion, Conversation, Message
from conversations.chat.reading_admin import ReadingPolicyMixin
from conversations.chat.services import conversations as chat_services
from conversations.shared.admin import SuperusersOnly, download, pretty_json

from . import exports, selectors, services
from .models import AuditEvent

CONTENT_FIELDS = (
    "owner",
    "title",
    *chat_services.PARAMETER_FIELDS,
    "created_at",
    "last_activity_at",
)


class AuditedReadMixin:
    """Every rendering of a page that shows chat content leaves an audit record."""

    def audited_conversation_id(self, obj) -> int:
        return obj.conversation_id

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if isinstance(obj, Completion) and obj.conversation_id is None:
            # An API call: its request and reply are on its own row.
            services.audit_record(
                actor=request.user, action=AuditEvent.Action.VIEW_API_CALL, completion_ids=[obj.pk]
            )
        elif obj is not None:
            services.audit_record(
                actor=request.user,
                action=AuditEvent.Action.VIEW_TRANSCRIPT,
                conversation_ids=[self.audited_conversation_id(obj)],
            )
        return super().render_change_form(request, context, add, change, form_url, obj)


class ChatContentAdmin(ReadingPolicyMixin, AuditedReadMixin, admin.ModelAdmin):
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
            return selectors.with_failed_completions(queryset, self.value() == "yes")
        return queryset


def _when(moment) -> str:
    """A short date and time for a list column (the full one on hover)."""
    moment = timezone.localtime(moment)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        moment.isoformat(),
        date_format(moment, "DATETIME_FORMAT"),
        date_format(moment, "SHORT_DATETIME_FORMAT"),
    )


class ConversationChangeList(ChangeList):
    def get_ordering_field(self, field_name):
        # Sorting by titles staff may not read would tell them something of each.
        if field_name == "display_title" and not policy.reads_all():
            return None
        return super().get_ordering_field(field_name)


@admin.register(Conversation)
class ConversationAdmin(ReadingPolicyMixin, AuditedReadMixin, admin.ModelAdmin):
    list_display = (
        "display_title",
        "owner",
        "model",
        "message_count",
        "tokens",
        "cost",
        # When it started is in the filters and on its page: the list has room for when
        # it was last used, and for the flag, at a laptop's width.
        "last_activity",
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
    # Shown for the search box; the search itself is selectors.conversations_search.
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
                "fields": tuple(f for f in chat_services.PARAMETER_FIELDS if f != "model"),
            },
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return selectors.conversations_with_totals(super().get_queryset(request)).annotate(
            staff_may_read=policy.may_read_column()
        )

    def may_read(self, obj: Conversation) -> bool:
        return policy.may_read(obj)

    def get_changelist(self, request, **kwargs):
        return ConversationChangeList

    def get_sortable_by(self, request):
        sortable = super().get_sortable_by(request)
        if policy.reads_all():
            return sortable
        return [name for name in sortable if name != "display_title"]

    def get_search_results(self, request, queryset, search_term):
        if request.path == reverse("admin:autocomplete"):
            # A form's conversation picker names each one by its title.
            queryset = policy.readable(queryset)
        if not search_term:
            return queryset, False
        found = selectors.conversations_search(
            queryset, search_term, readable=policy.readable_filter()
        )
        return found, False

    def search_help(self) -> str:
        reading = policy.staff_reading()
        if reading == policy.StaffReading.NONE:
            return _("Finds owners by username: staff may not read titles or messages here.")
        if reading == policy.StaffReading.FLAGGED:
            return _(
                "Finds every word in usernames, and in the titles or message text of flagged "
                'conversations only; put a phrase in quotes to find it whole, e.g. "exact phrase".'
            )
        return self.search_help_text

    # Permissions: content is read-only for everyone; reviewers change flag and note only.

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm(selectors.REVIEW_PERMISSION)

    def has_review_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(selectors.REVIEW_PERMISSION)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser

    # Columns

    def row_name(self, obj: Conversation) -> str:
        return self.display_title(obj)

    @admin.display(description=_("title"), ordering="title")
    def display_title(self, obj: Conversation) -> str:
        if obj.staff_may_read:
            return selectors.conversation_title(obj)
        return policy.hidden_title(obj.pk)

    @admin.display(description=_("messages"), ordering="message_count")
    def message_count(self, obj: Conversation) -> int:
        return obj.message_count

    @admin.display(description=_("tokens"), ordering="total_tokens")
    def tokens(self, obj: Conversation) -> int:
        return obj.total_tokens

    @admin.display(description=_("cost"), ordering="total_cost")
    def cost(self, obj: Conversation) -> str:
        return selectors.cost_label(obj)

    @admin.display(description=_("last activity"), ordering="last_activity_at")
    def last_activity(self, obj: Conversation) -> str:
        return _when(obj.last_activity_at)

    class Media:
        css = {"all": ("css/admin-lists.css",)}

    # Pages

    def audited_conversation_id(self, obj: Conversation) -> int:
        return obj.pk

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["title"] = _("Review conversation")
            context["transcript"] = selectors.transcript(obj)
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
        services.conversation_review(
            conversation=obj,
            reviewer=request.user,
            flagged=form.cleaned_data["flagged"],
            note=form.cleaned_data["review_note"],
        )

    def delete_model(self, request, obj):
        chat_services.conversation_delete(conversation=obj)

    def delete_queryset(self, request, queryset):
        for conversation in queryset:
            chat_services.conversation_delete(conversation=conversation)

    # Actions

    @admin.action(description=_("Flag selected conversations"), permissions=["review"])
    def flag_selected(self, request, queryset):
        count = services.conversations_flag(
            conversations=queryset, reviewer=request.user, flagged=True
        )
        self.message_user(
            request,
            ngettext("Flagged %(count)d conversation.", "Flagged %(count)d conversations.", count)
            % {"count": count},
        )

    @admin.action(description=_("Remove flag from selected conversations"), permissions=["review"])
    def unflag_selected(self, request, queryset):
        count = services.conversations_flag(
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

    def _exportable(self, request, queryset) -> QuerySet[Conversation] | None:
        """The selection to export, or None (the list says why) when staff may not read
        some of it.

        A selection holding conversations staff may not read is refused whole, not
        exported in part: a download shows no message beside it (one would appear on a
        later page, out of context), and a partial file is easily taken for the whole."""
        selected = Conversation.objects.filter(pk__in=queryset.values("pk"))
        if policy.staff_reading() == policy.StaffReading.NONE:
            self.message_user(
                request,
                _("Staff may not read conversations on this site: nothing was exported."),
                messages.ERROR,
            )
            return None
        left_out = policy.unreadable(selected).count()
        if left_out:
            self.message_user(
                request,
                ngettext(
                    "Nothing was exported: %(count)d of the selected conversations is not "
                    "flagged, and staff may read only flagged conversations. Select flagged "
                    "ones only (the Flagged filter) and export again.",
                    "Nothing was exported: %(count)d of the selected conversations are not "
                    "flagged, and staff may read only flagged conversations. Select flagged "
                    "ones only (the Flagged filter) and export again.",
                    left_out,
                )
                % {"count": left_out},
                messages.ERROR,
            )
            return None
        return selected

    @admin.action(description=_("Export selected as JSON"), permissions=["view"])
    def export_json(self, request, queryset):
        selected = self._exportable(request, queryset)
        if selected is None:
            return None
        body = exports.export_json(conversations=selected, actor=request.user)
        return download(body, content_type="application/json", extension="json")

    @admin.action(description=_("Export selected as Markdown"), permissions=["view"])
    def export_markdown(self, request, queryset):
        selected = self._exportable(request, queryset)
        if selected is None:
            return None
        body = exports.export_markdown(conversations=selected, actor=request.user)
        return download(body, content_type="text/markdown", extension="md")

    @admin.action(description=_("Export selected as CSV"), permissions=["view"])
    def export_csv(self, request, queryset):
        selected = self._exportable(request, queryset)
        if selected is None:
            return None
        body = exports.export_csv(conversations=selected, actor=request.user)
        return download(body, content_type="text/csv", extension="csv")


@admin.register(Message)
class MessageAdmin(ChatContentAdmin):
    list_display = (
        "id",
        "conversation_shown",
        "role",
        "position",
        "choice_number",
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
        "choice_number",
        "finish_reason",
        "is_selected",
        "created_at",
        "rendered_content",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return (
            super()
            .get_queryset(request)
            .annotate(staff_may_read=policy.may_read_column("conversation__"))
        )

    def may_read(self, obj: Message) -> bool:
        return policy.may_read(obj.conversation)

    def row_name(self, obj: Message) -> str:
        # Its str() starts with its words, which the list never shows.
        return f"{capfirst(obj._meta.verbose_name)} #{obj.pk}"

    @admin.display(description=_("conversation"), ordering="conversation")
    def conversation_shown(self, obj: Message) -> str:
        if obj.staff_may_read:
            return selectors.conversation_title(obj.conversation)
        return policy.hidden_title(obj.conversation_id)

    @admin.display(description=_("choice"), ordering="choice_index")
    def choice_number(self, obj: Message) -> int | None:
        # From 1, as the chat numbers them; the API's (and the exports') index is from 0.
        return None if obj.choice_index is None else obj.choice_index + 1

    @admin.display(description=_("content"))
    def rendered_content(self, obj: Message) -> str:
        return format_html('<div class="message-content">{}</div>', selectors.message_html(obj))


@admin.register(Completion)
class CompletionAdmin(ChatContentAdmin):
    list_display = (
        "id",
        "status",
        "purpose",
        "source",
        "user",
        "model",
        "provider_name",
        "total_tokens",
        "latency_ms",
        "attempts",
        "short_error",
        "queued_at",
    )
    list_filter = (
        "status",
        "purpose",
        "source",
        "model",
        "provider_name",
        "queued_at",
        ("user", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("user",)
    search_fields = (
        "=id", "response_id", "=request_id", "user__username", "error_message", "api_key__name",
    )  # fmt: skip
    search_help_text = _(
        "Completion number, response id, request id, username, error text, API key name, "
        "or words of an API call's request or reply."
    )
    ordering = ("-queued_at",)
    fieldsets = (
        (
            _("Call"),
            {
                "fields": (
                    "conversation",
                    "source",
                    "api_key",
                    "user",
                    "request_message",
                    "model",
                    "provider_name",
                    "purpose",
                    "status",
                    "attempts",
                    "http_status",
                    "error_type",
                    "error_message",
                    "request_id",
                )
            },
        ),
        (_("Request"), {"fields": ("api_exchange", "request_parameters", "request_json")}),
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
    readonly_fields = ("api_exchange", "request_parameters", "request_json")

    def may_read(self, obj: Completion) -> bool:
        return policy.may_read_completion(obj)

    def search_help(self) -> str:
        if policy.reads_all():
            return self.search_help_text
        return _(
            "Completion number, response id, request id, username, error text or API key name."
        )

    def get_search_results(self, request, queryset, search_term):
        found, duplicates = super().get_search_results(request, queryset, search_term)
        # Staff may read an API call only while they may read everything (policy.py).
        if search_term.strip() and policy.reads_all():
            # API calls keep their words on their own row (a chat's are in its messages,
            # searched from the conversation list).
            api = queryset.filter(source=Completion.Source.API)
            words = api.filter(request_body__icontains=search_term) | api.filter(
                choices__icontains=search_term
            )
            found = found | words
        return found, duplicates

    @admin.display(description=_("API call"))
    def api_exchange(self, obj: Completion) -> str:
        """An API call's messages and reply, as text (a chat's are in its transcript)."""
        if obj.source != Completion.Source.API:
            return "-"
        said = [
            (message.get("role", ""), message.get("content", ""))
            for message in obj.request_body.get("messages", [])
        ] + [
            (_("reply %(number)d") % {"number": choice.get("index", 0) + 1},
             (choice.get("message") or {}).get("content", ""))
            for choice in obj.choices
        ]  # fmt: skip
        return format_html_join(
            "", '<p><strong>{}</strong></p><pre class="api-said">{}</pre>', said
        )

    @admin.display(description=_("error"), ordering="error_message")
    def short_error(self, obj: Completion) -> str:
        return Truncator(obj.error_message).chars(80)

    @admin.display(description=_("parameters sent"))
    def request_parameters(self, obj: Completion) -> str:
        return format_html("<pre>{}</pre>", selectors.Reply(position=0, completion=obj).parameters)

    @admin.display(description=_("request as sent"))
    def request_json(self, obj: Completion) -> str:
        return pretty_json(obj.request_body)


@admin.register(AuditEvent)
class AuditEventAdmin(SuperusersOnly, admin.ModelAdmin):
    """Who opened or exported whose conversations: superusers only, never editable."""

    list_display = ("created_at", "actor", "action", "conversation_links", "api_call_links")
    list_filter = ("action", "created_at", ("actor", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("actor",)
    search_fields = ("actor__username",)
    search_help_text = _(
        "Staff username, or a conversation (or API call) number to see who opened or exported it."
    )
    date_hierarchy = "created_at"
    fields = ("created_at", "actor", "action", "conversation_links", "api_call_links", "details")
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        if not search_term:
            return queryset, False
        return selectors.audit_events_search(queryset, search_term), False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description=_("conversations"))
    def conversation_links(self, obj: AuditEvent) -> str:
        return _links("admin:conversations_conversation_change", obj.conversation_ids)

    @admin.display(description=_("API calls"))
    def api_call_links(self, obj: AuditEvent) -> str:
        return _links("admin:conversations_completion_change", obj.completion_ids)


def _links(viewname: str, ids: list[int]) -> str:
    return format_html_join(
        ", ", '<a href="{}">#{}</a>', ((reverse(viewname, args=[pk]), pk) for pk in ids)
    )
