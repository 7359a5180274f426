"""1. Overhead: what the app adds to a reply, against the upstream called directly, at 1,
20 and 50 people, with the CPU each part spends per completion; and the time to the first
token of a streamed reply."""

from __future__ import annotations

from typing import Any

from bench.common import Mode, log, summary
from bench.load import Reply
from bench.meters import CpuMeter
from bench.people import Person, conversation_loop, direct_calls, failures, line_up
from bench.stack import Stack


def overhead(stack: Stack, mode: Mode, people: list[Person]) -> dict[str, Any]:
    levels = []
    for users in mode.levels:
        rounds = mode.rounds[users]
        log(f"overhead: {users} user(s) x {rounds} messages, upstream latency {mode.latency}s")
        stack.simulator_control(reset=True, latency=mode.latency, token_delay=0)
        meter = CpuMeter(stack)
        before = meter.snapshot()
        replies = conversation_loop(
            people[:users], rounds, mode.think, f"overhead{users}", how=mode.wait
        )
        after = meter.snapshot()
        stack.check_alive()
        completions = sum(1 for r in replies if r.cid)
        matched = line_up(replies, stack.simulator_timings())
        overheads = [
            (r.visible - r.sent) - (t["answered"] - t["received"]) for r, _row, t in matched
        ]
        calls, baseline = _baseline(stack, mode, users, rounds)
        levels.append(
            {
                "users": users,
                "sends": len(replies),
                "completions": completions,
                "failures": failures(replies),
                "unmatched": len(replies) - len(matched) - len(failures(replies)),
                "how": sorted({r.how for r in replies if r.how}),
                "overhead": summary(overheads),
                "end_to_end": summary([r.visible - r.sent for r, _row, _t in matched]),
                "upstream": summary([t["answered"] - t["received"] for _r, _row, t in matched]),
                "baseline": summary(baseline),
                "baseline_failures": [c.error for c in calls if c.error],
                "breakdown": _breakdown(matched),
                "cpu": meter.cores(before, after),
                "cpu_per_completion": meter.per_completion(before, after, completions),
            }
        )
    return {"latency": mode.latency, "think": mode.think, "levels": levels}


def _baseline(stack: Stack, mode: Mode, users: int, rounds: int) -> tuple[list, list[float]]:
    """The upstream called directly at the same concurrency: the calls, and each one's
    time beyond the upstream's own."""
    log(f"overhead baseline: the upstream called directly, {users} at once x {rounds}")
    stack.simulator_control(reset=True, latency=mode.latency, token_delay=0)
    calls = direct_calls(stack, users, rounds, "baseline")
    timings = stack.simulator_timings()
    baseline = [
        c.elapsed - (timings[c.response_id]["answered"] - timings[c.response_id]["received"])
        for c in calls
        if not c.error and c.response_id in timings
    ]
    return calls, baseline


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


def first_token(stack: Stack, mode: Mode, people: list[Person]) -> dict[str, Any]:
    levels = []
    for streams in mode.ttft_levels:
        rounds = mode.ttft_rounds[streams]
        log(f"first token: {streams} stream(s) x {rounds}, token delay {mode.token_delay}s")
        stack.simulator_control(reset=True, latency=mode.ttft_latency, token_delay=mode.token_delay)
        replies = conversation_loop(
            people[:streams], rounds, mode.think, f"ttft{streams}", how=mode.wait
        )
        stack.check_alive()
        matched = [
            (r, t) for r, _row, t in line_up(replies, stack.simulator_timings())
            if r.first_text is not None and t.get("first_token")
        ]  # fmt: skip
        app = [(r.first_text - r.sent) - (t["first_token"] - t["received"]) for r, t in matched]

        stack.simulator_control(reset=True, latency=mode.ttft_latency, token_delay=mode.token_delay)
        calls = direct_calls(stack, streams, rounds, "ttft baseline")
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
                "failures": failures(replies),
                "how": sorted({r.how for r in replies if r.how}),
                "ttft_overhead": summary(app),
                "ttft_browser": summary([r.first_text - r.sent for r, _t in matched]),
                "ttft_upstream": summary([t["first_token"] - t["received"] for _r, t in matched]),
                "baseline": summary(baseline),
            }
        )
    return {"latency": mode.ttft_latency, "token_delay": mode.token_delay, "levels": levels}
