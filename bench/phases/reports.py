"""4. Usage reports: the staff report over 10,000 to 1,000,000 completions (PostgreSQL
loads them with SQL; SQLite through the ORM, up to SQLITE_MAX_REPORT_ROWS)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from bench.common import SQLITE_MAX_REPORT_ROWS, Mode, log, summary
from bench.people import Person, log_in, make_users
from bench.stack import Stack

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-3.5-turbo")
REPORT_USERS = 100
DAYS = 29


def _load_completions_sql(first: int, last: int) -> None:
    """Rows first..last (inclusive) in one INSERT ... SELECT generate_series (PostgreSQL)."""
    from django.db import connection

    models = ",".join(f"'{m}'" for m in MODELS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO conversations_completion (
                conversation_id, user_id, request_message_id, model, request_body, status,
                response_id, response_created, response_model, response_object, choices,
                prompt_tokens, completion_tokens, total_tokens, usage_estimated, http_status,
                error_type, error_message, attempts, latency_ms, queued_at, available_at,
                started_at, finished_at, claim_token, lease_expires_at, stop_requested,
                price_id, cost, currency, reserved_tokens, reserved_cost, budget_settled,
                request_id)
            SELECT o.conversation_id, o.user_id, NULL, (ARRAY[{models}])[(1 + g %% 4)::int], '{{}}',
                CASE WHEN g %% 50 = 0 THEN 'failed' ELSE 'succeeded' END,
                'chatcmpl-bench-' || g, NULL, '', 'chat.completion', '[]',
                CASE WHEN g %% 50 = 0 THEN NULL ELSE v.pt END,
                CASE WHEN g %% 50 = 0 THEN NULL ELSE v.ct END,
                CASE WHEN g %% 50 = 0 THEN NULL ELSE v.pt + v.ct END,
                g %% 97 = 0, 200, '', '', 1, 700, v.ts, v.ts, v.ts, v.ts + interval '1 second',
                NULL, NULL, false, NULL,
                CASE WHEN g %% 50 = 0 OR g %% 211 = 0 THEN NULL
                     ELSE round((v.pt * 0.15 + v.ct * 0.6) / 1000000.0, 8) END,
                CASE WHEN g %% 50 = 0 OR g %% 211 = 0 THEN '' ELSE 'USD' END, 0, 0, true, ''
            FROM generate_series(%s::bigint, %s::bigint) AS g
            CROSS JOIN LATERAL (
                SELECT 20 + (g * 7919) %% 1500 AS pt, 10 + (g * 104729) %% 800 AS ct,
                       now() - ((g * 2654435761) %% ({DAYS} * 86400)) * interval '1 second'
                       AS ts
            ) AS v
            JOIN bench_owner o ON o.k = g %% {REPORT_USERS}
            """,
            [first, last],
        )


def _load_completions_orm(first: int, last: int, owners: list[tuple[int, int]]) -> None:
    from decimal import Decimal

    from django.utils import timezone

    from conversations.models import Completion

    now = timezone.now()
    batch = []

    def price(pt: int, ct: int) -> Decimal:
        return (Decimal(pt) * Decimal("0.15") + Decimal(ct) * Decimal("0.6")) / 1_000_000

    for g in range(first, last + 1):
        user_id, conversation_id = owners[g % REPORT_USERS]
        failed = g % 50 == 0
        pt, ct = 20 + (g * 7919) % 1500, 10 + (g * 104729) % 800
        at = now - timedelta(seconds=(g * 2654435761) % (DAYS * 86400))
        batch.append(
            Completion(
                conversation_id=conversation_id,
                user_id=user_id,
                model=MODELS[g % 4],
                status="failed" if failed else "succeeded",
                response_id=f"chatcmpl-bench-{g}",
                prompt_tokens=None if failed else pt,
                completion_tokens=None if failed else ct,
                total_tokens=None if failed else pt + ct,
                usage_estimated=g % 97 == 0,
                attempts=1,
                queued_at=at,
                available_at=at,
                started_at=at,
                finished_at=at + timedelta(seconds=1),
                cost=None if failed else price(pt, ct),
                currency="" if failed else "USD",
                budget_settled=True,
            )
        )
        if len(batch) >= 5000:
            Completion.objects.bulk_create(batch)
            batch = []
    Completion.objects.bulk_create(batch)


def reports(stack: Stack, mode: Mode) -> dict[str, Any]:
    from django.utils import timezone

    from conversations.models import Completion

    sizes = list(mode.report_sizes)
    note = ""
    if not stack.on_servers and max(sizes) > SQLITE_MAX_REPORT_ROWS:
        sizes = [s for s in sizes if s <= SQLITE_MAX_REPORT_ROWS]
        note = f"SQLite: rows loaded through the ORM, so at most {SQLITE_MAX_REPORT_ROWS:,}."
    owners = _owners(stack)
    [staff] = make_users("bench-staff-", 1, staff=True)
    [staff_person] = log_in(stack, [staff], parallel=1)
    end = timezone.localdate()
    window = (end - timedelta(days=DAYS), end)
    # The chat phases' completions are in the range too; the report counts them as well.
    earlier = Completion.objects.count()
    loaded, rows = 0, []
    for size in sizes:
        log(f"reports: loading completions up to {size:,}")
        began = time.monotonic()
        _load(stack, loaded, size, owners)
        load_seconds = time.monotonic() - began
        loaded = size
        reps = mode.report_reps.get(size, 5)
        log(f"reports: timing over {size:,} completions x {reps}")
        timed = _time_reports(staff_person, window, owners[7][0], size + earlier, reps)
        rows.append({"completions": size, "load_seconds": load_seconds, **timed})
    return {"rows": rows, "note": note, "users": REPORT_USERS, "days": DAYS + 1}


def _owners(stack: Stack) -> list[tuple[int, int]]:
    """REPORT_USERS users with a conversation each: (user id, conversation id); on
    PostgreSQL also in the `bench_owner` table the SQL load joins."""
    from django.db import connection

    from conversations.models import Conversation

    report_users = make_users("bench-report-", REPORT_USERS)
    conversations = Conversation.objects.bulk_create(
        [Conversation(owner=u, title="usage", model=MODELS[0]) for u in report_users]
    )
    owners = [(u.pk, c.pk) for u, c in zip(report_users, conversations, strict=True)]
    if stack.on_servers:
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE bench_owner (k int, user_id int, conversation_id int)")
            cursor.executemany(
                "INSERT INTO bench_owner VALUES (%s, %s, %s)",
                [(k, u, c) for k, (u, c) in enumerate(owners)],
            )
    return owners


def _load(stack: Stack, loaded: int, size: int, owners: list[tuple[int, int]]) -> None:
    """Completions `loaded` .. `size` - 1."""
    from django.db import connection

    if not stack.on_servers:
        _load_completions_orm(loaded, size - 1, owners)
        return
    # In slices, so each statement's deferred foreign-key checks stay small.
    for first in range(loaded, size, 250_000):
        _load_completions_sql(first, min(size, first + 250_000) - 1)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE conversations_completion")


def _time_reports(
    staff_person: Person, window: tuple, probe_user: int, expected: int, reps: int
) -> dict[str, dict[str, float]]:
    """Each report function in-process and the /usage/all/ page over HTTP, `reps` times."""
    from conversations.usage import reports as usage

    start, end = window
    calls = {
        "all_users": lambda: usage.all_users(start, end),
        "by_model": lambda: usage.all_users(start, end, by_model=True),
        "user": lambda: usage.user_drilldown(probe_user, start, end),
    }
    counted = sum(row["requests"] for row in calls["all_users"]())
    if counted != expected:
        raise RuntimeError(f"the all-users report counted {counted} of {expected}")
    timed: dict[str, list[float]] = {"all_users": [], "by_model": [], "user": [], "page": []}
    for _ in range(reps):
        for name, call in calls.items():
            began = time.perf_counter()
            call()
            timed[name].append(time.perf_counter() - began)
        elapsed, response = staff_person.browser.get(
            f"/usage/all/?start={start.isoformat()}&end={end.isoformat()}"
        )
        if response.status_code != 200:
            raise RuntimeError(f"/usage/all/ answered {response.status_code}")
        timed["page"].append(elapsed)
    return {name: summary(values) for name, values in timed.items()}
