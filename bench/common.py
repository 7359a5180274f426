"""What every phase of a benchmark run shares: the two modes (full and smoke), the
statistics figures are summarised with, and the log line."""

from __future__ import annotations

import time
from dataclasses import dataclass

PASSWORD = "bench-password-1"


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
    long_rounds: int  # sends of each long reply (their web CPU is averaged)
    long_sizes: tuple[int, ...] = (1_000, 4_000)  # characters of each long reply
    long_readers: int = 10  # SSE connections watching each long reply
    long_seconds: float = 2.0  # how long the longest reply streams (one token rate for all)
    # How browsers follow a reply: "page" (as the pending partial says), "sse" or "poll".
    wait: str = "page"
    # Search of one's own chats: messages in all (a tenth of them one person's), and the
    # runs of each query kind.
    search_rows: int = 1_000_000
    search_reps: int = 30


FULL = Mode(
    name="full",
    # 20 people: the level the CPU-per-completion target is read at.
    levels=(1, 20, 50),
    rounds={1: 20, 20: 6, 50: 5},
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
    long_rounds=3,
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
    long_rounds=1,
    search_rows=4_000,
    search_reps=3,
)

# SQLite loads rows through the ORM: the large sizes would take most of the time budget.
SQLITE_MAX_REPORT_ROWS = 100_000
# The same for the search's messages (their FTS5 triggers index each row as it is inserted).
SQLITE_MAX_SEARCH_ROWS = 200_000


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
