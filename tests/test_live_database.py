"""Safe on a live database: a revision that meets a table lock never stalls the host's traffic.

Each test holds a real blocker, a session of the host's with a transaction open that read one of
granite-assets' tables, while a revision alters that table, and measures how long a third
session's queries on the table wait meanwhile.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import BACKENDS, Database, add_revision, backend_params
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool
from support import version_rows

from granite_assets import migrations
from granite_assets.migrations import DDLLockTimeoutError, _runner
from granite_assets.migrations._timeouts import DDLLimits

SERVERS = [b for b in BACKENDS if b.name != "sqlite"]
TABLE = "granite_assets_item"
OTHER = "granite_assets_other"


@pytest.fixture
def busy_table(database: Database, environment_copy: Path) -> Path:
    """An environment whose 0002 creates two tables (with a row) and whose 0003 adds a column to one."""
    add_revision(
        environment_copy,
        "0002",
        "0001",
        f'op.create_table("{TABLE}", sa.Column("id", sa.Integer, primary_key=True))\n'
        f'op.create_table("{OTHER}", sa.Column("id", sa.Integer, primary_key=True))\n'
        f'op.execute("INSERT INTO {TABLE} (id) VALUES (1)")',
        message="two tables",
    )
    assert _runner.upgrade(environment_copy, database.url_string, 30) == "0002"
    add_revision(
        environment_copy,
        "0003",
        "0002",
        f'op.add_column("{TABLE}", sa.Column("note", sa.String(40), nullable=True))',
        message="a note",
    )
    return environment_copy


@contextmanager
def blocker(database: Database) -> Iterator[Connection]:
    """A host session with a transaction open that read the table: it holds a lock on it until it ends."""
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text(f"SELECT * FROM {TABLE}")).fetchall()
            yield connection
            connection.rollback()
    finally:
        engine.dispose()


class Traffic:
    """The host's traffic: a session querying the table over and over, timing each query."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.waits: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        engine = create_engine(self.database.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                while not self._stop.is_set():
                    started = time.monotonic()
                    connection.execute(text(f"SELECT count(*) FROM {TABLE}")).scalar()
                    self.waits.append(time.monotonic() - started)
                    time.sleep(0.02)
        finally:
            engine.dispose()

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    @property
    def longest(self) -> float:
        return max(self.waits)


def ends_after(connection: Connection, seconds: float) -> threading.Timer:
    """End the blocker's transaction after ``seconds``."""
    timer = threading.Timer(seconds, connection.rollback)
    timer.start()
    return timer


def lock_wait(database: Database) -> float:
    """The shortest lock wait the backend can bound: MariaDB counts in whole seconds."""
    return 1.0 if database.backend.name == "mysql" else 0.5


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(SERVERS), indirect=True)
def test_a_blocked_revision_gives_up_naming_the_blocker_and_never_stalls_the_traffic(
    database: Database, busy_table: Path
) -> None:
    """Each try waits at most ddl_lock_timeout; the error names the blocker; nothing of 0003 is applied."""
    wait = lock_wait(database)
    limits = DDLLimits(lock_timeout=wait, retries=2)
    with blocker(database) as holder, Traffic(database) as traffic:
        pid = holder.exec_driver_sql(
            "SELECT pg_backend_pid()" if database.backend.name == "postgresql" else "SELECT CONNECTION_ID()"
        ).scalar()
        time.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(DDLLockTimeoutError) as caught:
            _runner.upgrade(busy_table, database.url_string, 30, limits)
        took = time.monotonic() - started
    error = caught.value
    assert error.revision == "0003"
    assert error.attempts == 3
    assert error.applied == ()
    assert any(f" {pid} " in f" {b} " for b in error.blockers), error.blockers
    assert f"{pid}" in str(error)
    assert "undo it by hand" not in str(error)  # its only statement never ran, even on MariaDB
    assert took >= 3 * wait
    assert version_rows(database) == ["0002"]
    assert "note" not in {c.lower() for c in database.column_names(TABLE)}
    # The host's queries waited at most one bounded try, never the blocker's whole life.
    assert traffic.longest < wait + 1.5, traffic.waits


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(SERVERS), indirect=True)
def test_a_blocker_that_ends_during_the_retries_lets_the_revision_through(
    database: Database, busy_table: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The revision is tried again after a pause and applied once the blocker is gone; retries are logged."""
    caplog.set_level(logging.WARNING, logger="granite_assets")
    with blocker(database) as holder:
        # The blocker's transaction ends when the first retry is announced, however slow the machine.
        ends = EndOnRetry(holder)
        logging.getLogger("granite_assets").addHandler(ends)
        try:
            assert (
                _runner.upgrade(busy_table, database.url_string, 30, DDLLimits(lock_wait(database), 5))
                == "0003"
            )
        finally:
            logging.getLogger("granite_assets").removeHandler(ends)
    retries = [r.getMessage() for r in caplog.records if "waited more than" in r.getMessage()]
    assert len(retries) == 1
    assert "0003" in retries[0]
    assert "Trying again" in retries[0]
    assert version_rows(database) == ["0003"]


class EndOnRetry(logging.Handler):
    """Ends the blocker's transaction when granite-assets announces its first retry."""

    def __init__(self, holder: Connection) -> None:
        super().__init__(logging.WARNING)
        self.holder = holder

    def emit(self, record: logging.LogRecord) -> None:
        if "Trying again" in record.getMessage() and self.holder.in_transaction():
            self.holder.rollback()


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(SERVERS), indirect=True)
def test_without_a_bound_the_traffic_waits_as_long_as_the_blocker(
    database: Database, busy_table: Path
) -> None:
    """The control: with no bound (plain Alembic's way), the host's queries queue for the blocker's life."""
    with blocker(database) as holder, Traffic(database) as traffic:
        time.sleep(0.2)
        timer = ends_after(holder, 2.5)
        try:
            assert _runner.upgrade(busy_table, database.url_string, 30, DDLLimits(math.inf, 0)) == "0003"
        finally:
            timer.join()
    assert traffic.longest >= 1.5, traffic.waits


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params([b for b in SERVERS if b.name == "mysql"]), indirect=True)
def test_mariadb_revision_blocked_after_a_committed_statement_says_what_is_in_the_database(
    database: Database, busy_table: Path
) -> None:
    """MariaDB commits each DDL statement: one timing out after another ran is not retried, and says so."""
    (busy_table / "versions" / "0003_a_note.py").unlink()
    add_revision(
        busy_table,
        "0003",
        "0002",
        f'op.add_column("{OTHER}", sa.Column("flag", sa.Integer, nullable=True))\n'
        f'op.add_column("{TABLE}", sa.Column("note", sa.String(40), nullable=True))',
        message="two columns",
    )
    with blocker(database), pytest.raises(DDLLockTimeoutError) as caught:
        _runner.upgrade(busy_table, database.url_string, 30, DDLLimits(1.0, 3))
    error = caught.value
    assert error.attempts == 1  # not retried: its first statement is in the database
    assert len(error.applied) == 1
    assert OTHER in error.applied[0]
    assert "flag" in error.applied[0].lower()
    assert "ran before and are in the database" in str(error)
    assert "undo it by hand" in str(error)
    assert version_rows(database) == ["0002"]


@pytest.mark.parametrize("backend", backend_params(SERVERS), indirect=True)
def test_the_sessions_own_settings_come_back(database: Database, busy_table: Path) -> None:
    """The bounds are the migration's own: the host's pooled connection gets its settings back."""
    engine = create_engine(database.url, pool_size=1, max_overflow=0)
    show = {
        "postgresql": "SELECT current_setting('lock_timeout')",
        "mysql": "SELECT @@session.lock_wait_timeout",
    }[database.backend.name]
    try:
        with engine.connect() as connection:
            before = connection.exec_driver_sql(show).scalar()
        assert _runner.upgrade(busy_table, engine, 30, DDLLimits(2.0, 0)) == "0003"
        with engine.connect() as connection:
            assert connection.exec_driver_sql(show).scalar() == before
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"ddl_lock_timeout": -1}, "ddl_lock_timeout must be zero or more"),
        ({"ddl_lock_timeout": math.nan}, "ddl_lock_timeout must be zero or more"),
        ({"ddl_retries": -1}, "ddl_retries must be a whole number"),
        ({"ddl_retries": 1.5}, "ddl_retries must be a whole number"),
        ({"ddl_retries": True}, "ddl_retries must be a whole number"),
        ({"statement_timeout": 0}, "statement_timeout must be more than 0"),
        ({"statement_timeout": "soon"}, "statement_timeout must be a number"),
    ],
)
def test_bad_bounds_are_refused_before_anything_connects(arguments: dict[str, object], says: str) -> None:
    """A bound that makes no sense is a ValueError that says what it takes; nothing is opened."""
    with pytest.raises(ValueError, match=says):
        migrations.upgrade_to_head("postgresql+psycopg://nobody@127.0.0.1:1/none", **arguments)  # type: ignore[arg-type]
