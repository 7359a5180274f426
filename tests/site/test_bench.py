"""The benchmark's smoke mode runs end to end, so `make bench` cannot rot unnoticed."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from bench.phases.long_replies import long_text
from tests.support import ROOT

pytestmark = pytest.mark.worker

OLD_ROW = "| 2026-01-01 00:00 UTC | full | postgresql+redis | 80 / 90 ms | an earlier run |"
NUMBER = r"[\d,]+(?:\.\d)?"


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> str:
    """The page one smoke run writes over a page from an earlier run."""
    output = tmp_path_factory.mktemp("bench") / "benchmarks.md"
    output.write_text(f"# Benchmarks\n\n## History\n\n| Date | Mode |\n|---|---|\n{OLD_ROW}\n")
    # The run starts its own stack (embedded default) with its own settings.
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--mode", "smoke", "--output", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return output.read_text()


def test_smoke_benchmark_measures_every_figure(page):
    for heading in (
        "## 1. Overhead",
        "## Time to first token",
        "## 2. In flight",
        "## 3. Pages",
        "## 4. Usage reports",
        "## 5. Memory",
        "## 6. Long replies",
        "## 8. Search your own chats",
        "## Machine and configuration",
        "## History",
    ):
        assert heading in page
    assert "| Replies arrived | 5 of 5 |" in page
    assert "| 1 | 3 | 0 |" in page  # one user, three sends, none failed
    assert "| 1,000 |" in page  # the report over a thousand completions
    assert "n/a" not in page  # every figure has samples


def test_it_reports_cpu_per_completion_at_each_level(page):
    # Web and worker apart; SQLite runs inside them in the embedded stack.
    for users, sends in ((1, 3), (2, 4)):
        assert re.search(
            rf"\| {users} \| {sends} \| {NUMBER} \| {NUMBER} \| embedded \(SQLite\) \| "
            rf"not used \| \*\*{NUMBER}\*\* \(web \+ worker\) \|",
            page,
        ), f"no CPU-per-completion row for {users} user(s)"


def test_it_reports_the_machine_speed(page):
    speed = r"\| Machine speed \| pure-Python loop \d+ ms, SHA-256 of 128 MiB \d+ ms"
    assert re.search(speed, page)


def test_it_reports_web_cpu_for_both_long_replies(page):
    for size in (1_000, 4_000):
        chars = f"{len(long_text(size)):,}"
        assert re.search(
            rf"\| {chars} characters \| {NUMBER} s \| {NUMBER} ms \| {NUMBER} ms \| \d+ \| "
            rf"{NUMBER} KiB \| 0 \| yes \|",
            page,
        ), f"no long-reply row for {chars} characters"
    assert re.search(r"Web CPU, [\d,]+ / [\d,]+ characters: \*\*\d+\.\dx\*\*", page)
    target = r"\| Web CPU, [\d,]+ / [\d,]+-character reply .* \| (met|\*\*missed\*\*)"
    assert re.search(target, page)


def test_it_keeps_the_history_and_adds_this_run_below(page):
    history = page[page.index("## History") :]
    this_run = re.search(
        rf"\| \d{{4}}-\d\d-\d\d \d\d:\d\d \S+ \| smoke \| sqlite\+filesystem \| \d+ / \d+ ms \| "
        rf"{NUMBER} ms \| — \| — \| — \| {NUMBER} ms \| 0 of 5 \| \d+ MB \|",
        history,
    )
    assert this_run, history
    assert OLD_ROW in history[: this_run.start()]
