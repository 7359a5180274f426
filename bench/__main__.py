"""Run the benchmark: `python -m bench --mode full|smoke [--output PATH]`.

Starts the stack, runs every phase, stops every process (also on failure), prints the
table and writes the Markdown page. Exits 0 when the run completed; in smoke mode also
only when every reply arrived, so a broken path fails `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import common
from .stack import ROOT, SCRUBBED_ENV, Stack

# Two web processes keep both cores busy with pages; the worker's threads mostly wait on the
# upstream, so one per reply in flight (with headroom) costs little memory and no CPU.
WEB_PROCESSES = 2
WORKER_CONCURRENCY = 256


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--mode", choices=("full", "smoke"), default="full")
    parser.add_argument(
        "--output",
        type=Path,
        help="Markdown to write (default: docs/benchmarks.md in full mode, a temp file in smoke)",
    )
    parser.add_argument(
        "--stack",
        choices=("auto", "server", "embedded"),
        help="PostgreSQL+Redis (server), SQLite+filesystem broker (embedded), or server when "
        "both answer on 127.0.0.1 (auto; the default in full mode; smoke defaults to embedded)",
    )
    parser.add_argument("--web-processes", type=int, default=WEB_PROCESSES)
    parser.add_argument("--worker-concurrency", type=int, default=WORKER_CONCURRENCY)
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    parser.add_argument(
        "--only",
        help="comma-separated phases to run (overhead,first_token,in_flight,long_replies,pages,"
        "reports,api,search); "
        "prints their figures as JSON instead of writing the page (for tuning)",
    )
    parser.add_argument(
        "--wait",
        choices=("page", "sse", "poll"),
        default="page",
        help="how a browser follows its reply: as the page's partial says (default), or forced",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    output = output_path(args)
    background_seconds = 3.0 if args.mode == "full" else 0.5
    background = busy_cores(background_seconds)
    from .meters import machine_speed

    # Timed before the stack starts, so runs on different days can be compared.
    speed = machine_speed()
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="chatsite-bench-"))
    stack = Stack(
        workdir=workdir,
        kind=args.stack or ("auto" if args.mode == "full" else "embedded"),
        web_processes=args.web_processes,
        worker_concurrency=args.worker_concurrency,
    )
    for name in SCRUBBED_ENV:
        os.environ.pop(name, None)
    ok = False
    try:
        start(stack, args.mode)
        results = run(stack, args.mode, args.only.split(",") if args.only else None, args.wait)
        if args.only:
            print(json.dumps(results, indent=1, default=str))
            ok = True
            return 0
        meta = describe(stack, args, time.monotonic() - began)
        meta |= {"background": background, "background_seconds": background_seconds}
        meta["speed"] = speed
        status = write(results, meta, output)
        ok = True
        return status
    except Exception:
        traceback.print_exc()
        for process in stack.processes:
            print(f"--- {process.name} log (tail) ---\n{process.log_tail()}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        cleanup(stack)
        if args.keep or not ok:
            print(f"[bench] work directory kept: {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def output_path(args: argparse.Namespace) -> Path:
    # Only a full run may replace docs/benchmarks.md.
    if args.output:
        return args.output
    if args.mode == "full":
        return ROOT / "docs" / "benchmarks.md"
    return Path(tempfile.gettempdir()) / "chatsite-bench-smoke.md"


def start(stack: Stack, mode: str) -> None:
    """Prepare the database and broker, set Django up in this process, start the stack."""
    os.environ.update(stack.prepare())
    print(
        f"[bench] {mode} mode on {stack.backend}"
        + (
            " (PostgreSQL and Redis answered on 127.0.0.1)"
            if stack.on_servers
            else " (the embedded default: PostgreSQL/Redis not used)"
        ),
        flush=True,
    )
    stack.migrate()
    import django

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    stack.start()


def write(results: dict, meta: dict, output: Path) -> int:
    """Write the page (keeping the history rows of the file it replaces) and print the
    table; in smoke mode, 1 when a reply failed."""
    from . import report

    meta["history"] = report.read_history(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report.markdown(results, meta) + "\n")
    print(report.console(results))
    print(f"\n[bench] wrote {output} in {meta['duration']:.0f} s", flush=True)
    if meta["mode"] == "smoke":
        broken = failures(results)
        if broken:
            print(f"[bench] smoke: {len(broken)} replies failed: {broken[:5]}", flush=True)
            return 1
    return 0


PHASES = (
    "overhead", "first_token", "in_flight", "long_replies", "pages", "reports", "api", "search",
)  # fmt: skip
# The phases whose people are logged in and warmed up first.
CHAT_PHASES = PHASES[:4]


def run(stack: Stack, mode_name: str, only: list[str] | None = None, wait: str = "page") -> dict:
    from dataclasses import replace

    from .phases import api, in_flight, long_replies, overhead, pages, reports, search

    mode = replace(common.FULL if mode_name == "full" else common.SMOKE, wait=wait)
    wanted = [p for p in PHASES if only is None or p in only]
    people = warm_up(stack, mode) if set(wanted) & set(CHAT_PHASES) else []
    measures = {
        "overhead": overhead.overhead,
        "first_token": overhead.first_token,
        "in_flight": in_flight.in_flight,
        "long_replies": long_replies.long_replies,
        "pages": pages.pages,
        "reports": reports.reports,
        "api": api.api,
        "search": search.search,
    }
    return {
        phase: measures[phase](stack, mode, people)
        if phase in CHAT_PHASES
        else measures[phase](stack, mode)
        for phase in wanted
    }


def warm_up(stack: Stack, mode: common.Mode) -> list:
    """Log the people of the chat phases in, open a chat each, one message each."""
    from . import people as crowd

    people_count = max(*mode.levels, *mode.ttft_levels)
    users = crowd.make_users("bench-user-", people_count)
    common.log(f"logging {people_count} people in through the login form")
    people = crowd.log_in(stack, users, parallel=2 * stack.web_processes)
    crowd.open_chats(people, 1)
    common.log("warm-up: one message per person (not measured)")
    stack.simulator_control(reset=True, latency=mode.latency, token_delay=0)
    crowd.conversation_loop(people, 1, (0.0, 0.5), "warm-up", how=mode.wait)
    return people


def failures(results: dict) -> list[str]:
    found = []
    for level in results["overhead"]["levels"] + results["first_token"]["levels"]:
        found += level["failures"]
    found += results["in_flight"]["failures"]
    for levels in results["api"]["targets"].values():
        for level in levels:
            found += level["failures"]
    for row in results["long_replies"]["rows"]:
        found += row["failures"]
        if not row["intact"]:
            found.append(f"long reply of {row['chars']:,} characters: saved text differs")
    return found


def describe(stack: Stack, args: argparse.Namespace, duration: float) -> dict:
    from . import targets

    mode = common.FULL if args.mode == "full" else common.SMOKE
    versions = targets.server_versions(stack.on_servers)
    database = versions["database"]
    if stack.on_servers:
        database += f" (database `chatsite_bench`, max_connections {versions['max_connections']})"
    command = "make bench" if args.mode == "full" else "make bench BENCH=smoke"
    return {
        "mode": args.mode,
        "backend": stack.backend,
        "command": command + f"  (python -m bench --mode {args.mode})",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "duration": duration,
        "machine": targets.machine(),
        "config": {
            "database": database,
            "broker": versions["broker"],
            "live": "Redis Streams (REDIS_URL)"
            if stack.on_servers
            else "database rows polled every 50 ms",
            "web": f"uvicorn (ASGI), {stack.web_processes} single-process instance(s), "
            "each person pinned to one",
            "worker": f"Celery, threads pool, concurrency {stack.worker_concurrency}",
            "upstream": "the project's simulator (`manage.py simulate_upstream`), streaming",
            "load": (
                "Python threads with `requests`, one session per person (and per tab); "
                f"{max(mode.levels)} people logged in through the login form"
            ),
        },
        "method": [
            "Reply visible: the load generator follows the reply exactly as the pending "
            "partial tells the page to (Server-Sent Events when it carries `sse-connect`, "
            "otherwise its poll every N ms until HTTP 286); the reply counts as visible when "
            "the page would show it finished (`done` event, or the 286 answer).",
            "Upstream time per call comes from the simulator's `/_stats` timings (received, "
            "first token, answered), matched to each page's completion by the response id.",
            "The in-flight phase spreads its conversations over the same people, "
            f"{mode.tabs_per_user} chats (tabs) each.",
            "Logins use the real password check (PBKDF2); users are created with one shared "
            "hash so seeding does not pay it 50 times.",
            "CPU per completion: utime + stime from /proc, a snapshot before and after each "
            "overhead level, divided by the completions the level made. Web and worker are "
            "their process trees; PostgreSQL is every `postgres` process on the machine (with "
            "the backends that ended meanwhile, which the postmaster inherits), Redis every "
            "`redis-server` (so another database's backends on the same server count too: "
            "run it on a quiet machine). /proc counts in ticks of 10 ms.",
            "Machine speed: a fixed workload timed before the stack starts, best of 5: a "
            "pure-Python loop (600,000 iterations) and SHA-256 over 128 MiB.",
        ],
    }


def busy_cores(seconds: float) -> float:
    """How many cores the machine keeps busy before the run starts (other jobs)."""
    from .meters import machine_busy_ticks

    start = machine_busy_ticks()
    time.sleep(seconds)
    return (machine_busy_ticks() - start) / os.sysconf("SC_CLK_TCK") / seconds


def cleanup(stack: Stack) -> None:
    """Drop the bench database (a million rows) once the run is over."""
    if not stack.on_servers:
        return
    try:
        from django.db import connections

        connections.close_all()
    except Exception:  # Django may not be set up if the run failed early
        pass
    try:
        import psycopg

        from .stack import PG_ADMIN_URL, PG_BENCH_DB

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")
    except Exception as error:
        print(f"[bench] could not drop the bench database: {error}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
