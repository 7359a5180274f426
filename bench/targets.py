"""The benchmark's targets, each marked met or missed with why; the figures' formats; and
what the page says of the machine and the servers."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import subprocess
from dataclasses import dataclass
from typing import Any


@dataclass
class Target:
    name: str
    limit: str
    measured: str
    met: bool | None  # None: not measured in this mode
    miss: str = ""  # by how much, when missed


def _ms(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"


def lat(stats: dict[str, float]) -> str:
    """p50 / p95 / p99 in ms."""
    return f"{_ms(stats['p50'])} / {_ms(stats['p95'])} / {_ms(stats['p99'])}"


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                cpu,
            )
    except OSError:
        pass
    ram = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
            ram = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        pass
    cores = str(os.cpu_count())
    with contextlib.suppress(AttributeError):
        cores = str(len(os.sched_getaffinity(0)))
    return {
        "cpu": cpu,
        "cores": cores,
        "ram": ram,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def server_versions(on_servers: bool) -> dict[str, str]:
    from django.db import connection

    versions = {}
    with connection.cursor() as cursor:
        if on_servers:
            cursor.execute("SHOW server_version")
            versions["database"] = f"PostgreSQL {cursor.fetchone()[0]}"
            cursor.execute("SHOW max_connections")
            versions["max_connections"] = cursor.fetchone()[0]
        else:
            cursor.execute("SELECT sqlite_version()")
            versions["database"] = f"SQLite {cursor.fetchone()[0]}"
    if on_servers:
        try:
            out = subprocess.run(
                ["redis-cli", "-h", "127.0.0.1", "info", "server"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout
            version = next(
                (line.split(":", 1)[1].strip() for line in out.splitlines()
                 if line.startswith("redis_version")), "?"
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            version = "?"
        versions["broker"] = f"Redis {version}"
    else:
        versions["broker"] = "Celery filesystem broker (embedded default)"
    return versions


def _level(levels: list[dict], key: str, value: int) -> dict | None:
    return next((level for level in levels if level[key] == value), None)


def _check(name: str, limit: float, value: float, unit: str, text: str) -> Target:
    if value is None or math.isnan(value):
        return Target(name, text, "n/a", None)
    met = value < limit
    miss = "" if met else f"by {value - limit:,.0f} {unit} ({value / limit:.1f}x the limit)"
    return Target(name, text, f"{value:,.0f} {unit}", met, miss)


def targets(results: dict[str, Any]) -> list[Target]:
    found: list[Target] = []
    levels = results["overhead"]["levels"]
    top = _level(levels, "users", 50)
    if top:
        found.append(_check("Overhead p50, 50 users", 50, top["overhead"]["p50"], "ms", "< 50 ms"))
        found.append(
            _check("Overhead p95, 50 users", 150, top["overhead"]["p95"], "ms", "< 150 ms")
        )
    flight = results["in_flight"]
    if flight["conversations"] >= 200:
        failed = len(flight["failures"])
        found.append(
            Target(
                f"{flight['conversations']} in flight: all arrive, none fail",
                "0 failures",
                f"{flight['arrived']} arrived, {failed} failed",
                failed == 0 and flight["arrived"] == flight["conversations"],
                "" if failed == 0 else f"{failed} of {flight['conversations']} failed",
            )
        )
        found.append(
            _check("Chat page p95 during the load", 100, flight["page"]["p95"], "ms", "< 100 ms")
        )
        found.append(
            _check(
                "Worker peak RSS during the load",
                1024,
                flight["memory"]["worker_peak_mb"],
                "MB",
                "< 1 GB",
            )
        )
    page_rows = results["pages"]["rows"]
    at200 = next((row for row in page_rows if row["messages"] == 200), None)
    if at200:
        found.append(
            _check(
                "Chat page, 200 messages (median server time)",
                50,
                at200["server"]["p50"],
                "ms",
                "< 50 ms",
            )
        )
    counts = [str(row["queries"]) for row in page_rows if row["what"].startswith("chat page")]
    found.append(
        Target(
            "Chat page query count constant in the message count",
            "constant",
            " / ".join(counts),
            results["pages"]["constant_queries"],
            "" if results["pages"]["constant_queries"] else "grows with the messages",
        )
    )
    million = next(
        (row for row in results["reports"]["rows"] if row["completions"] == 1_000_000), None
    )
    if million:
        found.append(
            _check(
                "All-users report, 1,000,000 completions (p95)",
                1000,
                million["all_users"]["p95"],
                "ms",
                "< 1 s",
            )
        )
    return found


def cpu_table(cpu: dict[str, float], during: str, cores: str) -> str:
    rows = [
        f"CPU during {during} (average cores busy, of {cores}):\n",
        "| Part | Cores |",
        "|---|---|",
    ]
    for name, value in cpu.items():
        if name != "machine":
            rows.append(f"| {name} | {value:.2f} |")
    rows.append(f"| **whole machine** | **{cpu['machine']:.2f}** |")
    return "\n".join(rows) + "\n"


# Why a target is missed and what would close it: the findings behind each figure,
# shown under the table only when that run misses the target.


WHY = {
    "Overhead": (
        "CPU, not waiting: at 50 people the 2 cores are saturated (see the CPU table under "
        "figure 1; the load generator, simulator, PostgreSQL and Redis share them), so every "
        "step queues behind the others, while for one person the overhead is a few tens of "
        "milliseconds. Per reply the path spends Python time in the send (session, lock, "
        "history, two inserts, budget reservation, broker publish), the worker (claim, "
        "Redis entries every 20 ms, the save with its sanitized HTML) and the web process (the "
        "event stream re-renders the growing reply at most every 100 ms, then renders the "
        "ended reply into the `done` event). What would close it: more cores or a second "
        "host for the load generator and simulator; send the growing text as escaped "
        "deltas instead of re-rendered Markdown (one render at the end); more than one "
        "worker process, so the Python work of many streams is not held to one core."
    ),
    "in flight": (
        "A reply that is not visible in time counts as failed: the send, the worker's save "
        "and the `done` render of 200 replies all land in the same second on 2 cores "
        "(see the CPU table under figure 2). What would close it: the CPU savings listed "
        "for the overhead, and more than one worker process so saves run in parallel."
    ),
    "Chat page p95": (
        "Pages queue behind the burst of 200 sends at the start and 200 finished replies "
        "at the end of the phase, all in Python on 2 cores shared with PostgreSQL, Redis, "
        "the simulator and the load generator; the median page stays fast. What would "
        "close it: the CPU savings listed for the overhead, and a web process (or host) "
        "for pages apart from the ones holding reply streams."
    ),
    "Chat page, 200": (
        "Replies are stored with their sanitized HTML, so the page no longer renders "
        "Markdown; what remains is the template (every message, every choice and its "
        "forms) in Python. What would close it: show the latest turns with a 'load "
        "earlier' link, and cache the rendered transcript per conversation version."
    ),
    "All-users": "The aggregate scans every completion of the range; see figure 4.",
    "Worker": "Thread stacks and per-thread connections; see figure 5.",
}


def why(target: Target) -> str:
    return next((text for key, text in WHY.items() if key in target.name), "")


def mark(target: Target) -> str:
    if target.met is None:
        return "not measured"
    return "met" if target.met else f"**missed** {target.miss}"
