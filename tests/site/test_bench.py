"""The benchmark's smoke mode runs end to end, so `make bench` cannot rot unnoticed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.worker


def test_smoke_benchmark_measures_every_figure(tmp_path):
    output = tmp_path / "benchmarks.md"
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
    page = output.read_text()
    for heading in (
        "## 1. Overhead",
        "## Time to first token",
        "## 2. In flight",
        "## 3. Pages",
        "## 4. Usage reports",
        "## 5. Memory",
        "## Machine and configuration",
    ):
        assert heading in page
    assert "| Replies arrived | 5 of 5 |" in page
    assert "| 1 | 3 | 0 |" in page  # one user, three sends, none failed
    assert "| 1,000 |" in page  # the report over a thousand completions
    assert "n/a" not in page  # every figure has samples
