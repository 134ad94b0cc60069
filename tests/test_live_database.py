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
from support import Workers, lock_is_free, version_rows

from granite_assets import migrations
from granite_assets.migrations import DDLLockTimeoutError, MigrationFailedError, MigrationProgress, _runner
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
@pytest.mark.parametrize(
    "backend", backend_params([b for b in SERVERS if b.driver != "psycopg"]), indirect=True
)
def test_a_retried_revision_reports_failed_then_started_again(database: Database, busy_table: Path) -> None:
    """on_progress sees the try that timed out fail, then the same revision, same step, start again."""
    events: list[MigrationProgress] = []
    with blocker(database) as holder:
        ends = EndOnRetry(holder)
        logging.getLogger("granite_assets").addHandler(ends)
        try:
            limits = DDLLimits(lock_wait(database), 5)
            assert (
                _runner.upgrade(busy_table, database.url_string, 30, limits, on_progress=events.append)
                == "0003"
            )
        finally:
            logging.getLogger("granite_assets").removeHandler(ends)
    assert [(e.status, e.revision, e.step, e.steps) for e in events] == [
        ("started", "0003", 1, 1),
        ("failed", "0003", 1, 1),
        ("started", "0003", 1, 1),
        ("finished", "0003", 1, 1),
    ]
    assert (events[1].elapsed or 0) >= lock_wait(database) * 0.9


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


# -- What a revision declares it needs ---------------------------------------------------------


def rewrite_0003(directory: Path, upgrade: str, downgrade: str = "pass", *, declares: str = "") -> None:
    """Replace the busy table's revision 0003 with one that runs ``upgrade`` and declares ``declares``."""
    for path in (directory / "versions").glob("0003_*.py"):
        path.unlink()
    add_revision(directory, "0003", "0002", upgrade, downgrade, message="declares", declares=declares)


ADD_NOTE = f'op.add_column("{TABLE}", sa.Column("note", sa.String(40), nullable=True))'


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(SERVERS), indirect=True)
@pytest.mark.parametrize("declared", [True, False], ids=["declared", "undeclared"])
def test_a_revision_that_declares_a_longer_lock_wait_outlasts_the_blocker(
    database: Database, busy_table: Path, declared: bool
) -> None:
    """ddl_lock_timeout = 10 in the revision outlasts a 2-second blocker that the call's 0.5 s does not."""
    rewrite_0003(busy_table, ADD_NOTE, declares="ddl_lock_timeout = 10.0" if declared else "")
    with blocker(database) as holder:
        timer = ends_after(holder, 2.0)
        started = time.monotonic()
        try:
            if declared:
                assert _runner.upgrade(busy_table, database.url_string, 30, DDLLimits(0.5, 0)) == "0003"
            else:
                with pytest.raises(DDLLockTimeoutError):
                    _runner.upgrade(busy_table, database.url_string, 30, DDLLimits(0.5, 0))
        finally:
            timer.join()
    if declared:
        assert time.monotonic() - started >= 1.5  # it waited for the blocker, past the call's bound
        assert version_rows(database) == ["0003"]
        assert "note" in {c.lower() for c in database.column_names(TABLE)}
    else:
        assert version_rows(database) == ["0002"]


def sleep_statement(database: Database, seconds: float) -> str:
    """A statement that runs for ``seconds``."""
    return (
        f"SELECT pg_sleep({seconds})" if database.backend.name == "postgresql" else f"SELECT SLEEP({seconds})"
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(SERVERS), indirect=True)
@pytest.mark.parametrize("declared", [True, False], ids=["declared", "undeclared"])
def test_a_revision_that_declares_a_longer_statement_timeout_runs_past_the_calls(
    database: Database, busy_table: Path, declared: bool
) -> None:
    """statement_timeout = 5 in the revision lets a 1.5-second statement run under the call's 0.5 s."""
    rewrite_0003(
        busy_table,
        f'op.execute("{sleep_statement(database, 1.5)}")',
        declares="statement_timeout = 5" if declared else "",
    )
    limits = DDLLimits(2.0, 0, statement_timeout=0.5)
    if declared:
        assert _runner.upgrade(busy_table, database.url_string, 30, limits) == "0003"
        assert version_rows(database) == ["0003"]
    else:
        with pytest.raises(MigrationFailedError) as caught:
            _runner.upgrade(busy_table, database.url_string, 30, limits)
        assert caught.value.revision == "0003"
        assert version_rows(database) == ["0002"]


SEEN = "granite_assets_seen"


def record_settings(database: Database, step: str) -> str:
    """A revision body that writes the session's lock wait and statement limits into the SEEN table."""
    if database.backend.name == "postgresql":
        settings = "current_setting('lock_timeout'), current_setting('statement_timeout')"
    else:
        settings = "@@session.lock_wait_timeout, @@session.max_statement_time"
    return f"op.execute(\"INSERT INTO {SEEN} (step, lock_wait, run) SELECT '{step}', {settings}\")"


@pytest.fixture
def recording_settings(database: Database, busy_table: Path) -> Path:
    """0003 declares 20 s and 50 s and records what it runs under, up and down; 0004 declares nothing."""
    rewrite_0003(
        busy_table,
        f'op.create_table("{SEEN}", sa.Column("step", sa.String(20)), sa.Column("lock_wait", sa.String(40)), '
        'sa.Column("run", sa.String(40)))\n' + record_settings(database, "0003 up"),
        record_settings(database, "0003 down"),
        declares="ddl_lock_timeout = 20\nstatement_timeout = 50.0",
    )
    add_revision(
        busy_table,
        "0004",
        "0003",
        record_settings(database, "0004 up"),
        record_settings(database, "0004 down"),
        message="declares nothing",
    )
    return busy_table


def seen_settings(database: Database) -> dict[str, tuple[str, str]]:
    """What each recorded step ran under, as PostgreSQL shows it or as MariaDB's whole seconds."""
    rows = database.all_rows(f"SELECT step, lock_wait, run FROM {SEEN}")
    if database.backend.name == "postgresql":
        return {str(step): (str(lock), str(run)) for step, lock, run in rows}
    return {str(step): (str(int(float(str(lock)))), f"{float(str(run)):g}") for step, lock, run in rows}


def expected_settings(database: Database, *steps: tuple[str, int, int]) -> dict[str, tuple[str, str]]:
    """``steps`` as seen_settings() shows them: (step, lock wait seconds, statement seconds)."""
    unit = "s" if database.backend.name == "postgresql" else ""
    return {step: (f"{lock}{unit}", f"{run}{unit}") for step, lock, run in steps}


@pytest.mark.parametrize("backend", backend_params(SERVERS), indirect=True)
def test_declared_limits_hold_only_while_their_revision_runs_up_and_down(
    database: Database, recording_settings: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """0003 runs under its own limits, 0004 under the call's, both ways; a pooled session gets its own."""
    caplog.set_level(logging.INFO, logger="granite_assets")
    engine = create_engine(database.url, pool_size=1, max_overflow=0)
    show = {
        "postgresql": "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')",
        "mysql": "SELECT @@session.lock_wait_timeout, @@session.max_statement_time",
    }[database.backend.name]
    limits = DDLLimits(2.0, 0, statement_timeout=7.0)
    try:
        with engine.connect() as connection:
            before = tuple(connection.exec_driver_sql(show).one())
        assert _runner.upgrade(recording_settings, engine, 30, limits) == "0004"
        with engine.connect() as connection:
            assert tuple(connection.exec_driver_sql(show).one()) == before
        assert _runner.downgrade(recording_settings, engine, "0002", 30, limits) == "0002"
    finally:
        engine.dispose()
    said = [r.getMessage() for r in caplog.records if "needs longer limits" in r.getMessage()]
    longer = "each of its statements may wait up to 20 seconds for a table lock and run up to 50 seconds"
    assert said == [f"granite-assets revision 0003 declares that it needs longer limits: {longer}."] * 2
    # The downgrade dropped nothing of SEEN's rows: 0003's downgrade leaves the table it made.
    assert seen_settings(database) == expected_settings(
        database, ("0003 up", 20, 50), ("0004 up", 2, 7), ("0004 down", 2, 7), ("0003 down", 20, 50)
    )


@pytest.mark.parametrize(
    "backend", backend_params([b for b in SERVERS if b.name == "postgresql"]), indirect=True
)
def test_declared_limits_in_the_callers_transaction_end_with_their_revision(
    database: Database, recording_settings: Path
) -> None:
    """In the caller's transaction a revision's limits are SET LOCAL for it alone; the caller's own stay."""
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.begin()
            connection.exec_driver_sql("SET LOCAL lock_timeout = '9s'")
            connection.exec_driver_sql("SET LOCAL statement_timeout = '90s'")
            assert _runner.upgrade(recording_settings, connection, 30, DDLLimits(2.0, 0, 7.0)) == "0004"
            assert connection.in_transaction()
            assert tuple(
                connection.exec_driver_sql(
                    "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
                ).one()
            ) == ("9s", "90s")
            connection.commit()
    finally:
        engine.dispose()
    assert seen_settings(database) == expected_settings(database, ("0003 up", 20, 50), ("0004 up", 2, 7))


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(SERVERS), indirect=True)
def test_a_timeout_names_the_bound_the_revision_had(
    database: Database, busy_table: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The retry warning and the error give the revision's own bound; setting it applied nothing of it."""
    caplog.set_level(logging.WARNING, logger="granite_assets")
    declared = 1.5 if database.backend.name == "postgresql" else 2.0
    rewrite_0003(busy_table, ADD_NOTE, declares=f"ddl_lock_timeout = {declared}")
    with blocker(database), pytest.raises(DDLLockTimeoutError) as caught:
        _runner.upgrade(busy_table, database.url_string, 30, DDLLimits(0.5, 1))
    error = caught.value
    bound = f"more than {declared:g} seconds"
    assert bound in str(error)
    assert error.attempts == 2  # retried: setting its limits is not a statement of it in the database
    assert error.applied == ()
    retries = [r.getMessage() for r in caplog.records if "Trying again" in r.getMessage()]
    assert len(retries) == 1
    assert bound in retries[0]
    assert version_rows(database) == ["0002"]


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_offline_sql_carries_no_limits(environment_copy: Path, dialect: str) -> None:
    """A revision's declared limits never reach the SQL script: it runs in the DBA's session, with theirs."""
    add_revision(
        environment_copy,
        "0002",
        "0001",
        f'op.create_table("{TABLE}", sa.Column("id", sa.Integer, primary_key=True))',
        f'op.drop_table("{TABLE}")',
        message="a table",
        declares="ddl_lock_timeout = 30\nstatement_timeout = 600",
    )
    up = _runner.offline_sql(environment_copy, dialect, None, "head", downgrade=False)
    down = _runner.offline_sql(environment_copy, dialect, "0002", "0001", downgrade=True)
    assert f"CREATE TABLE {TABLE}" in up
    assert f"DROP TABLE {TABLE}" in down
    for script in (up, down):
        for setting in ("lock_timeout", "lock_wait_timeout", "statement_timeout", "max_statement_time"):
            assert setting not in script
        assert not any(line.lstrip().upper().startswith("SET ") for line in script.splitlines())


@pytest.mark.parametrize(
    "backend", backend_params([b for b in BACKENDS if b.name == "sqlite"]), indirect=True
)
def test_declared_limits_are_ignored_on_sqlite(database: Database, environment_copy: Path) -> None:
    """SQLite has no such settings (its busy timeout bounds its waits): the declaring revision just runs."""
    add_revision(
        environment_copy,
        "0002",
        "0001",
        f'op.create_table("{TABLE}", sa.Column("id", sa.Integer, primary_key=True))',
        message="a table",
        declares="import math\n\nddl_lock_timeout = 30\nstatement_timeout = math.inf",
    )
    assert _runner.upgrade(environment_copy, database.url_string, 30, DDLLimits(0.5, 0, 1.0)) == "0002"
    assert version_rows(database) == ["0002"]


@pytest.mark.parametrize(
    ("call", "declared", "expected"),
    [
        (DDLLimits(3.0, 5, None), (None, None), DDLLimits(3.0, 5, None)),
        (DDLLimits(3.0, 5, None), (30.0, 600.0), DDLLimits(30.0, 5, None)),
        (DDLLimits(60.0, 5, 10.0), (30.0, 600.0), DDLLimits(60.0, 5, 600.0)),
        (DDLLimits(3.0, 5, 10.0), (math.inf, math.inf), DDLLimits(math.inf, 5, math.inf)),
        (DDLLimits(math.inf, 0, math.inf), (30.0, 5.0), DDLLimits(math.inf, 0, math.inf)),
    ],
    ids=["nothing-declared", "no-call-statement-bound", "larger-wins", "declared-inf", "call-inf"],
)
def test_a_revision_gets_the_larger_of_its_limits_and_the_calls(
    call: DDLLimits, declared: tuple[float | None, float | None], expected: DDLLimits
) -> None:
    """Each limit is the larger of the two; a call without a statement bound stays without one."""
    assert call.at_least(*declared) == expected


# -- Replicas starting at once while a blocker comes and goes ---------------------------------

REPLICAS = 16


class ComingAndGoing:
    """A host session that holds a transaction on the table, lets go for ``gap`` seconds, and again.

    Its first hold lasts until a revision is seen waiting for the table, then ``after_waiter``
    seconds more, long enough for that replica to give up; each later hold lasts ``hold`` seconds.
    """

    def __init__(self, database: Database, *, after_waiter: float, hold: float, gap: float) -> None:
        self.database = database
        self.after_waiter = after_waiter
        self.hold = hold
        self.gap = gap
        self.cycles = 0
        self.holding = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        engine = create_engine(self.database.url, poolclass=NullPool)
        try:
            with engine.connect() as connection, engine.connect() as watcher:
                while not self._stop.is_set():
                    connection.execute(text(f"SELECT * FROM {TABLE}")).fetchall()
                    self.holding.set()
                    if self.cycles == 0:
                        self._until_a_revision_waits(watcher)
                        self._stop.wait(self.after_waiter)
                    else:
                        self._stop.wait(self.hold)
                    connection.rollback()
                    self.cycles += 1
                    self._stop.wait(self.gap)
        finally:
            self.holding.set()
            engine.dispose()

    def _until_a_revision_waits(self, watcher: Connection) -> None:
        """Return once a session waits for a lock on the table (or after a minute)."""
        if self.database.backend.name == "postgresql":
            waiting = (
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = to_regclass(:table) "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        else:
            waiting = (
                "SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() "
                "AND STATE LIKE 'Waiting for table metadata lock' AND INFO LIKE CONCAT('%', :table, '%')"
            )
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            if watcher.execute(text(waiting), {"table": TABLE}).scalar():
                return
            watcher.rollback()
            time.sleep(0.05)

    def __enter__(self) -> ComingAndGoing:
        self._thread.start()
        assert self.holding.wait(30)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


ONE_DRIVER_EACH = [b for b in SERVERS if b.driver in {"psycopg2", "pymysql"}]


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.parametrize("backend", backend_params(ONE_DRIVER_EACH), indirect=True)
def test_replicas_starting_at_once_while_a_blocker_comes_and_goes_never_half_apply(
    database: Database, busy_table: Path, tmp_path: Path
) -> None:
    """Sixteen replicas, a blocker on and off: each succeeds or raises DDLLockTimeoutError; 0003 is whole.

    0003 alters the blocked table first and then the other one, which nothing blocks: on MariaDB,
    whose DDL commits statement by statement, a revision stays whole only where a timeout can meet
    its first statement alone (the documented reason for one DDL concern per revision). The
    blocker's first hold outlasts the first replica's two tries, so the error is seen in every run.
    """
    rewrite_0003(
        busy_table,
        ADD_NOTE + f'\nop.add_column("{OTHER}", sa.Column("flag", sa.Integer, nullable=True))',
    )
    wait = 0.3 if database.backend.name == "postgresql" else 1.0
    flags = (f"--ddl-lock-timeout={wait}", "--ddl-retries=1")
    with Workers(REPLICAS, busy_table, 60, tmp_path / "workers", flags=flags, deadline=120) as workers:
        # From the first try's wait: two tries, the longest pause between them (0.75 s), and room.
        after_waiter = 2 * wait + 0.75 + 2.0
        with ComingAndGoing(database, after_waiter=after_waiter, hold=wait + 0.7, gap=0.3) as on_and_off:
            workers.start(database.url_string)
            results = workers.results()
        assert on_and_off.cycles >= 1
    outcomes = [r.get("revision") or r.get("error") for r in results]
    assert set(outcomes) == {"0003", "DDLLockTimeoutError"}, results
    assert version_rows(database) == ["0003"]
    assert "note" in {c.lower() for c in database.column_names(TABLE)}
    assert "flag" in {c.lower() for c in database.column_names(OTHER)}
    assert lock_is_free(database)


def session_limits(connection: Connection, database: Database) -> list[object]:
    """The session's lock wait and statement limits, as the host's next query on it would run under."""
    if database.backend.name == "postgresql":
        return [
            connection.exec_driver_sql(f"SHOW {n}").scalar() for n in ("lock_timeout", "statement_timeout")
        ]
    limits = "SELECT @@session.lock_wait_timeout, @@session.max_statement_time"
    return list(connection.exec_driver_sql(limits).one())


@pytest.mark.slow
@pytest.mark.parametrize("autocommit", [False, True], ids=["no-transaction", "autocommit"])
@pytest.mark.parametrize("backend", backend_params(SERVERS), indirect=True)
def test_a_callers_connection_outside_a_transaction_is_bounded_and_handed_back_with_its_own_limits(
    database: Database, busy_table: Path, autocommit: bool
) -> None:
    """On the caller's connection a blocked revision gives up in time; the session's limits come back."""
    wait = lock_wait(database)
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            if autocommit:
                connection.execution_options(isolation_level="AUTOCOMMIT")
            before = session_limits(connection, database)
            connection.commit()
            with blocker(database) as holder:
                timer = ends_after(holder, wait + 8)  # an unbounded wait ends here, and fails below
                try:
                    started = time.monotonic()
                    with pytest.raises(DDLLockTimeoutError):
                        _runner.upgrade(busy_table, connection, 30, DDLLimits(wait, 0, 20))
                    took = time.monotonic() - started
                finally:
                    timer.cancel()
            assert took < wait + 5
            assert session_limits(connection, database) == before
            connection.rollback()
            assert _runner.upgrade(busy_table, connection, 30, DDLLimits(wait, 0, 20)) == "0003"
            assert session_limits(connection, database) == before
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", backend_params(SERVERS), indirect=True)
def test_limits_longer_than_the_server_counts_wait_as_long_as_it_can(
    database: Database, busy_table: Path
) -> None:
    """Thirty days, past PostgreSQL's largest lock_timeout and statement_timeout, waits its longest."""
    month = 30 * 24 * 3600.0
    assert _runner.upgrade(busy_table, database.url_string, 30, DDLLimits(month, 0, month)) == "0003"
