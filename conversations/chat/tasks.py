"""Celery tasks: thin wrappers that take ids, call services and hold the retry policy."""

from __future__ import annotations

import logging
import random

from celery import shared_task
from django.conf import settings
from django.utils.translation import gettext as _

from conversations.providers.catalog import may_use
from conversations.providers.services import provider_call_succeeded
from conversations.upstream.protocol import PermanentError, UpstreamError

from . import replies
from .services import attempts, completions, titles
from .services.completions import RUN_COMPLETION, Claim, Outcome

logger = logging.getLogger(__name__)


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, never shorter than the upstream's Retry-After."""
    base = settings.COMPLETION_RETRY_BASE_DELAY
    cap = settings.COMPLETION_RETRY_MAX_DELAY
    delay = random.uniform(base / 2, min(cap, base * 2 ** (attempt - 1)))
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


@shared_task(name=RUN_COMPLETION, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_completion(completion_id: int) -> str:
    outcome = _run_completion(completion_id)
    logger.info("Completion %s: %s", completion_id, outcome, extra={"outcome": str(outcome)})
    return str(outcome)  # a plain string in the worker's log line ("succeeded in 0.1s: ...")


def _run_completion(completion_id: int) -> Outcome:
    claim = completions.completion_claim(completion_id=completion_id)
    if claim is None:
        return Outcome.SKIPPED  # finished, not yet due, out of attempts, or held elsewhere
    logger.info("Completion %s: attempt %s", completion_id, claim.completion.attempts)
    called = claim.completion
    if not may_use(called.user_id, called.provider_id, called.model):
        # Access was taken away after the message was sent: the call is not made.
        completions.completion_fail(
            claim=claim,
            error=PermanentError(
                _("This model is no longer offered to you: choose another in Settings."),
                error_type="model_access",
            ),
        )
        return Outcome.FAILED
    try:
        outcome = attempts.completion_attempt(claim=claim)
    except UpstreamError as error:
        return _after_failure(claim, error)
    except Exception as exc:
        # Our own bug or the database: still one attempt used, so it ends in time. If even
        # this fails, the lease runs out and the sweep takes over (or gives up).
        logger.exception("Completion %s attempt %s broke", completion_id, claim.completion.attempts)
        attempts.completion_attempt_discard(claim=claim)
        return _after_failure(claim, completions.internal_error(exc))
    if outcome == Outcome.SUCCEEDED:
        # The provider's health: its last successful call.
        provider_call_succeeded(provider_id=claim.completion.provider_id)
        if replies.title_coming(claim.completion):
            titles.title_enqueue(completion_id)
    return outcome


def _after_failure(claim: Claim, error: UpstreamError) -> Outcome:
    completion_id = claim.completion.pk
    attempt = claim.completion.attempts
    if error.retryable and attempt < settings.COMPLETION_MAX_ATTEMPTS:
        delay = retry_delay(attempt, error.retry_after)
        logger.info(
            "Completion %s attempt %s failed (%s); retry in %.1fs",
            completion_id,
            attempt,
            error.error_type,
            delay,
        )
        if completions.completion_requeue(claim=claim, error=error, delay=delay):
            completions.completion_enqueue(completion_id, countdown=delay)
        return Outcome.RETRYING
    completions.completion_fail(claim=claim, error=error)
    return Outcome.FAILED


@shared_task(name=titles.TITLE_CONVERSATION, ignore_result=True)
def title_conversation(completion_id: int) -> str:
    """Name a conversation after its first reply (services/titles.py); no retries: the
    first words stay the title when it fails."""
    title = titles.conversation_title(completion_id=completion_id)
    return "titled" if title else "kept its title"


@shared_task(name="conversations.tasks.sweep_completions", ignore_result=True)
def sweep_completions() -> int:
    return len(completions.completions_sweep())
