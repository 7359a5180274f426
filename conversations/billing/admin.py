"""Prices, per-user budgets and pooled group budgets in the admin."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.db.models import (
    DecimalField,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
)
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from . import budgets
from .models import BudgetPeriod, GroupBudget, GroupBudgetPeriod, ModelPrice, UserBudget


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = (
        "model",
        "provider_shown",
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
    list_filter = ("model", "provider", "currency")
    list_select_related = ("provider",)
    search_fields = ("model",)

    @admin.display(description=_("provider"), ordering="provider__name")
    def provider_shown(self, price: ModelPrice) -> str:
        # No provider: the environment's own (OPENAI_BASE_URL).
        return price.provider.name if price.provider else settings.DEFAULT_PROVIDER_NAME


class ThisMonthMixin:
    """The list shows this month's use from the owner's period row (one subquery each)."""

    period_model: type[BudgetPeriod] | type[GroupBudgetPeriod]
    owner: str  # the field both the budget and its period key on

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        period = self.period_model.objects.filter(
            **{self.owner: OuterRef(self.owner)}, month=budgets.month_of(timezone.now())
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
    def tokens_this_month(self, obj) -> int:
        return obj.used_tokens or 0

    @admin.display(description=_("cost this month"), ordering="used_cost")
    def cost_this_month(self, obj):
        return obj.used_cost


@admin.register(UserBudget)
class UserBudgetAdmin(ThisMonthMixin, admin.ModelAdmin):
    period_model = BudgetPeriod
    owner = "user"
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


@admin.register(GroupBudget)
class GroupBudgetAdmin(ThisMonthMixin, admin.ModelAdmin):
    """A group's monthly limit, pooled across its members (beside each one's own limit)."""

    period_model = GroupBudgetPeriod
    owner = "group"
    list_display = (
        "group",
        "monthly_token_limit",
        "monthly_cost_limit",
        "tokens_this_month",
        "cost_this_month",
    )
    list_select_related = ("group",)
    search_fields = ("group__name",)
    autocomplete_fields = ("group",)

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            budgets.group_period_start(obj.group_id)
