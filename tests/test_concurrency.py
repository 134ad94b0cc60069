"""Replicas that start together: many processes upgrade one fresh database at the same moment."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import Database, add_revision, fresh_database
from sqlalchemy import create_engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.pool import NullPool
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
from granite_assets.migrations._names import VERSION_TABLE

REPLICAS = 16
ROUNDS = 3
REVISIONS = ("0002", "0003", "0004")
LOCK_TIMEOUT = 120.0

pytestmark = pytest.mark.slow


@pytest.fixture
def recording_environment(environment_copy: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The bundled environment plus three revisions (DDL, DDL, DML) that log each run of their body."""
    log = tmp_path / "runs.log"
    add_revision(
        environment_copy,
        "0002",
        "0001",
        'op.create_table("granite_assets_race", sa.Column("id", sa.Integer, primary_key=True))\n'
        + record_body(log, "0002"),
        message="create race table",
    )
    add_revision(
        environment_copy,
        "0003",
        "0002",
        'op.add_column("granite_assets_race", sa.Column("note", sa.String(40)))\n' + record_body(log, "0003"),
        message="add note column",
    )
    add_revision(
        environment_copy,
        "0004",
        "0003",
        "op.execute(\"INSERT INTO granite_assets_race (id, note) VALUES (1, 'once')\")\n"
        + record_body(log, "0004"),
        message="insert one row",
    )
    return environment_copy, log


@pytest.mark.heavy
def test_replicas_upgrading_at_once_apply_each_revision_once(
    database: Database, recording_environment: tuple[Path, Path], tmp_path: Path
) -> None:
    """Sixteen processes upgrading a fresh database at once all succeed, and each revision body runs once."""
    directory, log = recording_environment
    with ExitStack() as stack:
        rounds = [database] + [
            stack.enter_context(fresh_database(database.backend, tmp_path)) for _ in range(ROUNDS - 1)
        ]
        workers = stack.enter_context(Workers(REPLICAS, directory, LOCK_TIMEOUT, tmp_path / "workers"))
        for number, db in enumerate(rounds, start=1):
            workers.start(db.url_string)
            results = workers.results()
            failures = [r for r in results if r != {"revision": "0004"}]
            assert not failures, f"round {number}: {len(failures)} of {REPLICAS} failed: {failures}"
            counted = runs(log)
            assert {rev: counted[str(db.url.database), rev] for rev in REVISIONS} == dict.fromkeys(
                REVISIONS, 1
            ), f"round {number}"
            assert version_rows(db) == ["0004"]
            assert db.scalar_rows("SELECT note FROM granite_assets_race") == ["once"]
            assert lock_is_free(db)


def test_waiter_rereads_under_the_lock_and_returns(
    database: Database, environment_copy: Path, tmp_path: Path
) -> None:
    """A process that found work pending waits for the lock, re-reads the version and returns head."""
    log = tmp_path / "runs.log"
    add_revision(
        environment_copy,
        "0002",
        "0001",
        hold_body()
        + '\nop.create_table("granite_assets_held", sa.Column("id", sa.Integer, primary_key=True))\n'
        + record_body(log, "0002"),
        message="slow revision",
    )
    started, release = tmp_path / "started", tmp_path / "release"
    hold = {STARTED_VARIABLE: str(started), RELEASE_VARIABLE: str(release)}
    with (
        Workers(1, environment_copy, LOCK_TIMEOUT, tmp_path / "holder", env=hold) as holder,
        Workers(1, environment_copy, LOCK_TIMEOUT, tmp_path / "waiter", announce=True) as waiter,
    ):
        holder.start(database.url_string)
        wait_for(started)
        waiter.start(database.url_string)
        waiter.expect(0, "locking")  # its no-op read saw 0002 pending: it now waits for the lock
        release.touch()
        assert holder.results() == [{"revision": "0002"}]
        assert waiter.results() == [{"revision": "0002"}]
        holder_pid = holder.processes[0].pid
    assert runs(log) == {(str(database.url.database), "0002"): 1}
    assert log.read_text(encoding="utf-8").split("\t")[2].strip() == str(holder_pid)
    assert version_rows(database) == ["0002"]
    assert lock_is_free(database)


def test_version_table_created_during_the_first_read_is_read_again(
    database: Database, environment_copy: Path
) -> None:
    """A replica whose first read misses a version table that another one creates meanwhile reads it again."""
    engine = create_engine(database.url, poolclass=NullPool)
    created: list[bool] = []

    @event.listens_for(engine, "handle_error")
    def another_replica_commits_revision_0001(context: ExceptionContext) -> None:
        if created or VERSION_TABLE not in (context.statement or ""):
            return
        created.append(True)  # between this failed read and the next look, the table appears
        database.execute(
            f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
            f"INSERT INTO {VERSION_TABLE} (version_num) VALUES ('0001')",
        )

    try:
        assert _runner.upgrade(environment_copy, engine, LOCK_TIMEOUT) == "0001"
    finally:
        engine.dispose()
    assert created
    assert version_rows(database) == ["0001"]
