"""Model prices (with their history), monthly budgets per user, and each month's totals."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ModelPrice(models.Model):
    """A model's price from `valid_from` on; the newest row not in the future applies."""

    model = models.CharField(_("model"), max_length=100)
    # Prices key on provider and model; None is the environment's own provider.
    provider = models.ForeignKey(
        "conversations.Provider",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="prices",
        verbose_name=_("provider"),
    )
    prompt_price_per_million = models.DecimalField(
        _("price per 1M prompt tokens"), max_digits=12, decimal_places=6
    )
    completion_price_per_million = models.DecimalField(
        _("price per 1M completion tokens"), max_digits=12, decimal_places=6
    )
    currency = models.CharField(_("currency"), max_length=3, default="USD")
    valid_from = models.DateTimeField(_("valid from"), default=timezone.now)

    class Meta:
        verbose_name = _("model price")
        verbose_name_plural = _("model prices")
        ordering = ["model", "-valid_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model", "valid_from"], name="price_provider_model_from"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} ({self.currency}, {self.valid_from:%Y-%m-%d})"


class UserBudget(models.Model):
    """A user's monthly limit, overriding the site default (blank = use the default)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="budget"
    )
    monthly_token_limit = models.PositiveBigIntegerField(
        _("monthly token limit"), null=True, blank=True
    )
    monthly_cost_limit = models.DecimalField(
        _("monthly cost limit"), max_digits=14, decimal_places=4, null=True, blank=True
    )
    unlimited = models.BooleanField(
        _("unlimited"), default=False, help_text=_("Ignore the site default for this user.")
    )

    class Meta:
        verbose_name = _("budget")
        verbose_name_plural = _("budgets")

    def __str__(self) -> str:
        return str(self.user)


class PeriodTotals(models.Model):
    """A month's used and reserved totals (a user's, or a group's pooled ones)."""

    reserved_tokens = models.BigIntegerField(default=0)
    used_tokens = models.BigIntegerField(default=0)
    reserved_cost = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    used_cost = models.DecimalField(max_digits=18, decimal_places=8, default=0)

    class Meta:
        abstract = True


class BudgetPeriod(PeriodTotals):
    """Running totals for one user and month; the row is locked while reserving."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="budget_periods"
    )
    month = models.DateField()  # first day of the month

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "month"], name="budget_period_user_month"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.month:%Y-%m}"


class GroupBudget(models.Model):
    """A monthly limit for a group as a whole, pooled across its members, beside each
    member's own limit: a call must fit both (blank = no limit of that kind)."""

    group = models.OneToOneField(
        "auth.Group", on_delete=models.CASCADE, related_name="budget", verbose_name=_("group")
    )
    monthly_token_limit = models.PositiveBigIntegerField(
        _("monthly token limit"), null=True, blank=True
    )
    monthly_cost_limit = models.DecimalField(
        _("monthly cost limit"), max_digits=14, decimal_places=4, null=True, blank=True
    )

    class Meta:
        verbose_name = _("group budget")
        verbose_name_plural = _("group budgets")

    def __str__(self) -> str:
        return str(self.group)


class GroupBudgetPeriod(PeriodTotals):
    """Running totals for one group and month, pooled across members; locked while
    reserving, after the member's own period row (locks are taken in group id order)."""

    group = models.ForeignKey("auth.Group", on_delete=models.CASCADE, related_name="budget_periods")
    month = models.DateField()  # first day of the month

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "month"], name="group_period_group_month"),
        ]

    def __str__(self) -> str:
        return f"{self.group} {self.month:%Y-%m}"


class UsageDay(models.Model):
    """What calls used on one day (site time zone), kept after their rows are gone: a
    deleted conversation, a retention purge or a deleted account folds its calls in here,
    so reports and their CSV give the same totals before and after. `user` is None for
    the usage of deleted accounts (anonymous: no username survives)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="usage_days",
    )
    day = models.DateField(_("day"))
    model = models.CharField(_("model asked for"), max_length=100)
    provider_name = models.CharField(_("provider"), max_length=100, blank=True, default="")
    source = models.CharField(_("source"), max_length=8)
    # Blank when none of the calls had a price.
    currency = models.CharField(_("currency"), max_length=3, blank=True)
    requests = models.PositiveBigIntegerField(default=0)
    failed = models.PositiveBigIntegerField(default=0)
    title_calls = models.PositiveBigIntegerField(default=0)
    unpriced = models.PositiveBigIntegerField(default=0)
    estimated = models.PositiveBigIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    # None when no call of the row was priced ("no price", never a silent 0).
    cost = models.DecimalField(max_digits=20, decimal_places=8, null=True, blank=True)

    class Meta:
        verbose_name = _("usage of removed calls")
        verbose_name_plural = _("usage of removed calls")
        indexes = [
            models.Index(fields=["day"], name="usage_day_day"),
            models.Index(fields=["user", "day"], name="usage_day_user_day"),
        ]
        # A user's day, model, source and currency is one row (anonymous rows are merged
        # by the code that writes them: NULLs never clash in a unique index).
        constraints = [
            models.UniqueConstraint(
                fields=["user", "day", "model", "provider_name", "source", "currency"],
                name="usage_day_one_row",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user or '-'} {self.day} {self.model}"
