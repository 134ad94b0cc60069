"""What scripts/run_matrix.py hands pytest (``make test-lowest``), without creating an environment."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from run_matrix import NOT_IN_LOWEST, lowest_pytest_args

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ([], ["-m", f"not ({NOT_IN_LOWEST})"]),
        (["-n", "auto", "-x"], ["-n", "auto", "-x", "-m", f"not ({NOT_IN_LOWEST})"]),
        (["-m", "not slow", "-q"], ["-q", "-m", f"(not slow) and not ({NOT_IN_LOWEST})"]),
        (["-mpostgresql"], ["-m", f"(postgresql) and not ({NOT_IN_LOWEST})"]),
        (["-m", "sqlite", "-m", "slow"], ["-m", f"(sqlite) and (slow) and not ({NOT_IN_LOWEST})"]),
    ],
)
def test_lowest_run_deselects_what_the_versions_cannot_change(given: list[str], expected: list[str]) -> None:
    """The docs, packaging, makefile and lint tests are left out, and a caller's -m still applies."""
    assert lowest_pytest_args(given) == expected


def test_the_deselected_markers_are_registered() -> None:
    """Every marker the lowest run deselects is one pytest knows (--strict-markers keeps it honest)."""
    markers = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]["markers"]
    registered = {marker.split(":", 1)[0] for marker in markers}
    assert set(NOT_IN_LOWEST.split(" or ")) <= registered
