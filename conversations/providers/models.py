"""Providers added in the admin and the models each one offers. The environment's own
provider (OPENAI_BASE_URL / OPENAI_API_KEY, or the simulator) is no row: it is what
`provider = None` means everywhere, with the models of CHAT_MODELS."""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from . import secrets
from .validators import validate_base_url


class Provider(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)
    # Not a URLField: its validator refuses hosts without a dot (http://vllm:8000/v1).
    base_url = models.CharField(
        _("base URL"),
        max_length=500,
        validators=[validate_base_url],
        help_text=_("The address its API starts at, e.g. http://vllm:8000/v1"),
    )
    # Fernet token (providers.secrets): the key itself is never shown again once saved.
    api_key_encrypted = models.TextField(blank=True, editable=False)
    connect_timeout = models.FloatField(_("connect timeout (s)"), default=5.0)
    read_timeout = models.FloatField(_("read timeout (s)"), default=120.0)
    enabled = models.BooleanField(_("enabled"), default=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)

    # Health, written by the model list's refresh and by the worker's calls.
    models_checked_at = models.DateTimeField(_("models last read"), null=True, blank=True)
    models_ok_at = models.DateTimeField(_("models last read successfully"), null=True, blank=True)
    models_error = models.TextField(_("last error reading models"), blank=True)
    last_success_at = models.DateTimeField(_("last successful call"), null=True, blank=True)

    class Meta:
        verbose_name = _("provider")
        verbose_name_plural = _("providers")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def api_key(self) -> str:
        return secrets.decrypt(self.api_key_encrypted)

    @api_key.setter
    def api_key(self, value: str) -> None:
        self.api_key_encrypted = secrets.encrypt(value)

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key_encrypted)


class ProviderModel(models.Model):
    """A model a provider listed at `GET {base}/models`, offered once an admin enables it."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    model_id = models.CharField(_("model"), max_length=200)
    display_name = models.CharField(_("display name"), max_length=200, blank=True)
    enabled = models.BooleanField(_("offered"), default=False)
    is_default = models.BooleanField(
        _("default for new chats"),
        default=False,
        help_text=_("New chats start on this model (one for the whole site)."),
    )
    # Whether the provider's last model list had it; a model kept by hand has none.
    listed = models.BooleanField(_("in the last model list"), default=True)
    first_seen_at = models.DateTimeField(_("first seen"), default=timezone.now)
    last_seen_at = models.DateTimeField(_("last seen"), null=True, blank=True)

    class Meta:
        verbose_name = _("provider model")
        verbose_name_plural = _("provider models")
        ordering = ["provider__name", "model_id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model_id"], name="provider_model_one"),
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="provider_model_one_default",
            ),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return self.display_name or self.model_id


class ModelAccess(models.Model):
    """Models kept for some groups: each model listed here may be used only by members of
    the rule's groups (of any rule that lists it). A model no rule lists is for everyone."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    # Offer keys (providers.catalog.Offer.key): "<model>" for the environment's own
    # provider, "<provider id>:<model>" for a provider's.
    model_keys = models.JSONField(_("models"), default=list)
    groups = models.ManyToManyField(
        "auth.Group", related_name="model_access", verbose_name=_("groups"), blank=True
    )

    class Meta:
        verbose_name = _("model access rule")
        verbose_name_plural = _("model access rules")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
