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
        help="comma-separated phases to run (overhead,first_token,in_flight,pages,reports); "
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
    # Only a full run may replace docs/benchmarks.md.
    output = args.output or (
        ROOT / "docs" / "benchmarks.md"
        if args.mode == "full"
        else Path(tempfile.gettempdir()) / "chatsite-bench-smoke.md"
    )
    kind = args.stack or ("auto" if args.mode == "full" else "embedded")
    background = busy_cores(3.0 if args.mode == "full" else 0.5)
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="chatsite-bench-"))
    stack = Stack(
        workdir=workdir,
        kind=kind,
        web_processes=args.web_processes,
        worker_concurrency=args.worker_concurrency,
    )
    for name in SCRUBBED_ENV:
        os.environ.pop(name, None)
    ok = False
    try:
        os.environ.update(stack.prepare())
        print(
            f"[bench] {args.mode} mode on {stack.backend}"
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
        results = run(stack, args.mode, args.only.split(",") if args.only else None, args.wait)
        duration = time.monotonic() - began
        if args.only:
            print(json.dumps(results, indent=1, default=str))
            ok = True
            return 0
        meta = describe(stack, args, duration)
        meta["background"] = background
        from . import report

        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(report.markdown(results, meta) + "\n")
        print(report.console(results))
        print(f"\n[bench] wrote {output} in {duration:.0f} s", flush=True)
        ok = True
        if args.mode == "smoke":
            broken = failures(results)
            if broken:
                print(f"[bench] smoke: {len(broken)} replies failed: {broken[:5]}", flush=True)
                return 1
        return 0
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


PHASES = ("overhead", "first_token", "in_flight", "pages", "reports")


def run(stack: Stack, mode_name: str, only: list[str] | None = None, wait: str = "page") -> dict:
    from dataclasses import replace

    from . import common
    from . import people as crowd
    from .phases import in_flight, overhead, pages, reports

    mode = replace(common.FULL if mode_name == "full" else common.SMOKE, wait=wait)
    chats = [p for p in PHASES[:3] if only is None or p in only]
    people = []
    if chats:
        people_count = max(*mode.levels, *mode.ttft_levels)
        users = crowd.make_users("bench-user-", people_count)
        common.log(f"logging {people_count} people in through the login form")
        people = crowd.log_in(stack, users, parallel=2 * stack.web_processes)
        crowd.open_chats(people, 1)
        common.log("warm-up: one message per person (not measured)")
        stack.simulator_control(reset=True, latency=mode.latency, token_delay=0)
        crowd.conversation_loop(people, 1, (0.0, 0.5), "warm-up", how=mode.wait)
    results = {}
    for phase in PHASES:
        if only is None or phase in only:
            measure = {
                "overhead": overhead.overhead,
                "first_token": overhead.first_token,
                "in_flight": in_flight.in_flight,
                "pages": pages.pages,
                "reports": reports.reports,
            }[phase]
            results[phase] = (
                measure(stack, mode)
                if phase in ("pages", "reports")
                else measure(stack, mode, people)
            )
    return results


def failures(results: dict) -> list[str]:
    found = []
    for level in results["overhead"]["levels"] + results["first_token"]["levels"]:
        found += level["failures"]
    found += results["in_flight"]["failures"]
    return found


def describe(stack: Stack, args: argparse.Namespace, duration: float) -> dict:
    from . import common, targets

    mode = common.FULL if args.mode == "full" else common.SMOKE
    versions = targets.server_versions(stack.on_servers)
    database = versions["database"]
    if stack.on_servers:
        database += f" (database `chatsite_bench`, max_connections {versions['max_connections']})"
    command = "make bench" if args.mode == "full" else "make bench BENCH=smoke"
    return {
        "mode": args.mode,
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
