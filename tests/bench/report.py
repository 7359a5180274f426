"""The benchmark's output: the console table and the Markdown page (docs/benchmarks.md),
with the machine, the configuration, the command and each target marked met or missed."""

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


def _cpu_table(cpu: dict[str, float], during: str, cores: str) -> str:
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


def _why(target: Target) -> str:
    return next((text for key, text in WHY.items() if key in target.name), "")


def _mark(target: Target) -> str:
    if target.met is None:
        return "not measured"
    return "met" if target.met else f"**missed** {target.miss}"


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    mode = meta["mode"]
    add("# Benchmarks\n")
    add(
        f"Written by `{meta['command']}` on {meta['date']} ({mode} mode, "
        f"{meta['duration']:.0f} s). Every figure below comes from that one run; "
        "rerun the command to refresh this page rather than editing it.\n"
    )
    add("Latencies are milliseconds, written p50 / p95 / p99.\n")

    add("## Targets\n")
    add("| Target | Limit | Measured | Result |")
    add("|---|---|---|---|")
    for target in targets(results):
        add(f"| {target.name} | {target.limit} | {target.measured} | {_mark(target)} |")
    missed = [t for t in targets(results) if t.met is False]
    if missed:
        add("\n### Why the missed targets are missed, and what would close them\n")
        seen = set()
        for target in missed:
            why = _why(target)
            if why and why not in seen:
                seen.add(why)
                add(f"- **{target.name}** ({target.miss}): {why}")
    add("")

    add("## Machine and configuration\n")
    m, cfg = meta["machine"], meta["config"]
    add("| | |")
    add("|---|---|")
    rows = [
        ("CPU", f"{m['cpu']}, {m['cores']} cores available"),
        ("Memory", m["ram"]),
        ("OS, Python", f"{m['os']}, Python {m['python']}"),
        (
            "Background load",
            f"{meta['background']:.2f} cores busy in the 3 s before the run (other jobs on "
            'the machine; their share during the run is in the CPU tables\' "other" row)',
        ),
        ("Database", cfg["database"]),
        ("Broker, live replies", f"{cfg['broker']}; {cfg['live']}"),
        ("Web", cfg["web"]),
        ("Worker", cfg["worker"]),
        ("Upstream", cfg["upstream"]),
        ("Load generator", cfg["load"]),
        ("Command", f"`{meta['command']}`"),
    ]
    for key, value in rows:
        add(f"| {key} | {value} |")
    add(
        "\nEverything runs on the same machine: the load generator, the simulator and the "
        "databases share the cores with the web and worker processes.\n"
    )

    overhead = results["overhead"]
    add("## 1. Overhead: send to reply visible, minus the upstream's own time\n")
    add(
        f"Upstream: the simulator with a fixed latency of {overhead['latency']} s, replies "
        "streamed. Each person has a chat open, sends, watches the reply until it is finished "
        f"(the page's own endpoints, followed by {', '.join(overhead['levels'][0]['how'])}), "
        f"then reads for {overhead['think'][0]}–{overhead['think'][1]} s before the next "
        "message. Overhead = (reply finished on the page − send) − (upstream answered − "
        "upstream received) for that call, matched by the response id. Baseline = the same "
        "upstream called directly, streamed, same concurrency, same run.\n"
    )
    add(
        "| Users | Sends | Failed | Overhead | Baseline (direct) overhead | "
        "Send to reply visible | Upstream's own time |"
    )
    add("|---|---|---|---|---|---|---|")
    for level in overhead["levels"]:
        add(
            f"| {level['users']} | {level['sends']} | {len(level['failures'])} | "
            f"{lat(level['overhead'])} | {lat(level['baseline'])} | "
            f"{lat(level['end_to_end'])} | {lat(level['upstream'])} |"
        )
    for level in overhead["levels"]:
        if level["failures"]:
            reasons = "; ".join(sorted(set(level["failures"]))[:5])
            add(f"\nFailed sends at {level['users']} users: {reasons}")
    top = overhead["levels"][-1]
    add(f"\nWhere the time goes at {top['users']} users (p50 / p95 / p99, one machine's clock):\n")
    add("| Step | Time |")
    add("|---|---|")
    for step, stats in top["breakdown"].items():
        add(f"| {step} | {lat(stats)} |")
    add("")
    add(_cpu_table(top["cpu"], f"the {top['users']}-user level", meta["machine"]["cores"]))

    ttft = results["first_token"]
    add("## Time to first token (streaming)\n")
    add(
        f"Upstream latency {ttft['latency']} s, then one token every {ttft['token_delay']} s. "
        "Overhead = (first piece of the reply on the page − send) − (upstream's first token − "
        "upstream received). Baseline = the same, calling the upstream directly.\n"
    )
    add("| Streams | Sends | Failed | First-token overhead | Baseline | On the page | Upstream |")
    add("|---|---|---|---|---|---|---|")
    for level in ttft["levels"]:
        add(
            f"| {level['streams']} | {level['sends']} | {len(level['failures'])} | "
            f"{lat(level['ttft_overhead'])} | {lat(level['baseline'])} | "
            f"{lat(level['ttft_browser'])} | {lat(level['ttft_upstream'])} |"
        )
    add("")

    flight = results["in_flight"]
    add("## 2. In flight: conversations waiting on a slow upstream at once\n")
    add(
        f"{flight['conversations']} conversations send within half a second; the upstream "
        f"takes {flight['latency']} s per reply. Meanwhile people reload chat pages of those "
        "conversations (pending replies included) and the page time is recorded.\n"
    )
    add("| | |")
    add("|---|---|")
    add(f"| Replies arrived | {flight['arrived']} of {flight['conversations']} |")
    add(f"| Failed | {len(flight['failures'])} |")
    add(f"| Most calls at the upstream at one moment | {flight['max_at_upstream']} |")
    add(f"| Send to reply visible | {lat(flight['end_to_end'])} |")
    add(f"| Chat page during the load ({flight['page']['n']} loads) | {lat(flight['page'])} |")
    add(f"| Page errors | {len(flight['page_errors'])} |")
    add(f"| Phase wall time | {flight['wall_seconds']:.1f} s |")
    add("")
    add(_cpu_table(flight["cpu"], "this phase", meta["machine"]["cores"]))
    if flight["failures"]:
        add("\nFailures (first five): " + "; ".join(sorted(set(flight["failures"]))[:5]))
    add("")

    pages = results["pages"]
    add("## 3. Pages: server time and queries\n")
    add(
        "Server time: the GET timed over HTTP on loopback by one client, the stack otherwise "
        "idle, after three warm-up loads. Queries: the same request made in-process with "
        "Django's test client under `CaptureQueriesContext` (session and user included).\n"
    )
    add("| Page | Server time | Queries | Size |")
    add("|---|---|---|---|")
    for row in pages["rows"]:
        add(f"| {row['what']} | {lat(row['server'])} | {row['queries']} | {row['kb']:.0f} KiB |")
    add("")

    reports = results["reports"]
    add("## 4. Usage reports\n")
    add(
        f"Completions spread over {reports['users']} users, 4 models and "
        f"{reports['days']} days; each report covers the whole range. Functions are timed "
        "in-process (`conversations.reports`); the page is `/usage/all/` over HTTP as staff. "
        + (
            "Rows are loaded with `INSERT … SELECT generate_series`, then `VACUUM ANALYZE` "
            "(a table autovacuum keeps up with)."
            if meta["config"]["database"].startswith("PostgreSQL")
            else ""
        )
        + (f" {reports['note']}" if reports["note"] else "")
        + "\n"
    )
    add("| Completions | All users | All users by model | One user (drill-down) | /usage/all/ |")
    add("|---|---|---|---|---|")
    for row in reports["rows"]:
        add(
            f"| {row['completions']:,} | {lat(row['all_users'])} | {lat(row['by_model'])} | "
            f"{lat(row['user'])} | {lat(row['page'])} |"
        )
    add("")

    memory = flight["memory"]
    add("## 5. Memory: peak RSS during the in-flight phase\n")
    add(
        "Resident set size of each process tree (the process and all its children), read "
        f"from /proc every 0.1 s ({memory['samples']} samples).\n"
    )
    add("| Processes | Idle before | Peak during |")
    add("|---|---|---|")
    add(f"| Web ({cfg['web']}) | {memory['web_idle_mb']:.0f} MB | {memory['web_peak_mb']:.0f} MB |")
    add(
        f"| Worker ({cfg['worker']}) | {memory['worker_idle_mb']:.0f} MB | "
        f"{memory['worker_peak_mb']:.0f} MB |"
    )
    add("")
    if meta.get("method"):
        add("## How it is measured\n")
        for line in meta["method"]:
            add(f"- {line}")
        add("")
    return "\n".join(out)


def console(results: dict[str, Any]) -> str:
    """The short table printed at the end of a run."""
    lines = ["", "figure                                   p50 / p95 / p99 (ms)  other"]
    lines.append("-" * 78)
    for level in results["overhead"]["levels"]:
        lines.append(
            f"overhead, {level['users']:>3} users{'':17}{lat(level['overhead']):<22}"
            f"baseline {lat(level['baseline'])}, failed {len(level['failures'])}"
        )
    for level in results["first_token"]["levels"]:
        lines.append(
            f"first-token overhead, {level['streams']:>3} streams{'':3}"
            f"{lat(level['ttft_overhead']):<22}failed {len(level['failures'])}"
        )
    flight = results["in_flight"]
    lines.append(
        f"in flight: chat page during load{'':8}{lat(flight['page']):<22}"
        f"{flight['arrived']}/{flight['conversations']} arrived, "
        f"{len(flight['failures'])} failed"
    )
    for row in results["pages"]["rows"]:
        lines.append(f"{row['what'][:40]:<41}{lat(row['server']):<22}{row['queries']} queries")
    for row in results["reports"]["rows"]:
        lines.append(
            f"all-users report, {row['completions']:>9,} rows{'':6}{lat(row['all_users']):<22}"
            f"user {lat(row['user'])}"
        )
    memory = flight["memory"]
    lines.append(
        f"peak RSS in flight: web {memory['web_peak_mb']:.0f} MB, "
        f"worker {memory['worker_peak_mb']:.0f} MB"
    )
    lines.append("")
    for target in targets(results):
        lines.append(f"target {target.name} ({target.limit}): {target.measured} -> {_mark(target)}")
    return "\n".join(lines)
