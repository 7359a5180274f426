"""2. Replies in flight (and 5. memory): hundreds of conversations waiting on a slow
upstream at once, people loading chat pages meanwhile, and the processes' memory."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from bench.common import Mode, log, summary
from bench.load import Browser, Reply, run_concurrently
from bench.meters import CpuMeter, MemorySampler
from bench.people import Person, failures, open_chats
from bench.stack import Stack


def in_flight(stack: Stack, mode: Mode, people: list[Person]) -> dict[str, Any]:
    load = _Load(mode, people, _tabs(mode, people))
    log(f"in flight: {mode.in_flight} conversations on a {mode.in_flight_latency}s upstream")
    stack.simulator_control(reset=True, latency=mode.in_flight_latency, token_delay=0)
    pids = {"web": stack.web_pids, "worker": [stack.process("worker").pid]}
    with MemorySampler(pids) as idle:
        time.sleep(0.3)
    meter = CpuMeter(stack)
    before = meter.snapshot()
    started = time.monotonic()
    with MemorySampler(pids) as memory:
        load.run()
    wall = time.monotonic() - started
    cpu = meter.cores(before, meter.snapshot())
    stack.check_alive()
    replies = load.replies
    return {
        "conversations": mode.in_flight,
        "latency": mode.in_flight_latency,
        "arrived": sum(1 for r in replies if r.ok),
        "failures": failures(replies),
        "how": sorted({r.how for r in replies if r.how}),
        "max_at_upstream": _max_overlap(stack.simulator_timings().values()),
        "wall_seconds": wall,
        "end_to_end": summary([r.visible - r.sent for r in replies if r.ok]),
        "page": summary(load.page_times),
        "page_errors": load.page_errors,
        "cpu": cpu,
        "memory": {
            "web_peak_mb": memory.peak_kb["web"] / 1024,
            "worker_peak_mb": memory.peak_kb["worker"] / 1024,
            "web_idle_mb": idle.peak_kb["web"] / 1024,
            "worker_idle_mb": idle.peak_kb["worker"] / 1024,
            "samples": memory.samples,
        },
    }


def _tabs(mode: Mode, people: list[Person]) -> list[tuple[Person, Browser, int]]:
    """One tab per conversation in flight, spread over the people, `tabs_per_user` each."""
    open_chats(people, 1 + mode.tabs_per_user)
    tabs = []
    for i in range(mode.in_flight):
        person = people[i % len(people)]
        conversation = person.conversations[1 + (i // len(people)) % mode.tabs_per_user]
        tabs.append((person, person.browser.tab(), conversation))
    if len({c for _p, _b, c in tabs}) != mode.in_flight:
        raise RuntimeError("not enough conversations for the in-flight phase")
    return tabs


class _Load:
    """Every tab sends at once (within half a second) while a few people reload chat pages
    of those conversations until the last reply has arrived."""

    def __init__(
        self, mode: Mode, people: list[Person], tabs: list[tuple[Person, Browser, int]]
    ) -> None:
        self.mode, self.people, self.tabs = mode, people, tabs
        self.replies: list[Reply] = []
        self.page_times: list[float] = []
        self.page_errors: list[str] = []
        self.lock = threading.Lock()
        self.stop_probes = threading.Event()

    def run(self) -> None:
        probes = [
            threading.Thread(target=self.probe, args=(i,), daemon=True)
            for i in range(self.mode.probes)
        ]
        for thread in probes:
            thread.start()
        run_concurrently(len(self.tabs), self.send)
        self.stop_probes.set()
        for thread in probes:
            thread.join()

    def probe(self, index: int) -> None:
        rng = random.Random(f"probe-{index}")
        browsers = {p.username: p.browser.tab() for p in self.people}
        while not self.stop_probes.is_set():
            person, _tab, conversation = rng.choice(self.tabs)
            elapsed, response = browsers[person.username].get(f"/c/{conversation}/")
            with self.lock:
                if response.status_code == 200:
                    self.page_times.append(elapsed)
                else:
                    self.page_errors.append(f"HTTP {response.status_code}")
            self.stop_probes.wait(rng.uniform(0.05, 0.15))

    def send(self, index: int) -> None:
        _person, tab, conversation = self.tabs[index]
        time.sleep(random.Random(f"inflight-{index}").uniform(0, 0.5))
        reply = tab.converse(
            conversation,
            f"in flight {index}: a question for a slow model",
            how=self.mode.wait,
            deadline=self.mode.in_flight_latency + 60,
        )
        with self.lock:
            self.replies.append(reply)


def _max_overlap(timings) -> int:
    """The most calls the upstream was serving at one moment."""
    edges = sorted([(t["received"], 1) for t in timings] + [(t["answered"], -1) for t in timings])
    current = peak = 0
    for _at, step in edges:
        current += step
        peak = max(peak, current)
    return peak
