"""The benchmark harness keeps working; its numbers are never asserted on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


@pytest.mark.slow
def test_harness_prints_every_table(tmp_path: Path) -> None:
    """A quick run on SQLite prints the four tables with a verdict on each ratio, whatever the speed."""
    out = subprocess.run(
        [sys.executable, str(HARNESS), "--quick", "--sizes", "1,3", "--backends", "sqlite"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    for title in ("No-op upgrade", "Full upgrade", "Command line", "Import cost"):
        assert title in out
    verdicts = [line for line in out.splitlines() if line.startswith("sqlite")]
    assert len(verdicts) == 6
    assert all(" ok" in line or "MISSED" in line for line in verdicts)
    assert "MISSED when it does not. The exit code is 0 either way" in out
    assert "This was a --quick run (few repeats)" in out
