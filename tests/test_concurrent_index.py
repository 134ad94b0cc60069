"""Indexes built on a table in use: create_index_concurrently() and drop_index_concurrently().

On PostgreSQL the build is ``CREATE INDEX CONCURRENTLY``, outside the revision's transaction:
each test that shows it holds a host session with a write transaction open on the table, which
the build waits for (a plain ``CREATE INDEX`` would wait too, but holding up every writer behind
it). Elsewhere, and in a caller's transaction, the same revision builds a plain index.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import BACKENDS, Database, add_revision, backend_params
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.pool import NullPool
from support import lock_is_free, record_body, runs, version_rows

from granite_assets.migrations import MigrationError, _runner
from granite_assets.migrations._timeouts import DDLLimits

POSTGRESQL = [b for b in BACKENDS if b.name == "postgresql"]
SQLITE = [b for b in BACKENDS if b.name == "sqlite"]
TABLE = "granite_assets_item"
#: A name that needs quoting everywhere: a capital, a space and a double quote.
INDEX = 'granite_assets_item "Label" ix'
NO_BOUND = DDLLimits(math.inf, 0)

INDEX_REVISION = f"""from granite_assets.migrations.operations import create_index_concurrently
create_index_concurrently({INDEX!r}, "{TABLE}", ["Label"])"""
DROP_REVISION = f"""from granite_assets.migrations.operations import drop_index_concurrently
drop_index_concurrently({INDEX!r}, "{TABLE}")"""


@pytest.fixture
def with_index(database: Database, environment_copy: Path) -> Path:
    """An environment whose 0002 creates a table with rows (applied) and whose 0003 indexes it (pending)."""
    rows = f"INSERT INTO {TABLE} (id, {quoted(database, 'Label')}) VALUES (1, 'a'), (2, 'b')"
    add_revision(
        environment_copy,
        "0002",
        "0001",
        f'op.create_table("{TABLE}", sa.Column("id", sa.Integer, primary_key=True), '
        f'sa.Column("Label", sa.String(40)))\nop.execute({rows!r})',
        f'op.drop_table("{TABLE}")',
        message="a table",
    )
    assert _runner.upgrade(environment_copy, database.url_string, 30) == "0002"
    add_revision(environment_copy, "0003", "0002", INDEX_REVISION, DROP_REVISION, message="an index")
    return environment_copy


def quoted(database: Database, name: str) -> str:
    """``name`` quoted as the database quotes identifiers."""
    return f"`{name}`" if database.backend.name == "mysql" else f'"{name}"'


@dataclass(frozen=True)
class IndexState:
    """What PostgreSQL's catalogue says of the index."""

    oid: int
    valid: bool


def index_state(database: Database, name: str = INDEX) -> IndexState | None:
    """The index's oid and ``pg_index.indisvalid``, or ``None`` when there is no such index."""
    rows = database.all_rows(
        "SELECT i.indexrelid::int, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        f"WHERE c.relname = '{name}'"
    )
    return IndexState(int(str(rows[0][0])), bool(rows[0][1])) if rows else None


def index_names(database: Database) -> set[str]:
    """The names of the table's indexes, from SQLAlchemy's inspector."""
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return {str(ix["name"]) for ix in inspect(connection).get_indexes(TABLE)}
    finally:
        engine.dispose()


@contextmanager
def open_write(database: Database) -> Iterator[Connection]:
    """A host session with a write transaction open on the table, as a busy application has.

    ``CREATE INDEX CONCURRENTLY`` waits for it to end (after creating the index, INVALID); a
    plain ``CREATE INDEX`` waits for it too, and every other writer then waits behind that.
    """
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text(f"INSERT INTO {TABLE} (id) VALUES (100)"))
            yield connection
            if connection.in_transaction():
                connection.rollback()
    finally:
        engine.dispose()


def waiting_build(database: Database, limit: float = 60) -> tuple[int, str]:
    """The pid and statement of the session whose CREATE INDEX waits for a lock; fail after ``limit`` s."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        rows = database.all_rows(
            "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'CREATE %INDEX%' AND wait_event_type = 'Lock'"
        )
        if rows:
            pid, query = rows[0]
            return int(str(pid)), str(query)
        time.sleep(0.05)
    pytest.fail(f"no CREATE INDEX waited for a lock within {limit} s")


class Upgrade(threading.Thread):
    """``_runner.upgrade()`` in a thread, keeping what it returned or raised."""

    def __init__(self, directory: Path, target: str | Engine, limits: DDLLimits = NO_BOUND) -> None:
        super().__init__()
        self.args = (directory, target, 60, limits)
        self.revision: str | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.revision = _runner.upgrade(*self.args)
        except BaseException as exc:  # noqa: BLE001 - the test judges it
            self.error = exc

    def outcome(self) -> str | None:
        """Wait for the upgrade; its revision, or re-raise its error."""
        self.join(timeout=120)
        assert not self.is_alive(), "the upgrade did not finish"
        if self.error is not None:
            raise self.error
        return self.revision


@contextmanager
def statements_sent(engine: Engine) -> Iterator[list[str]]:
    """Every statement ``engine`` sends while the block runs."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(" ".join(str(args[2]).split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


@contextmanager
def engine_for(database: Database, **options: Any) -> Iterator[Engine]:
    """An engine of the host's, disposed after."""
    engine = create_engine(database.url, poolclass=NullPool, **options)
    try:
        yield engine
    finally:
        engine.dispose()


# -- Every backend ---------------------------------------------------------------------------


def test_the_revision_builds_the_index_and_its_downgrade_drops_it(
    database: Database, with_index: Path
) -> None:
    """One revision serves all backends: concurrently on PostgreSQL, plainly elsewhere; downgrade drops it."""
    with engine_for(database) as engine:
        with statements_sent(engine) as sent:
            assert _runner.upgrade(with_index, engine, 30) == "0003"
        assert version_rows(database) == ["0003"]
        assert INDEX in index_names(database)
        builds = [s for s in sent if s.startswith("CREATE INDEX")]
        assert len(builds) == 1, sent
        if database.backend.name == "postgresql":
            assert builds[0].startswith(f'CREATE INDEX CONCURRENTLY "{INDEX.replace(chr(34), chr(34) * 2)}"')
            state = index_state(database)
            assert state is not None
            assert state.valid
        else:
            assert "CONCURRENTLY" not in builds[0]

        with statements_sent(engine) as sent:
            assert _runner.downgrade(with_index, engine, "0002", 30) == "0002"
        assert version_rows(database) == ["0002"]
        assert INDEX not in index_names(database)
        drops = [s for s in sent if s.startswith("DROP INDEX")]
        assert len(drops) == 1, sent
        assert ("CONCURRENTLY" in drops[0]) is (database.backend.name == "postgresql")

        assert _runner.upgrade(with_index, engine, 30) == "0003"
        assert INDEX in index_names(database)


@pytest.mark.parametrize("backend", backend_params(SQLITE), indirect=True)
def test_on_sqlite_the_index_stays_in_the_one_transaction_of_the_call(
    database: Database, with_index: Path
) -> None:
    """SQLite's whole call is one transaction: a later revision's failure takes the index back with it."""
    add_revision(with_index, "0004", "0003", 'raise RuntimeError("0004 fails")', message="fails")

    with pytest.raises(MigrationError, match="0004"):
        _runner.upgrade(with_index, database.url_string, 30)

    assert version_rows(database) == ["0002"]
    assert INDEX not in index_names(database)
    assert lock_is_free(database)


# -- PostgreSQL: concurrently, and what an interrupted build leaves --------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_writers_go_on_while_the_index_is_built(database: Database, with_index: Path) -> None:
    """While the build waits for an open write transaction, another writer to the table is not held up."""
    with open_write(database) as holder:
        upgrade = Upgrade(with_index, database.url_string)
        upgrade.start()
        try:
            _pid, statement = waiting_build(database)
            assert statement.startswith("CREATE INDEX CONCURRENTLY"), statement
            state = index_state(database)
            assert state is not None
            assert not state.valid  # in the catalogue already, not usable until the build ends
            started = time.monotonic()
            database.execute("SET LOCAL lock_timeout = '5s'", f"INSERT INTO {TABLE} (id) VALUES (200)")
            assert time.monotonic() - started < 2
            # The revision's work before the build is committed, and its version row is not yet.
            assert version_rows(database) == ["0002"]
        finally:
            holder.rollback()
        assert upgrade.outcome() == "0003"
    assert version_rows(database) == ["0003"]
    assert index_state(database) == IndexState(state.oid, valid=True)
    assert database.scalar_rows(f"SELECT count(*) FROM {TABLE}") == [3]
    assert lock_is_free(database)


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_a_build_whose_session_was_killed_is_dropped_and_built_again(
    database: Database, with_index: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """pg_terminate_backend() during the build leaves an INVALID index; the next upgrade rebuilds it."""
    caplog.set_level(logging.INFO, logger="granite_assets")
    with open_write(database) as holder:
        upgrade = Upgrade(with_index, database.url_string)
        upgrade.start()
        pid, _statement = waiting_build(database)
        database.execute(f"SELECT pg_terminate_backend({pid})")
        with pytest.raises(MigrationError):
            upgrade.outcome()
        holder.rollback()
    left = index_state(database)
    assert left is not None
    assert not left.valid
    assert version_rows(database) == ["0002"]
    assert lock_is_free(database)

    assert _runner.upgrade(with_index, database.url_string, 30, NO_BOUND) == "0003"

    rebuilt = index_state(database)
    assert rebuilt is not None
    assert rebuilt.valid
    assert rebuilt.oid != left.oid  # dropped and built anew, not merely marked
    assert version_rows(database) == ["0003"]
    assert any("Dropping the INVALID index" in r.getMessage() for r in caplog.records)


class EndOnRetry(logging.Handler):
    """At granite-assets' first retry, note the index's state and end the host's write transaction."""

    def __init__(self, database: Database, holder: Connection) -> None:
        super().__init__(logging.WARNING)
        self.database = database
        self.holder = holder
        self.seen: list[IndexState | None] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "Trying again" in record.getMessage() and self.holder.in_transaction():
            self.seen.append(index_state(self.database))
            self.holder.rollback()


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_a_build_that_timed_out_is_dropped_and_built_again_on_the_retry(
    database: Database, with_index: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ddl_lock_timeout bounds the build's waits; a timed-out try leaves it INVALID, the retry rebuilds it."""
    caplog.set_level(logging.WARNING, logger="granite_assets")
    logger = logging.getLogger("granite_assets")
    with open_write(database) as holder:
        ends = EndOnRetry(database, holder)
        logger.addHandler(ends)
        try:
            assert _runner.upgrade(with_index, database.url_string, 30, DDLLimits(0.5, 5)) == "0003"
        finally:
            logger.removeHandler(ends)
    assert len(ends.seen) == 1
    left = ends.seen[0]
    assert left is not None
    assert not left.valid
    rebuilt = index_state(database)
    assert rebuilt is not None
    assert rebuilt.valid
    assert rebuilt.oid != left.oid
    assert version_rows(database) == ["0003"]
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "Trying again" in m]) == 1
    assert any("did not finish, and may have left it INVALID; the next try" in m for m in messages)
    assert any("Dropping the INVALID index" in m for m in messages)


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_a_name_the_ddl_shortens_is_found_by_its_short_form(database: Database, with_index: Path) -> None:
    """A naming convention's name past 63 characters, which SQLAlchemy shortens, is looked up as shortened."""
    long_name = "ix_granite_assets_item_" + "label_" * 10
    (with_index / "versions" / "0003_an_index.py").unlink()
    add_revision(
        with_index,
        "0003",
        "0002",
        "from granite_assets.migrations.operations import create_index_concurrently\n"
        f'create_index_concurrently(op.f("{long_name}"), "{TABLE}", ["Label"])',
        message="an index",
    )
    with open_write(database) as holder:
        with pytest.raises(MigrationError):
            _runner.upgrade(with_index, database.url_string, 30, DDLLimits(0.5, 0))
        holder.rollback()
    (short,) = database.scalar_rows(
        f"SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        f"WHERE i.indrelid = '{TABLE}'::regclass AND NOT i.indisvalid"
    )
    assert str(short) != long_name
    assert str(short).startswith(long_name[:50])

    assert _runner.upgrade(with_index, database.url_string, 30) == "0003"

    state = index_state(database, str(short))
    assert state is not None
    assert state.valid


@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_a_valid_index_built_by_a_try_that_was_not_recorded_is_kept(
    database: Database, with_index: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An index built before the process died, its revision unrecorded, is kept as it is, not built twice."""
    caplog.set_level(logging.INFO, logger="granite_assets")
    database.execute(f'CREATE INDEX "{INDEX.replace(chr(34), chr(34) * 2)}" ON {TABLE} ("Label")')
    built = index_state(database)

    assert _runner.upgrade(with_index, database.url_string, 30) == "0003"

    assert index_state(database) == built
    assert version_rows(database) == ["0003"]
    assert any("is there already" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_another_relation_with_the_name_fails_the_revision_rather_than_being_taken_for_the_index(
    database: Database, with_index: Path
) -> None:
    """A table (or another table's index) with the index's name is not skipped as IF NOT EXISTS would."""
    database.execute(f'CREATE TABLE "{INDEX.replace(chr(34), chr(34) * 2)}" (id int)')

    with pytest.raises(MigrationError, match="already exists"):
        _runner.upgrade(with_index, database.url_string, 30)

    assert version_rows(database) == ["0002"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_an_old_transaction_on_another_table_holds_up_the_build_and_is_named(
    database: Database, with_index: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The build also waits for older snapshots of other tables; a timeout names those sessions."""
    caplog.set_level(logging.WARNING, logger="granite_assets")
    database.execute("CREATE TABLE host_other (id int)")
    with engine_for(database) as engine, engine.connect() as reader:
        pid = reader.execute(text("SELECT pg_backend_pid()")).scalar()
        reader.rollback()
        reader.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        reader.execute(text("SELECT * FROM host_other")).fetchall()
        with pytest.raises(MigrationError):
            _runner.upgrade(with_index, database.url_string, 30, DDLLimits(0.5, 0))
        reader.rollback()
    (warning,) = [r.getMessage() for r in caplog.records if "did not finish" in r.getMessage()]
    assert f"these are open: pid {pid} (a transaction open for " in warning
    assert "SELECT * FROM host_other" in warning
    left = index_state(database)
    assert left is not None
    assert not left.valid

    assert _runner.upgrade(with_index, database.url_string, 30) == "0003"
    state = index_state(database)
    assert state is not None
    assert state.valid


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_a_revisions_own_ddl_lock_timeout_bounds_its_build_too(database: Database, with_index: Path) -> None:
    """ddl_lock_timeout declared by the revision holds outside its transaction, then the session's is back."""
    (with_index / "versions" / "0003_an_index.py").unlink()
    add_revision(
        with_index, "0003", "0002", INDEX_REVISION, message="an index", declares="ddl_lock_timeout = 30.0"
    )
    engine = create_engine(database.url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            before = connection.exec_driver_sql("SHOW lock_timeout").scalar()
        with open_write(database) as holder:
            ends = threading.Timer(2.0, holder.rollback)  # longer than the call's 0.5 s
            ends.start()
            try:
                assert _runner.upgrade(with_index, engine, 30, DDLLimits(0.5, 0)) == "0003"
            finally:
                ends.join()
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW lock_timeout").scalar() == before
    finally:
        engine.dispose()
    state = index_state(database)
    assert state is not None
    assert state.valid


UPGRADE_PROCESS = """
import math, sys
from pathlib import Path
from granite_assets.migrations import _runner
from granite_assets.migrations._timeouts import DDLLimits
print(_runner.upgrade(Path(sys.argv[1]), sys.argv[2], 60, DDLLimits(math.inf, 0)), flush=True)
"""


def upgrade_process(directory: Path, database: Database) -> subprocess.Popen[str]:
    """A replica's process, upgrading ``database`` with no bound on the build's waits."""
    return subprocess.Popen(
        [sys.executable, "-c", UPGRADE_PROCESS, str(directory), database.url_string],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_a_replica_killed_during_the_build_leaves_the_next_call_a_usable_index(
    database: Database, with_index: Path
) -> None:
    """A building process killed by SIGKILL: the next call waits for its session, ends with a valid index."""
    with open_write(database) as holder:
        victim = upgrade_process(with_index, database)
        try:
            waiting_build(database)
            os.kill(victim.pid, signal.SIGKILL)
            victim.communicate(timeout=30)
        finally:
            if victim.poll() is None:
                victim.kill()
        holder.rollback()
    # The server finishes (or abandons) the orphaned build and ends its session, lock included;
    # meanwhile the next call waits for that lock rather than touch a build in progress.
    assert _runner.upgrade(with_index, database.url_string, 60, NO_BOUND) == "0003"
    state = index_state(database)
    assert state is not None
    assert state.valid
    assert version_rows(database) == ["0003"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_two_replicas_at_once_build_the_index_once(
    database: Database, with_index: Path, tmp_path: Path
) -> None:
    """Two processes upgrading at once: one builds while the other waits for the lock; both end at 0003."""
    log = tmp_path / "runs.log"
    (with_index / "versions" / "0003_an_index.py").unlink()
    add_revision(
        with_index, "0003", "0002", INDEX_REVISION + "\n" + record_body(log, "0003"), message="an index"
    )
    with open_write(database) as holder:
        replicas = [upgrade_process(with_index, database) for _ in range(2)]
        try:
            waiting_build(database)
            time.sleep(0.5)  # long enough for the other replica to reach the migration lock
            holder.rollback()
            outputs = [replica.communicate(timeout=120) for replica in replicas]
        finally:
            for replica in replicas:
                if replica.poll() is None:
                    replica.kill()
    assert [out.strip() for out, _err in outputs] == ["0003", "0003"], outputs
    assert runs(log) == {(str(database.url.database), "0003"): 1}
    state = index_state(database)
    assert state is not None
    assert state.valid
    assert version_rows(database) == ["0003"]


# -- A caller's connection -------------------------------------------------------------------


@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_in_the_callers_transaction_a_plain_index_is_built_and_nothing_committed(
    database: Database, with_index: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """CONCURRENTLY cannot run in the caller's transaction: a plain index is built there, with a warning."""
    caplog.set_level(logging.WARNING, logger="granite_assets")
    with engine_for(database) as engine, engine.connect() as connection:
        connection.begin()
        with statements_sent(engine) as sent:
            assert _runner.upgrade(with_index, connection, 30) == "0003"
        assert connection.in_transaction()
        assert index_state(database) is None  # another session sees nothing until the caller commits
        connection.commit()
    assert [s for s in sent if s.startswith("CREATE INDEX")] == [
        f'CREATE INDEX "{INDEX.replace(chr(34), chr(34) * 2)}" ON {TABLE} ("Label")'
    ]
    state = index_state(database)
    assert state is not None
    assert state.valid
    assert version_rows(database) == ["0003"]
    (warning,) = [r.getMessage() for r in caplog.records if "inside your transaction" in r.getMessage()]
    assert f"a plain CREATE INDEX {INDEX} inside your transaction" in warning
    assert f"writes to {TABLE} wait until your transaction ends" in warning


@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_in_the_callers_transaction_an_invalid_index_left_before_is_dropped_first(
    database: Database, with_index: Path
) -> None:
    """An INVALID index left by an interrupted build is dropped and rebuilt in a caller's transaction too."""
    with open_write(database) as holder:
        with pytest.raises(MigrationError):
            _runner.upgrade(with_index, database.url_string, 30, DDLLimits(0.5, 0))
        holder.rollback()
    left = index_state(database)
    assert left is not None
    assert not left.valid

    with engine_for(database) as engine, engine.begin() as connection:
        assert _runner.upgrade(with_index, connection, 30) == "0003"

    rebuilt = index_state(database)
    assert rebuilt is not None
    assert rebuilt.valid
    assert rebuilt.oid != left.oid


@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_in_the_callers_transaction_a_downgrade_drops_the_index_plainly(
    database: Database, with_index: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """drop_index_concurrently() in the caller's transaction runs a plain DROP INDEX there, and says so."""
    assert _runner.upgrade(with_index, database.url_string, 30) == "0003"
    caplog.set_level(logging.WARNING, logger="granite_assets")
    with engine_for(database) as engine, engine.connect() as connection:
        connection.begin()
        with statements_sent(engine) as sent:
            assert _runner.downgrade(with_index, connection, "0002", 30) == "0002"
        assert index_state(database) is not None  # not committed yet
        connection.commit()
    assert [s for s in sent if s.startswith("DROP INDEX")] == [
        f'DROP INDEX "{INDEX.replace(chr(34), chr(34) * 2)}"'
    ]
    assert index_state(database) is None
    assert version_rows(database) == ["0002"]
    assert any(
        f"a plain DROP INDEX {INDEX} inside your transaction" in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_a_callers_autocommit_connection_gets_the_concurrent_build_and_is_handed_back(
    database: Database, with_index: Path
) -> None:
    """A connection in AUTOCOMMIT is migrated as one of granite-assets' own: concurrently, then as it came."""
    with engine_for(database) as engine, engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        with statements_sent(engine) as sent:
            assert _runner.upgrade(with_index, connection, 30) == "0003"
        assert connection.get_execution_options()["isolation_level"] == "AUTOCOMMIT"
        assert not connection.in_transaction()
    assert any(s.startswith("CREATE INDEX CONCURRENTLY") for s in sent), sent
    state = index_state(database)
    assert state is not None
    assert state.valid
    assert version_rows(database) == ["0003"]


# -- Offline SQL -----------------------------------------------------------------------------


def statements_of(script: str) -> list[str]:
    """The script's statements and comments, one per item, blank lines dropped."""
    return [" ".join(part.split()) for part in script.split("\n\n") if part.strip()]


def test_offline_sql_builds_the_index_between_transactions(environment_copy: Path) -> None:
    """PostgreSQL's script commits before CREATE INDEX CONCURRENTLY and begins again for the version row."""
    add_revision(
        environment_copy,
        "0002",
        "0001",
        f'op.create_table("{TABLE}", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("Label", sa.Text))',
        message="a table",
    )
    add_revision(environment_copy, "0003", "0002", INDEX_REVISION, DROP_REVISION, message="an index")

    up = statements_of(_runner.offline_sql(environment_copy, "postgresql", "0002", "head", downgrade=False))
    sql_name = '"' + INDEX.replace('"', '""') + '"'
    assert up[0] == "BEGIN;"
    assert up[1] == "-- Running upgrade 0002 -> 0003"
    assert up[2] == "COMMIT;"
    assert up[3].startswith("-- ")
    assert f"DROP INDEX CONCURRENTLY {sql_name}" in up[3]
    assert up[4:] == [
        f'CREATE INDEX CONCURRENTLY {sql_name} ON {TABLE} ("Label");',
        "BEGIN;",
        (
            "UPDATE granite_assets_alembic_version SET version_num='0003' "
            "WHERE granite_assets_alembic_version.version_num = '0002';"
        ),
        "COMMIT;",
    ]

    down = statements_of(_runner.offline_sql(environment_copy, "postgresql", "0003", "0002", downgrade=True))
    assert down[:4] == [
        "BEGIN;",
        "-- Running downgrade 0003 -> 0002",
        "COMMIT;",
        f"DROP INDEX CONCURRENTLY IF EXISTS {sql_name};",
    ]
    assert down[4] == "BEGIN;"

    for dialect, quote in (("mysql", f"`{INDEX}`"), ("sqlite", sql_name)):
        plain = _runner.offline_sql(environment_copy, dialect, "0002", "head", downgrade=False)
        assert f"CREATE INDEX {quote} ON {TABLE}" in plain
        assert "CONCURRENTLY" not in plain
        assert "COMMIT" not in plain
