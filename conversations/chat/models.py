"""Conversations, their messages, and one Completion row per call to the upstream."""

import enum

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from .tree import ONE


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(_("title"), max_length=200, blank=True)
    # The first words of the first message until the model names the conversation (a
    # title call after the first reply); a person's own rename is never replaced.
    # db_default: rows inserted by code that predates the column (a rolling deploy, raw
    # SQL) get it too.
    title_is_auto = models.BooleanField(_("title made by the site"), default=True, db_default=True)
    model = models.CharField(_("model"), max_length=100)
    # Who serves the model: None for the environment's own provider (OPENAI_BASE_URL).
    # A provider's deletion leaves its chats readable, on the default provider.
    provider = models.ForeignKey(
        "conversations.Provider",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversations",
        verbose_name=_("provider"),
    )
    system_prompt = models.TextField(_("system prompt"), blank=True)
    # Generation parameters: null means "not set", and unset ones are not sent.
    temperature = models.FloatField(_("temperature"), null=True, blank=True)
    top_p = models.FloatField(_("top P"), null=True, blank=True)
    max_tokens = models.PositiveIntegerField(_("max tokens"), null=True, blank=True)
    n = models.PositiveSmallIntegerField(_("choices"), null=True, blank=True)
    stop = models.JSONField(_("stop sequences"), default=list, blank=True)
    presence_penalty = models.FloatField(_("presence penalty"), null=True, blank=True)
    frequency_penalty = models.FloatField(_("frequency penalty"), null=True, blank=True)

    created_at = models.DateTimeField(_("created"), default=timezone.now)
    last_activity_at = models.DateTimeField(_("last activity"), default=timezone.now)

    # The person's own filing: pinned chats head the sidebar (newest pin first); archived
    # ones leave it for the "Archived" list (still searchable).
    pinned_at = models.DateTimeField(_("pinned"), null=True, blank=True)
    archived_at = models.DateTimeField(_("archived"), null=True, blank=True)

    class Origin(models.TextChoices):
        HERE = "", _("written here")
        CHATSITE = "chatsite", _("imported from a chatsite export")
        CHATGPT = "chatgpt", _("imported from ChatGPT")

    # Imported conversations never called the upstream and never count as usage.
    origin = models.CharField(
        _("origin"), max_length=16, choices=Origin.choices, blank=True, default="", db_default=""
    )

    class Temporary(models.TextChoices):
        NO = "", _("kept")
        DAY = "day", _("deleted a day after its last message")
        LEAVE = "leave", _("deleted when its owner leaves it")

    # A temporary chat is deleted a day after its last message (privacy.retention), or, if
    # its owner chose so, as soon as they open another chat (at most a day later, too).
    temporary = models.CharField(
        _("temporary"),
        max_length=8,
        choices=Temporary.choices,
        blank=True,
        default="",
        db_default="",
    )

    # Review by staff (admin only).
    flagged = models.BooleanField(_("flagged"), default=False)
    review_note = models.TextField(_("review note"), blank=True)
    flagged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    flagged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        indexes = [
            models.Index(fields=["owner", "-last_activity_at"], name="conv_owner_activity"),
            models.Index(fields=["created_at"], name="conv_created"),
            # The retention purge's scan for chats idle past the site's limit.
            models.Index(fields=["last_activity_at"], name="conv_activity"),
            models.Index(
                fields=["last_activity_at"],
                name="conv_temporary_activity",
                condition=~models.Q(temporary=""),
            ),
            models.Index(fields=["flagged", "-last_activity_at"], name="conv_flagged"),
            # The sidebar's pinned chats, and the "Archived" list.
            models.Index(
                fields=["owner", "-pinned_at"],
                name="conv_owner_pinned",
                condition=models.Q(pinned_at__isnull=False),
            ),
            models.Index(
                fields=["owner", "-archived_at"],
                name="conv_owner_archived",
                condition=models.Q(archived_at__isnull=False),
            ),
        ]
        # Reviewers flag and note conversations without being able to change them.
        permissions = [("review_conversation", _("Can flag and note conversations"))]

    def __str__(self) -> str:
        return self.title or str(_("New chat"))

    @cached_property
    def messages_url(self) -> str:
        """Where the URLs of its messages start (`…/<id>/source/` and the like): one
        reverse() for a page's hundreds of message links."""
        return reverse("message_send", args=[self.pk])

    @property
    def is_temporary(self) -> bool:
        return bool(self.temporary)

    @property
    def is_imported(self) -> bool:
        return bool(self.origin)

    def generation_params(self) -> dict:
        """The seed contract's parameters as set on this conversation (None = unset)."""
        return {
            "model": self.model,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "n": self.n,
            "stop": list(self.stop) if self.stop else None,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
        }


class Message(models.Model):
    # What the chat page's transcript tells apart (chat.selectors.Reply is "reply"): an
    # attribute, not a failed lookup, which costs the template engine a dir() per message.
    kind = "message"
    # Which version of its turn it is, where a page has worked it out (chat/tree.py).
    versions = ONE

    class Role(models.TextChoices):
        SYSTEM = "system", _("system")
        USER = "user", _("user")
        ASSISTANT = "assistant", _("assistant")

    class Status(models.TextChoices):
        COMPLETE = "complete", _("complete")
        STREAMING = "streaming", _("streaming")
        STOPPED = "stopped", _("stopped")
        FAILED = "failed", _("failed")

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    content = models.TextField(_("content"), blank=True)
    # A reply's reasoning ("Thinking"), apart from its content: shown, never sent back.
    reasoning = models.TextField(_("reasoning"), blank=True, default="", db_default="")
    # The sanitized HTML of a finished reply, made once when it is saved (pages read it).
    html = models.TextField(blank=True, editable=False)
    # The message this one follows (None for a first turn): messages form a tree, each
    # message's children are the versions of the next turn (chat/tree.py).
    parent = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="children",
        verbose_name=_("follows"),
    )
    # The turn's depth in the conversation; versions of one turn and a reply's choices
    # share it.
    position = models.PositiveIntegerField(_("position"))
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.COMPLETE
    )
    # Assistant messages: the call that made them and which choice. For every message:
    # whether, of its siblings (the versions of its turn), it is the one the conversation
    # goes on from.
    completion = models.ForeignKey(
        "Completion", on_delete=models.CASCADE, null=True, blank=True, related_name="messages"
    )
    choice_index = models.PositiveSmallIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    is_selected = models.BooleanField(_("selected"), default=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["position", "choice_index", "id"]
        indexes = [models.Index(fields=["conversation", "position"], name="msg_conv_position")]
        constraints = [
            models.UniqueConstraint(
                fields=["completion", "choice_index"], name="msg_one_per_choice"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"

    def rendered(self) -> SafeString:
        """The reply as sanitized HTML: the stored copy, or rendered now for older rows."""
        from conversations.shared.rendering import localize, render_markdown

        if self.html:
            return localize(self.html)
        return render_markdown(self.content)


class LiveState(enum.StrEnum):
    """What the page says while a reply is on its way."""

    QUEUED = "queued"
    RETRYING = "retrying"  # an attempt failed; the next one waits its turn
    RUNNING = "running"


class Completion(models.Model):
    """One call to the upstream's Chat Completions endpoint, and what came back."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    class Purpose(models.TextChoices):
        REPLY = "reply", _("reply")
        # A short call naming the conversation after its first reply (chat.services.titles):
        # stored once it has ended, never queued, so it is never pending, busy or swept.
        TITLE = "title", _("title call")

    class Source(models.TextChoices):
        BROWSER = "browser", _("browser")
        # A call to the site's own API with a personal key (conversations/api): no
        # conversation, the request and the reply kept on this row.
        API = "api", _("API")

    # None for API calls, which belong to no conversation.
    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.CASCADE,
        related_name="completions",
        null=True,
        blank=True,
    )
    source = models.CharField(
        _("source"),
        max_length=8,
        choices=Source.choices,
        default=Source.BROWSER,
        db_default=Source.BROWSER,
    )
    api_key = models.ForeignKey(
        "conversations.ApiKey",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="completions",
        verbose_name=_("API key"),
    )
    # Denormalised from the conversation: reports filter and group by it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="completions"
    )
    # The user message this call answers (the last one in the request).
    request_message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="replies", null=True, blank=True
    )
    model = models.CharField(_("model asked for"), max_length=100)
    # The provider called (None: the environment's own), and its name when it was called,
    # which reports show after the provider is renamed or deleted.
    provider = models.ForeignKey(
        "conversations.Provider",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="completions",
        verbose_name=_("provider"),
    )
    provider_name = models.CharField(
        _("provider"), max_length=100, blank=True, default="", db_default=""
    )
    purpose = models.CharField(
        _("purpose"),
        max_length=8,
        choices=Purpose.choices,
        default=Purpose.REPLY,
        db_default=Purpose.REPLY,
    )
    request_body = models.JSONField(_("request as sent"), default=dict)
    # Which version of the reply to its request message this call makes: 1 for the
    # first, the next number for a regeneration (the ended reply's "2 / 2" without a query).
    version = models.PositiveSmallIntegerField(_("version"), default=1, db_default=1)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.QUEUED
    )

    # The response, as returned.
    response_id = models.CharField(_("response id"), max_length=200, blank=True)
    response_created = models.BigIntegerField(_("response created"), null=True, blank=True)
    response_model = models.CharField(_("model returned"), max_length=100, blank=True)
    response_object = models.CharField(_("object"), max_length=64, blank=True)
    # [{index, finish_reason}]; an API call's also hold the reply: [{..., message}].
    choices = models.JSONField(_("choices"), default=list, blank=True)
    prompt_tokens = models.PositiveIntegerField(_("prompt tokens"), null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(_("completion tokens"), null=True, blank=True)
    total_tokens = models.PositiveIntegerField(_("total tokens"), null=True, blank=True)
    usage_estimated = models.BooleanField(_("usage estimated"), default=False)

    http_status = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    error_type = models.CharField(_("error type"), max_length=64, blank=True)
    error_message = models.TextField(_("error"), blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    latency_ms = models.PositiveIntegerField(_("latency (ms)"), null=True, blank=True)

    queued_at = models.DateTimeField(_("queued"), default=timezone.now)
    # Earliest time a worker may run it (later than queued_at while backing off).
    available_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    # The current claim: only the holder of this token may save the result.
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    stop_requested = models.BooleanField(_("stop requested"), default=False)
    # The web request that queued it: the worker logs its lines under this id, retries
    # and the sweep's re-sends included (see chatsite.logs).
    request_id = models.CharField(_("request id"), max_length=100, blank=True)

    # Cost at the price in force when the call finished; history never changes.
    price = models.ForeignKey(
        "conversations.ModelPrice",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="completions",
    )
    cost = models.DecimalField(_("cost"), max_digits=18, decimal_places=8, null=True, blank=True)
    currency = models.CharField(_("currency"), max_length=3, blank=True)
    # Budget reservation made when queued, settled or released when it ends.
    reserved_tokens = models.PositiveIntegerField(default=0)
    reserved_cost = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    budget_settled = models.BooleanField(default=False)
    # The groups whose pooled budgets the reservation was made against (their ids), so
    # that settling or releasing it touches the same ones even if membership changed.
    budget_groups = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name = _("completion")
        verbose_name_plural = _("completions")
        indexes = [
            models.Index(fields=["user", "queued_at"], name="cmpl_user_queued"),
            models.Index(fields=["queued_at"], name="cmpl_queued"),
            models.Index(fields=["model", "queued_at"], name="cmpl_model_queued"),
            models.Index(fields=["status", "available_at"], name="cmpl_status_available"),
            models.Index(fields=["conversation", "status"], name="cmpl_conv_status"),
            # The admin's list of API calls, newest first.
            models.Index(fields=["source", "-queued_at"], name="cmpl_source_queued"),
        ]

    def __str__(self) -> str:
        return f"{self.model} #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def live_state(self) -> LiveState:
        if self.status == self.Status.QUEUED:
            return LiveState.RETRYING if self.attempts else LiveState.QUEUED
        return LiveState.RUNNING

    @property
    def choice_indexes(self) -> range:
        """The choices this call asked for (n), for the page's live reply slots."""
        return range(self.request_body.get("n") or 1)
