"""The benchmark harness keeps working; its numbers are never asserted on."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_server

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


@pytest.mark.slow
@pytest.mark.postgresql
def test_harness_measures_the_host_wait_behind_a_blocked_revision() -> None:
    """On a server, the host-wait table gets a row with both waits and a verdict, whatever they are."""
    require_server("postgresql")
    spec = importlib.util.spec_from_file_location("bench", HARNESS)
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = bench  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(bench)
        options = bench.parse_options(["--quick", "--sizes", "1", "--backends", "sqlite,postgresql"])
        rows = bench.host_wait_rows(options)
    finally:
        del sys.modules["bench"]
    assert len(rows) == 1  # SQLite has no table locks to wait on: no row
    backend, life, plain, ours, verdict = rows[0]
    assert backend == "postgresql"
    assert float(life) == bench.QUICK_BLOCKER_LIFE
    assert float(plain) >= 0
    assert float(ours) >= 0
    assert verdict in {"ok", "MISSED"}
