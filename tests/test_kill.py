"""A replica killed half-way through a migration: its lock dies with it and the next call finishes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import Database, add_revision
from support import (
    RELEASE_VARIABLE,
    STARTED_VARIABLE,
    Workers,
    hold_body,
    lock_is_free,
    record_body,
    runs,
    version_rows,
    wait_for,
)

from granite_assets.migrations import _runner

pytestmark = pytest.mark.slow


def test_next_call_completes_after_the_lock_holder_is_killed(
    database: Database, environment_copy: Path, tmp_path: Path
) -> None:
    """A process killed by SIGKILL inside a slow revision leaves no stale lock, and the next call finishes."""
    log = tmp_path / "runs.log"
    add_revision(
        environment_copy,
        "0002",
        "0001",
        'op.create_table("granite_assets_before", sa.Column("id", sa.Integer, primary_key=True))\n'
        + record_body(log, "0002"),
        message="completes before the kill",
    )
    add_revision(
        environment_copy,
        "0003",
        "0002",
        hold_body()
        + '\nop.create_table("granite_assets_after", sa.Column("id", sa.Integer, primary_key=True))\n'
        + record_body(log, "0003"),
        message="killed half-way",
    )
    started = tmp_path / "started"
    hold = {STARTED_VARIABLE: str(started), RELEASE_VARIABLE: str(tmp_path / "never")}
    with Workers(1, environment_copy, 60, tmp_path / "victim", env=hold) as victim:
        victim.start(database.url_string)
        wait_for(started)
        assert not lock_is_free(database)  # the victim holds the lock, inside revision 0003
        os.kill(victim.processes[0].pid, signal.SIGKILL)
        assert victim.processes[0].wait() == -signal.SIGKILL

    if database.backend.name == "sqlite":
        # One transaction per call: the dead process's whole upgrade is in a hot journal, which
        # the next connection rolls back; nothing of it counts.
        assert Path(f"{database.url.database}-journal").exists()
    else:
        # One transaction per revision: 0002 was committed, 0003 never was.
        assert version_rows(database) == ["0002"]
        assert "granite_assets_after" not in database.table_names()

    assert _runner.upgrade(environment_copy, database.url_string, 60) == "0003"
    assert version_rows(database) == ["0003"]
    assert {"granite_assets_before", "granite_assets_after"} <= database.table_names()
    assert lock_is_free(database)
    name = str(database.url.database)
    # The killed call's 0002 counts on SQLite only, where it was rolled back and applied again.
    again = 2 if database.backend.name == "sqlite" else 1
    assert runs(log) == {(name, "0002"): again, (name, "0003"): 1}
