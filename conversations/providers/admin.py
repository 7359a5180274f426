"""Providers in the admin (superusers only): their address, write-only key and timeouts,
their health (the model list's last read, the last successful call, and the last hour's
error rate and latency from the completions sent to them), the models they list, which
of them are offered and which one new chats start on (on the provider's page, and in the
list of every provider's models). "Refresh now" reads the model list again in the
background: no admin page ever waits on a provider."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Avg, Count, F, OuterRef, Q, QuerySet, Subquery, Window
from django.db.models.functions import CumeDist
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.debug import sensitive_post_parameters

from conversations.shared.admin import SuperusersOnly

from . import catalog, services, tasks
from .forms import (
    ModelAccessForm,
    ProviderForm,
    ProviderModelForm,
    ProviderModelFormSet,
    ProviderModelListFormSet,
)
from .models import ModelAccess, Provider, ProviderModel

logger = logging.getLogger(__name__)

HEALTH_WINDOW = timedelta(hours=1)
# Completion.Status values (the chat's model, which this package may not import).
SUCCEEDED, FAILED = "succeeded", "failed"
REFRESHING = _("Refreshing: the list updates in a few seconds.")


class Superusers(SuperusersOnly):
    """Superusers only, and they may do everything (staff's model permissions count not)."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request)


def refresh_later(provider_ids: Iterable[int]) -> None:
    """Read the providers' model lists in the worker, once this request's writes are in."""
    for provider_id in provider_ids:
        transaction.on_commit(lambda provider_id=provider_id: _enqueue(provider_id))


def _enqueue(provider_id: int) -> None:
    try:
        tasks.provider_refresh.delay(provider_id)
    except Exception:
        logger.warning("Could not enqueue provider %s's refresh: beat's will read it", provider_id)


def _latency_percentile(fraction: float, since) -> Subquery:
    """The provider's successful calls' latency at `fraction` (nearest rank), in SQL."""
    completions = Provider._meta.get_field("completions").related_model
    rows = (
        completions.objects.filter(
            provider=OuterRef("pk"),
            queued_at__gte=since,
            status=SUCCEEDED,
            latency_ms__isnull=False,
        )
        .annotate(rank=Window(CumeDist(), order_by=F("latency_ms").asc()))
        .filter(rank__gte=fraction)
        .order_by("latency_ms")
        .values("latency_ms")[:1]
    )
    return Subquery(rows)


def with_health(providers: QuerySet[Provider]) -> QuerySet[Provider]:
    """The last hour's calls, failures and latency of each provider, in the one query."""
    since = timezone.now() - HEALTH_WINDOW
    recent = Q(completions__queued_at__gte=since)
    return providers.annotate(
        calls_recent=Count(
            "completions", filter=recent & Q(completions__status__in=[SUCCEEDED, FAILED])
        ),
        failures_recent=Count("completions", filter=recent & Q(completions__status=FAILED)),
        latency_average=Avg(
            "completions__latency_ms", filter=recent & Q(completions__status=SUCCEEDED)
        ),
        latency_median=_latency_percentile(0.5, since),
        latency_p95=_latency_percentile(0.95, since),
    )


def _when(moment) -> str:
    moment = timezone.localtime(moment)
    return format_html(
        '<time datetime="{}">{}</time>',
        moment.isoformat(),
        date_format(moment, "SHORT_DATETIME_FORMAT"),
    )


class ProviderModelInline(Superusers, admin.TabularInline):
    model = ProviderModel
    form = ProviderModelForm
    formset = ProviderModelFormSet
    fields = ("model_id", "display_name", "enabled", "is_default", "listed", "last_seen_at")
    readonly_fields = ("listed", "last_seen_at")
    extra = 0
    verbose_name_plural = _("models (a refresh adds the ones it lists; add one by hand here)")


def _save_model_rows(formset) -> None:
    """Save a formset of models through the services, and note what changed for the
    admin's history as `formset.save()` would."""
    formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
    for row in formset.forms:
        if row.cleaned_data.get("DELETE") and row.instance.pk:
            services.provider_model_delete(provider_model=row.instance)
            formset.deleted_objects.append(row.instance)
    rows = [
        row for row in formset.forms if row.has_changed() and not row.cleaned_data.get("DELETE")
    ]
    # The default last: saving it clears the one before, which may be among these rows.
    rows.sort(key=lambda row: bool(row.cleaned_data.get("is_default")))
    for row in rows:
        new = row.instance.pk is None
        services.provider_model_save(
            provider_model=row.instance, is_default=bool(row.cleaned_data.get("is_default"))
        )
        if new:
            formset.new_objects.append(row.instance)
        else:
            formset.changed_objects.append((row.instance, row.changed_data))


@admin.register(Provider)
class ProviderAdmin(Superusers, admin.ModelAdmin):
    form = ProviderForm
    inlines = (ProviderModelInline,)
    list_display = (
        "name",
        "base_url",
        "enabled",
        "model_list",
        "last_success_at",
        "errors_recent",
        "latency_recent",
    )
    list_filter = ("enabled",)
    search_fields = ("name", "base_url")
    actions = ("refresh_selected",)
    HEALTH = ("model_list", "last_success_at", "errors_recent", "latency_recent")
    # More rows than this post more fields than Django takes (DATA_UPLOAD_MAX_NUMBER_FIELDS):
    # such a provider's models are edited in the list of models instead.
    INLINE_MOST = 150

    def get_fieldsets(self, request: HttpRequest, obj=None):
        key = ["api_key", "clear_api_key"] if obj is not None and obj.has_api_key else ["api_key"]
        main = ["name", "base_url", "api_key_state", *key, "connect_timeout", "read_timeout"]
        fieldsets = [(None, {"fields": [*main, "enabled"]})]
        if obj is not None:
            fieldsets.append((_("Health"), {"fields": [*self.HEALTH, "models_link"]}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return ("api_key_state", *self.HEALTH, "models_link")

    def get_inlines(self, request: HttpRequest, obj=None):
        if obj is not None and obj.models.count() > self.INLINE_MOST:
            return ()
        return self.inlines

    def get_queryset(self, request: HttpRequest) -> QuerySet[Provider]:
        return with_health(super().get_queryset(request))

    @method_decorator(sensitive_post_parameters("api_key"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # The key is kept out of error reports of this page's POSTs too.
        return super().changeform_view(request, object_id, form_url, extra_context)

    # Columns

    @admin.display(description=_("saved key"))
    def api_key_state(self, obj: Provider | None) -> str:
        if obj is not None and obj.has_api_key:
            return _("A key is saved (never shown).")
        return _("No key saved.")

    @admin.display(description=_("model list last read"), ordering="models_checked_at")
    def model_list(self, obj: Provider) -> str:
        if obj.models_checked_at is None:
            return _("not read yet")
        if not obj.models_error:
            return _when(obj.models_checked_at)
        return format_html(
            '{}<br><span class="errornote" title="{}">{}</span>',
            _when(obj.models_checked_at),
            obj.models_error,
            _("failed: %(error)s") % {"error": Truncator(obj.models_error).chars(120)},
        )

    @admin.display(description=_("errors, last hour"), ordering="failures_recent")
    def errors_recent(self, obj: Provider) -> str:
        calls = getattr(obj, "calls_recent", 0)
        if not calls:
            return _("no calls")
        failed = obj.failures_recent
        return _("%(failed)d of %(calls)d failed (%(rate)d%%)") % {
            "failed": failed,
            "calls": calls,
            "rate": round(100 * failed / calls),
        }

    @admin.display(
        description=_("latency, last hour (average / median / p95)"), ordering="latency_average"
    )
    def latency_recent(self, obj: Provider) -> str:
        if getattr(obj, "latency_average", None) is None:
            return "-"
        return _("%(average)d / %(median)d / %(p95)d ms") % {
            "average": round(obj.latency_average),
            "median": obj.latency_median,
            "p95": obj.latency_p95,
        }

    @admin.display(description=_("models"))
    def models_link(self, obj: Provider) -> str:
        counts = obj.models.aggregate(
            listed=Count("pk"), offered=Count("pk", filter=Q(enabled=True))
        )
        url = (
            reverse("admin:conversations_providermodel_changelist")
            + f"?provider__id__exact={obj.pk}"
        )
        text = ngettext(
            "%(count)d model, %(offered)d offered: all in one list",
            "%(count)d models, %(offered)d offered: all in one list",
            counts["listed"],
        ) % {"count": counts["listed"], "offered": counts["offered"]}
        return format_html('<a href="{}">{}</a>', url, text)

    # Writes, through the services

    def save_model(self, request: HttpRequest, obj: Provider, form, change: bool) -> None:
        services.provider_save(
            provider=obj,
            api_key=form.cleaned_data.get("api_key", ""),
            clear_api_key=form.cleaned_data.get("clear_api_key", False),
        )
        # A new provider, a new address or key: its model list is read again at once.
        moved = {"base_url", "api_key", "clear_api_key", "enabled"} & set(form.changed_data)
        if "_refresh" in request.POST or not change or (moved and obj.enabled):
            refresh_later([obj.pk])
            self.message_user(request, REFRESHING)

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        for row in formset.forms:
            row.instance.provider = formset.instance  # a new row on a new provider's page
        _save_model_rows(formset)

    def response_change(self, request: HttpRequest, obj: Provider):
        if "_refresh" in request.POST:
            return HttpResponseRedirect(request.path)  # saved, and its refresh queued
        return super().response_change(request, obj)

    def delete_model(self, request: HttpRequest, obj: Provider) -> None:
        services.provider_delete(provider=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        for provider in Provider.objects.filter(pk__in=list(queryset.values_list("pk", flat=True))):
            services.provider_delete(provider=provider)

    @admin.action(description=_("Refresh model lists"))
    def refresh_selected(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        refresh_later(queryset.values_list("pk", flat=True))
        self.message_user(request, REFRESHING, messages.SUCCESS)


@admin.register(ProviderModel)
class ProviderModelAdmin(Superusers, admin.ModelAdmin):
    """Every provider's models in one list, edited in place: a provider listing hundreds
    of them has too many for a table on its own page. Added by hand on the provider's page."""

    form = ProviderModelForm
    list_display = (
        "model_id",
        "provider",
        "display_name",
        "enabled",
        "is_default",
        "listed",
        "last_seen_at",
    )
    list_editable = ("display_name", "enabled", "is_default")
    list_filter = ("provider", "enabled", "is_default", "listed")
    list_select_related = ("provider",)
    search_fields = ("model_id", "display_name", "provider__name")
    list_per_page = 100
    fields = (
        "provider",
        "model_id",
        "display_name",
        "enabled",
        "is_default",
        "listed",
        "first_seen_at",
        "last_seen_at",
    )
    readonly_fields = ("provider", "model_id", "listed", "first_seen_at", "last_seen_at")

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_changelist_form(self, request: HttpRequest, **kwargs):
        return super().get_changelist_form(request, form=ProviderModelForm, **kwargs)

    def get_changelist_formset(self, request: HttpRequest, **kwargs):
        return super().get_changelist_formset(request, formset=ProviderModelListFormSet, **kwargs)

    def save_model(self, request: HttpRequest, obj: ProviderModel, form, change: bool) -> None:
        services.provider_model_save(provider_model=obj, is_default=obj.is_default)

    def delete_model(self, request: HttpRequest, obj: ProviderModel) -> None:
        services.provider_model_delete(provider_model=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ProviderModel]) -> None:
        for provider_model in queryset:
            services.provider_model_delete(provider_model=provider_model)


@admin.register(ModelAccess)
class ModelAccessAdmin(Superusers, admin.ModelAdmin):
    """Which groups may use which models: a rule lists models and the groups kept them."""

    form = ModelAccessForm
    list_display = ("name", "models_shown", "groups_shown")
    filter_horizontal = ("groups",)
    search_fields = ("name",)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description=_("models"))
    def models_shown(self, rule: ModelAccess) -> str:
        labels = {offer.key: offer.label for offer in catalog.offers()}
        return ", ".join(labels.get(key, key) for key in rule.model_keys)

    @admin.display(description=_("groups"))
    def groups_shown(self, rule: ModelAccess) -> str:
        return ", ".join(group.name for group in rule.groups.all())

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        # The groups are saved after the rule: the model lists change only now.
        catalog.forget()

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        catalog.forget()

    def delete_queryset(self, request, queryset) -> None:
        super().delete_queryset(request, queryset)
        catalog.forget()
