"""Sending limits: messages (and retries) per user and minute, counted in the cache
(shared.ratelimits), and replies in flight per user, counted in the database under a lock
on the user's row in the transaction that queues the next one, so the count holds across
processes too."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import ngettext

from conversations.shared.ratelimits import Rate, RateLimited, whole_seconds


@contextlib.contextmanager
def message_counted(*, user_id: int) -> Iterator[None]:
    """Count one message (or retry) of the user, or raise RateLimited naming "content"
    over MESSAGES_PER_MINUTE. A ValidationError inside (nothing was sent) takes it back."""
    hit = Rate("send", settings.MESSAGES_PER_MINUTE, 60.0).hit(str(user_id))
    if hit.refused:
        seconds = whole_seconds(hit.wait)
        raise RateLimited(
            ngettext(
                "You are sending messages too fast. Wait %(seconds)d second and try again.",
                "You are sending messages too fast. Wait %(seconds)d seconds and try again.",
                seconds,
            )
            % {"seconds": seconds},
            field="content",
            retry_after=seconds,
        )
    try:
        yield
    except ValidationError:
        hit.undo()
        raise


def replies_in_flight_check(*, active: int) -> None:
    """Raise RateLimited naming "content" when the user has MAX_REPLIES_IN_FLIGHT replies
    queued or being written (`active`, counted under the user's row lock in the transaction
    that queues the next reply: services/rows.py), so parallel sends are counted one by one."""
    limit = settings.MAX_REPLIES_IN_FLIGHT
    if 0 < limit <= active:
        raise RateLimited(
            ngettext(
                "You already have %(count)d reply being written. Wait for it to finish.",
                "You already have %(count)d replies being written. Wait for one to finish.",
                limit,
            )
            % {"count": limit},
            field="content",
        )
