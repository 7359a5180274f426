"""Transactions that PostgreSQL may refuse under contention, tried again a few times."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, connection, transaction

T = TypeVar("T")

# deadlock_detected, serialization_failure: the transaction was rolled back and may be
# tried again as it was.
RETRYABLE_SQLSTATES = {"40P01", "40001"}
ATTEMPTS = 3


def is_conflict(error: BaseException) -> bool:
    return getattr(error.__cause__, "sqlstate", None) in RETRYABLE_SQLSTATES


def atomic_with_retry(work: Callable[[], T], *, attempts: int = ATTEMPTS) -> T:
    """`work()` in a transaction, run again (up to `attempts` times in all) when the
    database broke a deadlock or a serialization conflict by rolling it back. Inside an
    outer transaction it runs once: only the outer one could be tried again."""
    if connection.in_atomic_block:
        with transaction.atomic():
            return work()
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic():
                return work()
        except OperationalError as error:
            if attempt == attempts or not is_conflict(error):
                raise
        # The other transaction needs a moment to finish; a random wait keeps two
        # retrying transactions from meeting again in step.
        time.sleep(random.uniform(0.005, 0.03) * attempt)
    raise AssertionError("unreachable")
