"""The life of a completion on the worker's side, but for the call itself (attempts.py, results.py):
the claim, its lease, giving it back for a retry, failing it, the sweep that recovers lost
work, and settling its budget reservation once.

A completion is claimed with a conditional update and saved only by the holder of that
claim, so a redelivered task or a sweep that re-sends one never calls the upstream for a
finished completion and never saves two replies."""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet, sql
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from chatsite import logs
from conversations.billing import budgets
from conversations.chat import channel
from conversations.chat.models import Completion, LiveState, Message
from conversations.upstream import protocol

logger = logging.getLogger(__name__)

# The task's name, kept from before the app had domain packages: messages already queued
# under it still find it after an upgrade (see chat/tasks.py).
RUN_COMPLETION = "conversations.tasks.run_completion"


def completion_enqueue(completion_id: int, *, countdown: float | None = None) -> None:
    """Send the task (by name: the task module imports this one); if the broker is down
    the sweep sends it again later."""
    try:
        current_app.send_task(RUN_COMPLETION, args=[completion_id], countdown=countdown)
    except Exception:
        logger.warning("Could not enqueue completion %s; the sweep will retry", completion_id)


class Outcome(enum.StrEnum):
    """What one delivery of a completion's task came to."""

    SUCCEEDED = "succeeded"
    STOPPED = "stopped"
    FAILED = "failed"  # ended in an error (a broken stream keeps its partial text)
    RETRYING = "retrying"
    LOST = "lost"  # another worker holds the claim now: nothing saved, nothing published
    SKIPPED = "skipped"  # finished, not yet due, out of attempts, or held elsewhere


@dataclass
class Claim:
    completion: Completion
    token: uuid.UUID


def completion_claim(*, completion_id: int) -> Claim | None:
    """Take the completion if it is due, has attempts left and nobody holds a live claim
    (one statement: the conditional update returns the row)."""
    now = timezone.now()
    token = uuid.uuid4()
    # A little slack for a countdown message that arrives a moment early.
    due = now + timedelta(seconds=1)
    claimable = Completion.objects.filter(
        pk=completion_id, attempts__lt=settings.COMPLETION_MAX_ATTEMPTS
    ).filter(
        Q(status=Completion.Status.QUEUED, available_at__lte=due)
        | Q(status=Completion.Status.RUNNING, lease_expires_at__lt=now)
    )
    completion = _update_returning(
        claimable,
        status=Completion.Status.RUNNING,
        claim_token=token,
        lease_expires_at=now + timedelta(seconds=settings.COMPLETION_LEASE_SECONDS),
        started_at=Coalesce(F("started_at"), now),
        attempts=F("attempts") + 1,
    )
    return None if completion is None else Claim(completion=completion, token=token)


def _update_returning(rows: QuerySet[Completion], **values) -> Completion | None:
    """`rows.update(**values)` for (at most) one row, and the row as it is after it, in one
    statement (UPDATE ... RETURNING: PostgreSQL, and SQLite since 3.35)."""
    columns = ", ".join(
        connection.ops.quote_name(field.column) for field in Completion._meta.concrete_fields
    )
    statement, params = _update_statement(rows, values)
    found = list(Completion.objects.raw(f"{statement} RETURNING {columns}", params))
    return found[0] if found else None


def returning_ids(rows: QuerySet[Completion], **values) -> list[int]:
    """`rows.update(**values)`, and the ids of the rows it updated, in one statement."""
    statement, params = _update_statement(rows, values)
    with connection.cursor() as cursor:
        cursor.execute(f"{statement} RETURNING {connection.ops.quote_name('id')}", params)
        return [row[0] for row in cursor.fetchall()]


def _update_statement(rows: QuerySet[Completion], values: dict) -> tuple[str, tuple]:
    query = rows.query.chain(sql.UpdateQuery)
    query.add_update_values(values)
    return query.get_compiler(rows.db).as_sql()


def held(claim: Claim):
    """The completion's row, as long as this claim still holds it."""
    return held_by(claim.completion.pk, claim.token)


def held_by(completion_id: int, token: uuid.UUID):
    """The completion's row, as long as the claim with this token still holds it."""
    return Completion.objects.filter(
        pk=completion_id, claim_token=token, status=Completion.Status.RUNNING
    )


def completions_renew(*, claims: list[Claim]) -> set[int]:
    """Extend the leases of these claims while their calls go on, in one statement: the
    completions they still hold (not those another worker has taken over)."""
    rows = Completion.objects.filter(
        pk__in=[claim.completion.pk for claim in claims],
        claim_token__in=[claim.token for claim in claims],
        status=Completion.Status.RUNNING,
    )
    lease = timedelta(seconds=settings.COMPLETION_LEASE_SECONDS)
    return set(returning_ids(rows, lease_expires_at=timezone.now() + lease))


def completion_requeue(*, claim: Claim, error: protocol.UpstreamError, delay: float) -> bool:
    """Give the claim back after a retryable error; run again after `delay` seconds."""
    now = timezone.now()
    channel.reply_channel().publish_status(
        claim.completion.pk, LiveState.RETRYING, attempt=claim.completion.attempts
    )
    return bool(
        held(claim).update(
            status=Completion.Status.QUEUED,
            claim_token=None,
            lease_expires_at=None,
            available_at=now + timedelta(seconds=delay),
            http_status=error.http_status,
            error_type=error.error_type,
            error_message=error.message[:2000],
        )
    )


def completion_fail(*, claim: Claim, error: protocol.UpstreamError) -> bool:
    """Mark the completion failed with a message a person can read."""
    with transaction.atomic():
        updated = held(claim).update(
            status=Completion.Status.FAILED,
            http_status=error.http_status,
            error_type=error.error_type,
            error_message=readable_error(error, attempts=claim.completion.attempts),
            finished_at=timezone.now(),
            lease_expires_at=None,
        )
        if updated:
            budget_release(completion_id=claim.completion.pk)
            if claim.completion.version > 1:
                earlier_version_restore(completion_id=claim.completion.pk)
    if updated:
        channel.reply_channel().publish_end(claim.completion.pk, Outcome.FAILED)
    return bool(updated)


def earlier_version_restore(*, completion_id: int) -> None:
    """A regeneration that ended without a word of reply leaves nothing to show: the
    newest earlier version of that reply is shown again (regenerating hid it)."""
    found = (
        Completion.objects.filter(pk=completion_id)
        .values_list("conversation_id", "request_message_id")
        .first()
    )
    if found is None:
        return
    conversation_id, asked = found
    replies = Message.objects.filter(conversation_id=conversation_id, parent_id=asked)
    if asked is None or replies.filter(is_selected=True).exists():
        return
    newest = replies.order_by("-completion_id", "choice_index", "pk").values("pk")[:1]
    Message.objects.filter(pk__in=newest).update(is_selected=True)


def internal_error(exc: BaseException) -> protocol.UpstreamError:
    """An attempt that failed in our own code (or database), as an error worth a retry."""
    return protocol.RetryableError(
        _("chatsite could not process the reply (%(error)s).") % {"error": type(exc).__name__},
        error_type="internal_error",
    )


def readable_error(error: protocol.UpstreamError, *, attempts: int) -> str:
    if error.error_type in ("time_limit", "abandoned"):
        text = "%(message)s"
    elif error.error_type == "internal_error":
        text = _("The reply failed %(attempts)s time(s); last error: %(message)s")
    elif error.http_status in (401, 403):
        text = _("The model service refused the API key (HTTP %(status)s): %(message)s")
    elif error.retryable:
        text = _("The model service failed %(attempts)s time(s); last error: %(message)s")
    else:
        text = _("The model service rejected the request (HTTP %(status)s): %(message)s")
    return (text % {"status": error.http_status, "message": error.message, "attempts": attempts})[
        :2000
    ]


def completions_sweep() -> list[int]:
    """Send again what was lost: queued too long (broker lost it) or lease expired
    (worker died). The claim keeps it to one call and one reply. What has used up its
    attempts is failed instead, so it is never called (and billed) again."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.COMPLETION_STALE_QUEUED_SECONDS)
    lost = Q(status=Completion.Status.QUEUED, available_at__lt=stale) | Q(
        status=Completion.Status.RUNNING, lease_expires_at__lt=now
    )
    # An API call is made by the web process that holds its client's connection: when
    # that process is gone, so is the client, and the call is never made again.
    exhausted = Q(attempts__gte=settings.COMPLETION_MAX_ATTEMPTS) | Q(source=Completion.Source.API)
    for completion_id in Completion.objects.filter(lost & exhausted).values_list("pk", flat=True)[
        :1000
    ]:
        completion_abandon(completion_id=completion_id, now=now)
    resend = dict(
        Completion.objects.filter(lost & ~exhausted).values_list("pk", "request_id")[:1000]
    )
    ids = list(resend)
    if ids:
        # Push the queued ones forward so the next sweep leaves them alone a while.
        Completion.objects.filter(pk__in=ids, status=Completion.Status.QUEUED).update(
            available_at=now
        )
        logger.info("Sweep re-sends completions %s", ids)
    for completion_id, request_id in resend.items():
        # Sent under the id of the request that asked for it, so its lines stay findable.
        with logs.request_id_bound(request_id or logs.NO_REQUEST):
            completion_enqueue(completion_id)
    return ids


def completion_abandon(*, completion_id: int, now: datetime) -> bool:
    """Fail a completion that used up its attempts without ending (its last worker died):
    text it streamed stays, marked as broken off; its reservation is given back."""
    with transaction.atomic():
        row = (
            Completion.objects.select_for_update(no_key=True)
            .filter(pk=completion_id, status__in=Completion.ACTIVE)
            .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
            .only("attempts", "source")
            .first()
        )
        if row is None:
            return False
        if row.source == Completion.Source.API:
            message = _("The API call was given up: the web process serving it stopped answering.")
        else:
            message = _(
                "The reply was given up after %(attempts)s attempt(s): the worker writing it "
                "stopped answering."
            ) % {"attempts": row.attempts}
        Completion.objects.filter(pk=completion_id).update(
            status=Completion.Status.FAILED,
            claim_token=None,
            lease_expires_at=None,
            error_type="abandoned",
            error_message=message,
            finished_at=now,
        )
        # A streaming row holds its text as the live channel carries it, the reasoning in a
        # leading <think> block: each part goes to its own column (a choice or a few).
        streaming = Message.objects.filter(
            completion_id=completion_id, status=Message.Status.STREAMING
        )
        for message in streaming.only("pk", "content"):
            reasoning, answer = protocol.split_reasoning(message.content)
            Message.objects.filter(pk=message.pk).update(
                status=Message.Status.FAILED, content=answer, reasoning=reasoning
            )
        budget_release(completion_id=completion_id)
        earlier_version_restore(completion_id=completion_id)
    logger.warning("Completion %s given up after %s attempts", completion_id, row.attempts)
    channel.reply_channel().publish_end(completion_id, Outcome.FAILED)
    return True


# --- Budgets: each call's reservation is settled (or released) once ---


CLOSE_FIELDS = (
    "user_id",
    "queued_at",
    "reserved_tokens",
    "reserved_cost",
    "budget_groups",
    "total_tokens",
    "cost",
)


def _budget_close(completion_id: int, *, used: bool) -> None:
    with transaction.atomic():
        row = (
            Completion.objects.select_for_update(no_key=True)
            .filter(pk=completion_id, budget_settled=False)
            .only(*CLOSE_FIELDS)
            .first()
        )
        if row is None:
            return
        budgets.period_adjust(
            user_id=row.user_id,
            at=row.queued_at,
            reserved=budgets.reservation_of(row),
            used_tokens=(row.total_tokens or 0) if used else 0,
            used_cost=(row.cost or Decimal(0)) if used else Decimal(0),
        )
        Completion.objects.filter(pk=completion_id).update(budget_settled=True)


def budget_settle(*, completion_id: int) -> None:
    """Replace the reservation with what the call really used (once)."""
    _budget_close(completion_id, used=True)


def budget_release(*, completion_id: int) -> None:
    """Give back the reservation of a call that used nothing (once)."""
    _budget_close(completion_id, used=False)
