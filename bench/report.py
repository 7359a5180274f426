"""The benchmark's output: the console table and the Markdown page (docs/benchmarks.md),
with the machine, the configuration, the command and each target marked met or missed."""

from __future__ import annotations

from typing import Any

from .targets import cpu_table, lat, mark, targets, why


def _intro(results: dict[str, Any], meta: dict[str, Any]) -> list[str]:
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
    return out


def _targets(results: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    out: list[str] = []
    add = out.append
    add("## Targets\n")
    add("| Target | Limit | Measured | Result |")
    add("|---|---|---|---|")
    for target in targets(results):
        add(f"| {target.name} | {target.limit} | {target.measured} | {mark(target)} |")
    missed = [t for t in targets(results) if t.met is False]
    if missed:
        add("\n### Why the missed targets are missed, and what would close them\n")
        seen = set()
        for target in missed:
            reason = why(target)
            if reason and reason not in seen:
                seen.add(reason)
                add(f"- **{target.name}** ({target.miss}): {reason}")
    add("")
    return out


def _machine(results: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    out: list[str] = []
    add = out.append
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
    return out


def _overhead(results: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    out: list[str] = []
    add = out.append
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
    add(cpu_table(top["cpu"], f"the {top['users']}-user level", meta["machine"]["cores"]))
    return out


def _first_token(results: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    out: list[str] = []
    add = out.append
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
    return out


def _in_flight(results: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    out: list[str] = []
    add = out.append
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
    add(cpu_table(flight["cpu"], "this phase", meta["machine"]["cores"]))
    if flight["failures"]:
        add("\nFailures (first five): " + "; ".join(sorted(set(flight["failures"]))[:5]))
    add("")
    return out


def _pages(results: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    out: list[str] = []
    add = out.append
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
    return out


def _reports(results: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    out: list[str] = []
    add = out.append
    reports = results["reports"]
    add("## 4. Usage reports\n")
    add(
        f"Completions spread over {reports['users']} users, 4 models and "
        f"{reports['days']} days; each report covers the whole range. Functions are timed "
        "in-process (`conversations.usage.reports`); the page is `/usage/all/` over HTTP as staff. "
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
    return out


def _memory(results: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    out: list[str] = []
    add = out.append
    flight, cfg = results["in_flight"], meta["config"]
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
    return out


def _method(results: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    out: list[str] = []
    add = out.append
    if meta.get("method"):
        add("## How it is measured\n")
        for line in meta["method"]:
            add(f"- {line}")
        add("")
    return out


SECTIONS = (
    _intro, _targets, _machine, _overhead, _first_token, _in_flight, _pages, _reports, _memory,
    _method,
)  # fmt: skip


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    return "\n".join(line for section in SECTIONS for line in section(results, meta))


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
        lines.append(f"target {target.name} ({target.limit}): {target.measured} -> {mark(target)}")
    return "\n".join(lines)
