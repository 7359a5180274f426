"""Reading the processes of a run from /proc: resident memory of process trees and the CPU
time they use."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .stack import Stack


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # The command name may hold spaces; the fields after ")" do not.
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kb(pid: int, tree: dict[int, list[int]]) -> int:
    """Resident memory of a process and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += _rss_kb(current)
        todo.extend(tree.get(current, []))
    return total


class MemorySampler:
    """Samples the RSS of named process trees on a thread; keeps each tree's peak."""

    def __init__(self, pids: dict[str, list[int]], interval: float = 0.1) -> None:
        self.pids = pids
        self.interval = interval
        self.peak_kb = dict.fromkeys(pids, 0)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            tree = _children()
            for name, roots in self.pids.items():
                total = sum(tree_rss_kb(pid, tree) for pid in roots)
                self.peak_kb[name] = max(self.peak_kb[name], total)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# --- CPU ---

TICKS = os.sysconf("SC_CLK_TCK")
# Server processes measured by their command name (/proc/<pid>/comm) when the stack uses them.
SERVER_COMMANDS = {"postgresql": "postgres", "redis": "redis-server"}


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def _server_ticks(commands: set[str]) -> dict[str, int]:
    """utime + stime + cutime + cstime of every process whose command is one of `commands`,
    summed per command. The reaped children's share counts: PostgreSQL's backends end with
    their connection, and the postmaster that reaps them inherits their CPU time."""
    found = dict.fromkeys(commands, 0)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                head, tail = f.read().rsplit(")", 1)
            command = head.split("(", 1)[1]
            if command in found:
                fields = tail.split()
                found[command] += sum(int(v) for v in fields[11:15])
        except (OSError, IndexError, ValueError):
            continue
    return found


def tree_cpu_seconds(roots: list[int], tree: dict[int, list[int]]) -> float:
    """CPU seconds used by these processes and their children (`tree`: `_children()`)."""
    ticks, todo = 0, list(roots)
    while todo:
        pid = todo.pop()
        ticks += _cpu_ticks(pid)
        todo.extend(tree.get(pid, []))
    return ticks / TICKS


def machine_busy_ticks() -> int:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values) - values[3] - values[4]  # all but idle and iowait


class CpuMeter:
    """CPU seconds used by each part of the stack (process trees; PostgreSQL and Redis by
    command name, when the stack runs on them), this process (the load generator) and the
    whole machine, between two snapshots."""

    def __init__(self, stack: Stack) -> None:
        self.groups = {
            "web": stack.web_pids,
            "worker": [stack.process("worker").pid],
            "simulator": [stack.process("simulator").pid],
        }
        self.servers = dict(SERVER_COMMANDS) if stack.on_servers else {}

    def snapshot(self) -> dict[str, float]:
        tree = _children()
        taken = {}
        for name, roots in self.groups.items():
            taken[name] = tree_cpu_seconds(roots, tree)
        by_command = _server_ticks(set(self.servers.values()))
        for name, command in self.servers.items():
            taken[name] = by_command[command] / TICKS
        taken["load generator"] = _cpu_ticks(os.getpid()) / TICKS
        taken["machine"] = machine_busy_ticks() / TICKS
        taken["at"] = time.monotonic()
        return taken

    @staticmethod
    def cores(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """Average cores busy per part over the interval; the rest of the machine's busy
        time (the kernel, other jobs) as "other"."""
        wall = after["at"] - before["at"]
        used = {k: (after[k] - before[k]) / wall for k in before if k not in ("at", "machine")}
        used["other (kernel, other jobs)"] = max(
            0.0, (after["machine"] - before["machine"]) / wall - sum(used.values())
        )
        used["machine"] = (after["machine"] - before["machine"]) / wall
        return used

    @staticmethod
    def per_completion(
        before: dict[str, float], after: dict[str, float], completions: int
    ) -> dict[str, float]:
        """Milliseconds of CPU per completion for each part (web, worker, and PostgreSQL and
        Redis when measured), and web + worker + PostgreSQL as "total"."""
        parts = [p for p in ("web", "worker", "postgresql", "redis") if p in before]
        used = {p: (after[p] - before[p]) * 1000 / max(completions, 1) for p in parts}
        used["total"] = sum(used[p] for p in ("web", "worker", "postgresql") if p in used)
        return used


# --- the machine's own speed ---

PYTHON_LOOP_ITERATIONS = 600_000
SHA256_BUFFER = bytes(range(256)) * (4 << 12)  # 4 MiB
SHA256_PASSES = 32


def _python_loop() -> int:
    total, table = 0, {}
    for i in range(PYTHON_LOOP_ITERATIONS):
        total += i * i % 7
        table[i & 1023] = total
    return total


def _sha256() -> bytes:
    hasher = hashlib.sha256()
    for _ in range(SHA256_PASSES):
        hasher.update(SHA256_BUFFER)
    return hasher.digest()


def machine_speed(repeat: int = 5) -> dict[str, float]:
    """Milliseconds for a fixed CPU workload, best of `repeat` (lower is faster): a
    pure-Python loop (the interpreter's speed) and SHA-256 over 128 MiB (the core's)."""
    best = {}
    for name, work in (("python_ms", _python_loop), ("sha256_ms", _sha256)):
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
        best[name] = min(times) * 1000
    return best
