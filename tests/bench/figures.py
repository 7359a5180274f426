"""The measured phases of a benchmark run: overhead, time to first token, replies in flight
(with memory), page server time and query counts, and usage reports.

Runs in the benchmark's own process with Django set up against the bench database: the
ORM seeds data and reads completion rows to line them up with the simulator's timings.
Every latency is kept in seconds here and summarised as milliseconds.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import requests

from .load import Browser, Reply, call_upstream, run_concurrently
from .stack import CpuMeter, MemorySampler, Stack

PASSWORD = "bench-password-1"
# How browsers follow a reply: "page" (as the pending partial says), "sse" or "poll".
WAIT = "page"


@dataclass(frozen=True)
class Mode:
    name: str
    levels: tuple[int, ...]  # concurrent users for the overhead figure
    rounds: dict[int, int]  # sends per user at each level
    think: tuple[float, float]  # seconds a person reads before the next message
    latency: float  # the upstream's fixed latency for the overhead figure
    ttft_levels: tuple[int, ...]
    ttft_rounds: dict[int, int]
    ttft_latency: float
    token_delay: float
    in_flight: int
    in_flight_latency: float
    tabs_per_user: int  # in-flight conversations per logged-in person
    probes: int  # people loading chat pages while the replies are in flight
    page_sizes: tuple[int, ...]
    sidebar_size: int
    page_reps: dict[int, int]
    report_sizes: tuple[int, ...]
    report_reps: dict[int, int]


FULL = Mode(
    name="full",
    levels=(1, 10, 50),
    rounds={1: 20, 10: 8, 50: 6},
    think=(0.5, 1.5),
    latency=0.5,
    ttft_levels=(1, 50),
    ttft_rounds={1: 15, 50: 4},
    ttft_latency=0.2,
    token_delay=0.02,
    in_flight=200,
    in_flight_latency=5.0,
    tabs_per_user=4,
    probes=4,
    page_sizes=(10, 200, 2000),
    sidebar_size=1000,
    page_reps={10: 60, 200: 40, 2000: 12, 0: 40},
    report_sizes=(10_000, 100_000, 1_000_000),
    report_reps={10_000: 10, 100_000: 7, 1_000_000: 5},
)

SMOKE = Mode(
    name="smoke",
    levels=(1, 2),
    rounds={1: 3, 2: 2},
    think=(0.02, 0.1),
    latency=0.2,
    ttft_levels=(1, 2),
    ttft_rounds={1: 2, 2: 1},
    ttft_latency=0.1,
    token_delay=0.01,
    in_flight=5,
    in_flight_latency=0.5,
    tabs_per_user=3,
    probes=1,
    page_sizes=(10, 60),
    sidebar_size=60,
    page_reps={10: 5, 60: 5, 0: 5},
    report_sizes=(1_000,),
    report_reps={1_000: 3},
)

# SQLite loads rows through the ORM: the large sizes would take most of the time budget.
SQLITE_MAX_REPORT_ROWS = 100_000


# --- statistics ---


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (as numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max in milliseconds, and the sample count."""
    ms = [s * 1000 for s in seconds]
    if not ms:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan"),
                "mean": float("nan"), "max": float("nan")}  # fmt: skip
    return {
        "n": len(ms),
        "p50": percentile(ms, 0.50),
        "p95": percentile(ms, 0.95),
        "p99": percentile(ms, 0.99),
        "mean": sum(ms) / len(ms),
        "max": max(ms),
    }


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- people ---


@dataclass
class Person:
    username: str
    user_id: int
    browser: Browser
    conversations: list[int] = field(default_factory=list)


def make_users(prefix: str, count: int, *, staff: bool = False) -> list:
    """Users with one shared password hash (hashing is the login's cost, not the seed's)."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User

    hashed = make_password(PASSWORD)
    User.objects.bulk_create(
        [User(username=f"{prefix}{i:04d}", password=hashed, is_staff=staff) for i in range(count)]
    )
    return list(User.objects.filter(username__startswith=prefix).order_by("username"))


def log_in(stack: Stack, users: list, *, parallel: int) -> list[Person]:
    """Log each user in through the login form (real password check, real session)."""
    people: list[Person | None] = [None] * len(users)
    lock = threading.Lock()
    pending = list(enumerate(users))

    def job(_index: int) -> None:
        while True:
            with lock:
                if not pending:
                    return
                i, user = pending.pop()
            browser = Browser(stack.url_for(i))
            browser.login(user.username, PASSWORD)
            people[i] = Person(user.username, user.pk, browser)

    run_concurrently(min(parallel, len(users)), job)
    return [p for p in people if p is not None]


def open_chats(people: list[Person], per_person: int) -> None:
    """Each person gets `per_person` new conversations and opens the first (GET the page)."""
    from django.contrib.auth.models import User

    from conversations import services

    owners = {u.pk: u for u in User.objects.filter(pk__in=[p.user_id for p in people])}
    for person in people:
        for _ in range(per_person - len(person.conversations)):
            conversation = services.conversation_create(owner=owners[person.user_id])
            person.conversations.append(conversation.pk)
        _elapsed, response = person.browser.get(f"/c/{person.conversations[0]}/")
        if response.status_code != 200:
            raise RuntimeError(f"chat page answered {response.status_code}")


def _completion_rows(cids: list[int]) -> dict[int, dict[str, Any]]:
    from conversations.models import Completion

    return {
        row["pk"]: row
        for row in Completion.objects.filter(pk__in=cids).values(
            "pk", "response_id", "status", "queued_at", "started_at", "finished_at", "attempts"
        )
    }


def _line_up(replies: list[Reply], timings: dict[str, dict]) -> list[tuple[Reply, dict, dict]]:
    """Each successful reply with its completion row and the simulator's timing of its call."""
    rows = _completion_rows([r.cid for r in replies if r.cid])
    matched = []
    for reply in replies:
        row = rows.get(reply.cid)
        timing = timings.get(row["response_id"]) if row else None
        if reply.ok and timing is not None:
            matched.append((reply, row, timing))
    return matched


def _conversation_loop(
    people: list[Person], rounds: int, think: tuple[float, float], tag: str
) -> list[Reply]:
    replies: list[Reply] = []
    lock = threading.Lock()

    def person_job(index: int) -> None:
        person = people[index]
        rng = random.Random(f"{tag}-{index}")
        for round_ in range(rounds):
            time.sleep(rng.uniform(*think))
            reply = person.browser.converse(
                person.conversations[0],
                f"{tag} question {round_} from {person.username}: how fast is the reply?",
                how=WAIT,
            )
            with lock:
                replies.append(reply)
            if reply.error:
                # A person whose send failed waits a moment, as they would, then goes on.
                time.sleep(0.5)

    run_concurrently(len(people), person_job)
    return replies


def _failures(replies: list[Reply]) -> list[str]:
    return [
        r.error or f"ended {r.final_status or 'without an answer'}" for r in replies if not r.ok
    ]


def _direct_calls(stack: Stack, workers: int, rounds: int, tag: str) -> list:
    """`workers` clients at once, each making `rounds` streamed calls straight to the upstream."""
    calls = []
    lock = threading.Lock()

    def job(index: int) -> None:
        session = requests.Session()
        for round_ in range(rounds):
            call = call_upstream(session, stack.simulator_root, f"{tag} {index} {round_}")
            with lock:
                calls.append(call)

    run_concurrently(workers, job)
    return calls


# --- 1. overhead ---


def overhead(stack: Stack, mode: Mode, people: list[Person]) -> dict[str, Any]:
    levels = []
    for users in mode.levels:
        rounds = mode.rounds[users]
        log(f"overhead: {users} user(s) x {rounds} messages, upstream latency {mode.latency}s")
        stack.simulator_control(reset=True, latency=mode.latency, token_delay=0)
        meter = CpuMeter(stack)
        before = meter.snapshot()
        replies = _conversation_loop(people[:users], rounds, mode.think, f"overhead{users}")
        cpu = meter.cores(before, meter.snapshot())
        stack.check_alive()
        matched = _line_up(replies, stack.simulator_timings())
        overheads = [
            (r.visible - r.sent) - (t["answered"] - t["received"]) for r, _row, t in matched
        ]
        breakdown = _breakdown(matched)

        log(f"overhead baseline: the upstream called directly, {users} at once x {rounds}")
        stack.simulator_control(reset=True, latency=mode.latency, token_delay=0)
        calls = _direct_calls(stack, users, rounds, "baseline")
        timings = stack.simulator_timings()
        baseline = [
            c.elapsed - (timings[c.response_id]["answered"] - timings[c.response_id]["received"])
            for c in calls
            if not c.error and c.response_id in timings
        ]
        levels.append(
            {
                "users": users,
                "sends": len(replies),
                "failures": _failures(replies),
                "unmatched": len(replies) - len(matched) - len(_failures(replies)),
                "how": sorted({r.how for r in replies if r.how}),
                "overhead": summary(overheads),
                "end_to_end": summary([r.visible - r.sent for r, _row, _t in matched]),
                "upstream": summary([t["answered"] - t["received"] for _r, _row, t in matched]),
                "baseline": summary(baseline),
                "baseline_failures": [c.error for c in calls if c.error],
                "breakdown": breakdown,
                "cpu": cpu,
            }
        )
    return {"latency": mode.latency, "think": mode.think, "levels": levels}


def _breakdown(matched: list[tuple[Reply, dict, dict]]) -> dict[str, dict[str, float]]:
    """Where the overhead goes, from the clocks of one machine (Unix times)."""
    parts: dict[str, list[float]] = {
        "send -> completion queued": [],
        "queued -> worker claimed it": [],
        "claimed -> upstream got the call": [],
        "upstream answered -> reply saved": [],
        "reply saved -> page saw it end": [],
    }
    for reply, row, timing in matched:
        if not (row["started_at"] and row["finished_at"]):
            continue
        queued = row["queued_at"].timestamp()
        started = row["started_at"].timestamp()
        finished = row["finished_at"].timestamp()
        parts["send -> completion queued"].append(queued - reply.sent_wall)
        parts["queued -> worker claimed it"].append(started - queued)
        parts["claimed -> upstream got the call"].append(timing["received"] - started)
        parts["upstream answered -> reply saved"].append(finished - timing["answered"])
        parts["reply saved -> page saw it end"].append(reply.visible_wall - finished)
    return {name: summary(values) for name, values in parts.items()}


# --- time to first token (streaming) ---


def first_token(stack: Stack, mode: Mode, people: list[Person]) -> dict[str, Any]:
    levels = []
    for streams in mode.ttft_levels:
        rounds = mode.ttft_rounds[streams]
        log(f"first token: {streams} stream(s) x {rounds}, token delay {mode.token_delay}s")
        stack.simulator_control(reset=True, latency=mode.ttft_latency, token_delay=mode.token_delay)
        replies = _conversation_loop(people[:streams], rounds, mode.think, f"ttft{streams}")
        stack.check_alive()
        matched = [
            (r, t) for r, _row, t in _line_up(replies, stack.simulator_timings())
            if r.first_text is not None and t.get("first_token")
        ]  # fmt: skip
        app = [(r.first_text - r.sent) - (t["first_token"] - t["received"]) for r, t in matched]

        stack.simulator_control(reset=True, latency=mode.ttft_latency, token_delay=mode.token_delay)
        calls = _direct_calls(stack, streams, rounds, "ttft baseline")
        timings = stack.simulator_timings()
        baseline = [
            c.first_token - (timing["first_token"] - timing["received"])
            for c in calls
            if not c.error
            and c.first_token is not None
            and (timing := timings.get(c.response_id))
            and timing.get("first_token")
        ]
        levels.append(
            {
                "streams": streams,
                "sends": len(replies),
                "failures": _failures(replies),
                "how": sorted({r.how for r in replies if r.how}),
                "ttft_overhead": summary(app),
                "ttft_browser": summary([r.first_text - r.sent for r, _t in matched]),
                "ttft_upstream": summary([t["first_token"] - t["received"] for _r, t in matched]),
                "baseline": summary(baseline),
            }
        )
    return {"latency": mode.ttft_latency, "token_delay": mode.token_delay, "levels": levels}


# --- 2. replies in flight, 5. memory ---


def in_flight(stack: Stack, mode: Mode, people: list[Person]) -> dict[str, Any]:
    count = mode.in_flight
    tabs: list[tuple[Person, Browser, int]] = []
    open_chats(people, 1 + mode.tabs_per_user)
    for i in range(count):
        person = people[i % len(people)]
        conversation = person.conversations[1 + (i // len(people)) % mode.tabs_per_user]
        tabs.append((person, person.browser.tab(), conversation))
    if len({c for _p, _b, c in tabs}) != count:
        raise RuntimeError("not enough conversations for the in-flight phase")
    log(f"in flight: {count} conversations on a {mode.in_flight_latency}s upstream")
    stack.simulator_control(reset=True, latency=mode.in_flight_latency, token_delay=0)

    replies: list[Reply] = []
    page_times: list[float] = []
    page_errors: list[str] = []
    lock = threading.Lock()
    stop_probes = threading.Event()

    def probe(index: int) -> None:
        rng = random.Random(f"probe-{index}")
        browsers = {p.username: p.browser.tab() for p in people}
        while not stop_probes.is_set():
            person, _tab, conversation = rng.choice(tabs)
            elapsed, response = browsers[person.username].get(f"/c/{conversation}/")
            with lock:
                if response.status_code == 200:
                    page_times.append(elapsed)
                else:
                    page_errors.append(f"HTTP {response.status_code}")
            stop_probes.wait(rng.uniform(0.05, 0.15))

    def send(index: int) -> None:
        _person, tab, conversation = tabs[index]
        time.sleep(random.Random(f"inflight-{index}").uniform(0, 0.5))
        reply = tab.converse(
            conversation,
            f"in flight {index}: a question for a slow model",
            how=WAIT,
            deadline=mode.in_flight_latency + 60,
        )
        with lock:
            replies.append(reply)

    pids = {"web": stack.web_pids, "worker": [stack.process("worker").pid]}
    with MemorySampler(pids) as idle:
        time.sleep(0.3)
    meter = CpuMeter(stack)
    before = meter.snapshot()
    started = time.monotonic()
    with MemorySampler(pids) as memory:
        probes = [
            threading.Thread(target=probe, args=(i,), daemon=True) for i in range(mode.probes)
        ]
        for thread in probes:
            thread.start()
        run_concurrently(count, send)
        stop_probes.set()
        for thread in probes:
            thread.join()
    wall = time.monotonic() - started
    cpu = meter.cores(before, meter.snapshot())
    stack.check_alive()
    timings = stack.simulator_timings()
    return {
        "conversations": count,
        "latency": mode.in_flight_latency,
        "arrived": sum(1 for r in replies if r.ok),
        "failures": _failures(replies),
        "how": sorted({r.how for r in replies if r.how}),
        "max_at_upstream": _max_overlap(timings.values()),
        "wall_seconds": wall,
        "end_to_end": summary([r.visible - r.sent for r in replies if r.ok]),
        "page": summary(page_times),
        "page_errors": page_errors,
        "cpu": cpu,
        "memory": {
            "web_peak_mb": memory.peak_kb["web"] / 1024,
            "worker_peak_mb": memory.peak_kb["worker"] / 1024,
            "web_idle_mb": idle.peak_kb["web"] / 1024,
            "worker_idle_mb": idle.peak_kb["worker"] / 1024,
            "samples": memory.samples,
        },
    }


def _max_overlap(timings) -> int:
    """The most calls the upstream was serving at one moment."""
    edges = sorted([(t["received"], 1) for t in timings] + [(t["answered"], -1) for t in timings])
    current = peak = 0
    for _at, step in edges:
        current += step
        peak = max(peak, current)
    return peak


# --- 3. pages ---

USER_TEXT = "Could you explain how the reply is produced, step by step, with an example? ({i})"
ASSISTANT_TEXT = (
    "Here is a **short** answer ({i}), written by the simulated model:\n\n"
    "1. The message is stored and a completion is queued.\n"
    "2. A worker calls the upstream and writes the reply as it arrives.\n"
    "3. The page shows each piece as soon as it is saved.\n\n"
    "Use `make bench` to measure it; the table lists p50, p95 and p99 for every figure, "
    "and a [link](https://example.com/docs) to the docs."
)


def seed_conversation(owner, size: int):
    """A conversation of `size` messages (user and assistant in turn, each reply with its
    completion), written in bulk."""
    from django.utils import timezone

    from conversations import services
    from conversations.models import Completion, Message
    from conversations.rendering import render_markdown_for_storage

    conversation = services.conversation_create(owner=owner, title=f"{size} messages")
    turns = size // 2
    now = timezone.now()
    users = Message.objects.bulk_create(
        [
            Message(
                conversation=conversation,
                role=Message.Role.USER,
                content=USER_TEXT.format(i=t),
                position=2 * t,
                created_at=now,
            )
            for t in range(turns)
        ]
    )
    completions = Completion.objects.bulk_create(
        [
            Completion(
                conversation=conversation,
                user=owner,
                request_message=message,
                model=conversation.model,
                status=Completion.Status.SUCCEEDED,
                prompt_tokens=100,
                completion_tokens=80,
                total_tokens=180,
                queued_at=now,
                started_at=now,
                finished_at=now,
            )
            for message in users
        ]
    )
    Message.objects.bulk_create(
        [
            Message(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                content=ASSISTANT_TEXT.format(i=t),
                # As the worker saves a reply: with its sanitized HTML made once.
                html=render_markdown_for_storage(ASSISTANT_TEXT.format(i=t)),
                position=2 * t + 1,
                completion=completion,
                choice_index=0,
                finish_reason="stop",
                created_at=now,
            )
            for t, completion in enumerate(completions)
        ]
    )
    return conversation


def _query_count(user, path: str, *, htmx: bool = False) -> tuple[int, int]:
    """Queries and status of one request, made in this process with Django's test client."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    client.get(path)  # warm: session, caches
    headers = {"HX-Request": "true"} if htmx else {}
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path, headers=headers)
    return len(queries), response.status_code


def pages(stack: Stack, mode: Mode) -> dict[str, Any]:
    from conversations.models import Conversation

    [page_user] = make_users("bench-pages-", 1)
    [sidebar_user] = make_users("bench-sidebar-", 1)
    conversations = {size: seed_conversation(page_user, size) for size in mode.page_sizes}
    Conversation.objects.bulk_create(
        [
            Conversation(owner=sidebar_user, title=f"Conversation {i}", model="gpt-4o-mini")
            for i in range(mode.sidebar_size)
        ]
    )
    people = log_in(stack, [page_user, sidebar_user], parallel=2)
    browsers = {p.username: p.browser for p in people}
    targets = [
        (f"chat page, {size} messages", page_user, f"/c/{conversations[size].pk}/", False, size)
        for size in mode.page_sizes
    ]
    targets += [
        (f"chat home with the sidebar, {mode.sidebar_size} conversations",
         sidebar_user, "/", False, 0),
        (f"sidebar partial (htmx), {mode.sidebar_size} conversations",
         sidebar_user, "/conversations/?page=2", True, 0),
    ]  # fmt: skip
    rows = []
    for label, user, path, htmx, size in targets:
        browser = browsers[user.username]
        reps = mode.page_reps.get(size, 20)
        log(f"pages: {label} x {reps}")
        for _ in range(3):
            browser.get(path, htmx=htmx)
        times, sizes = [], []
        for _ in range(reps):
            elapsed, response = browser.get(path, htmx=htmx)
            if response.status_code != 200:
                raise RuntimeError(f"{path} answered {response.status_code}")
            times.append(elapsed)
            sizes.append(len(response.content))
        queries, status = _query_count(user, path, htmx=htmx)
        rows.append(
            {
                "what": label,
                "messages": size,
                "server": summary(times),
                "queries": queries,
                "status": status,
                "kb": sizes[-1] / 1024,
            }
        )
    chat_counts = {row["queries"] for row in rows if row["what"].startswith("chat page")}
    return {"rows": rows, "constant_queries": len(chat_counts) == 1}


# --- 4. reports ---

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
    from django.db import connection
    from django.utils import timezone

    from conversations import reports as usage
    from conversations.models import Completion, Conversation

    sizes = list(mode.report_sizes)
    note = ""
    if not stack.on_servers and max(sizes) > SQLITE_MAX_REPORT_ROWS:
        sizes = [s for s in sizes if s <= SQLITE_MAX_REPORT_ROWS]
        note = f"SQLite: rows loaded through the ORM, so at most {SQLITE_MAX_REPORT_ROWS:,}."
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
    [staff] = make_users("bench-staff-", 1, staff=True)
    [staff_person] = log_in(stack, [staff], parallel=1)
    end = timezone.localdate()
    start = end - timedelta(days=DAYS)
    probe_user = owners[7][0]
    # The chat phases' completions are in the range too; the report counts them as well.
    earlier = Completion.objects.count()
    loaded, rows = 0, []
    for size in sizes:
        log(f"reports: loading completions up to {size:,}")
        began = time.monotonic()
        if stack.on_servers:
            # In slices, so each statement's deferred foreign-key checks stay small.
            for first in range(loaded, size, 250_000):
                _load_completions_sql(first, min(size, first + 250_000) - 1)
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE conversations_completion")
        else:
            _load_completions_orm(loaded, size - 1, owners)
        load_seconds = time.monotonic() - began
        loaded = size
        reps = mode.report_reps.get(size, 5)
        log(f"reports: timing over {size:,} completions x {reps}")
        timed: dict[str, list[float]] = {"all_users": [], "by_model": [], "user": [], "page": []}
        calls = {
            "all_users": lambda: usage.all_users(start, end),
            "by_model": lambda: usage.all_users(start, end, by_model=True),
            "user": lambda: usage.user_drilldown(probe_user, start, end),
        }
        counted = sum(row["requests"] for row in calls["all_users"]())
        if counted != size + earlier:
            raise RuntimeError(f"the all-users report counted {counted} of {size + earlier}")
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
        rows.append(
            {
                "completions": size,
                "load_seconds": load_seconds,
                **{name: summary(values) for name, values in timed.items()},
            }
        )
    return {"rows": rows, "note": note, "users": REPORT_USERS, "days": DAYS + 1}
