"""A caller's Connection: its transaction, its isolation level, AUTOCOMMIT, and what is refused."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import BACKENDS, Backend, Database, add_revision, backend_params, fresh_database
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool, QueuePool
from support import (
    HOST_REVISION,
    Workers,
    add_table_revisions,
    holding_lock,
    lock_is_free,
    record_body,
    runs,
    version_rows,
)

from granite_assets.migrations import (
    VERSION_TABLE,
    DatabaseConnectionError,
    MigrationError,
    MigrationFailedError,
    MigrationLockTimeoutError,
    UnsupportedConnectionError,
    _isolation,
    _runner,
    check_up_to_date,
    current_revision,
    head_revision,
    upgrade_to_head,
)

TRANSACTIONAL = [b for b in BACKENDS if b.name != "mysql"]
SERVERS = [b for b in BACKENDS if b.name != "sqlite"]
POSTGRESQL = [b for b in BACKENDS if b.name == "postgresql"]
MYSQL = [b for b in BACKENDS if b.name == "mysql"]
SQLITE = [b for b in BACKENDS if b.name == "sqlite"]


@contextmanager
def engine_for(database: Database, **options: object) -> Iterator[Engine]:
    """An engine of the host's, disposed after."""
    engine = create_engine(database.url, poolclass=NullPool, **options)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", backend_params(TRANSACTIONAL), indirect=True)
def test_connection_target_commits_nothing(database: Database) -> None:
    """In a caller's open transaction the work stays in that transaction until the caller commits."""
    with engine_for(database) as engine, engine.connect() as connection:
        connection.begin()
        assert upgrade_to_head(connection) == head_revision()
        assert connection.in_transaction()
        assert current_revision(connection) == head_revision()
        assert version_rows(database) is None  # not committed yet: another session sees nothing
        connection.commit()
    assert version_rows(database) == [head_revision()]


@pytest.mark.parametrize("backend", backend_params(TRANSACTIONAL), indirect=True)
def test_connection_target_rolled_back_leaves_no_trace(database: Database) -> None:
    """When the caller rolls back, PostgreSQL and SQLite keep nothing of the upgrade."""
    with engine_for(database) as engine, engine.connect() as connection:
        connection.begin()
        upgrade_to_head(connection)
        connection.rollback()
    assert VERSION_TABLE not in database.table_names()


@pytest.mark.parametrize("backend", backend_params(MYSQL), indirect=True)
def test_mysql_connection_with_pending_work_is_refused(database: Database) -> None:
    """On MariaDB a transaction cannot hold DDL: a caller's connection with work pending is refused."""
    with engine_for(database) as engine, engine.connect() as connection:
        connection.execute(text("CREATE TABLE host_orders (id INTEGER PRIMARY KEY)"))
        connection.commit()
        connection.execute(text("INSERT INTO host_orders (id) VALUES (1)"))
        with pytest.raises(UnsupportedConnectionError, match=r"begins, or pass the Engine"):
            upgrade_to_head(connection)
        connection.rollback()  # the caller's own insert was not committed by anything of ours
    assert database.table_names() == {"host_orders"}
    assert database.scalar_rows("SELECT count(*) FROM host_orders") == [0]
    assert lock_is_free(database)


@pytest.mark.parametrize("backend", backend_params(MYSQL), indirect=True)
def test_mysql_connection_at_head_is_a_read(database: Database) -> None:
    """On MariaDB a caller's connection to a database at head gets its revision: the no-op path is a read."""
    upgrade_to_head(database.url_string)
    with engine_for(database) as engine, engine.connect() as connection:
        assert upgrade_to_head(connection) == head_revision()


@pytest.mark.parametrize("backend", backend_params(MYSQL), indirect=True)
def test_mysql_snapshot_older_than_the_version_table_is_told_to_retry(database: Database) -> None:
    """A MariaDB transaction that began before granite-assets' table existed is refused, not a raw 1412."""
    with engine_for(database) as engine, engine.connect() as connection:
        connection.execute(text("CREATE TABLE host_orders (id INTEGER PRIMARY KEY)"))
        connection.commit()
        connection.execute(text("SELECT * FROM host_orders")).fetchall()  # the snapshot is taken here
        assert upgrade_to_head(engine) == head_revision()  # another process migrates
        with pytest.raises(UnsupportedConnectionError, match="roll back your transaction and call again"):
            upgrade_to_head(connection)
        connection.rollback()
        assert upgrade_to_head(connection) == head_revision()  # a new transaction sees the table


@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_noop_on_a_callers_connection_takes_no_lock(database: Database) -> None:
    """At head, a caller's PostgreSQL transaction is not made to hold the migration lock until it ends."""
    upgrade_to_head(database.url_string)
    with engine_for(database) as engine, engine.connect() as connection:
        assert upgrade_to_head(connection) == head_revision()
        assert lock_is_free(database)  # checked from another session while the transaction is open
        connection.rollback()


@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_repeatable_read_transaction_behind_another_migration_is_told_to_retry(
    database: Database, environment_copy: Path
) -> None:
    """A REPEATABLE READ snapshot older than another process's migration is refused, not misapplied."""
    add_table_revisions(environment_copy, "rr")
    _runner.upgrade(environment_copy, database.url_string, 30)
    _runner.downgrade(environment_copy, database.url_string, "0001", 30)
    with engine_for(database, isolation_level="REPEATABLE READ") as engine, engine.connect() as connection:
        connection.begin()
        assert _runner.current_revision(connection, 30) == "0001"  # the snapshot is taken here
        _runner.upgrade(environment_copy, database.url_string, 30)  # another process migrates
        with pytest.raises(UnsupportedConnectionError, match="roll back your transaction and call again"):
            _runner.upgrade(environment_copy, connection, 30)
        connection.rollback()
        connection.begin()
        assert _runner.upgrade(environment_copy, connection, 30) == "0003"  # a new transaction: at head
        connection.rollback()
    assert version_rows(database) == ["0003"]


@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_repeatable_read_transaction_migrates_when_nobody_else_did(
    database: Database, environment_copy: Path
) -> None:
    """A REPEATABLE READ transaction whose snapshot is current migrates inside it, as at READ COMMITTED."""
    add_table_revisions(environment_copy, "rr")
    with engine_for(database, isolation_level="REPEATABLE READ") as engine, engine.connect() as connection:
        connection.begin()
        assert _runner.upgrade(environment_copy, connection, 30) == "0003"
        assert version_rows(database) is None  # in the caller's transaction, not committed yet
        connection.commit()
    assert version_rows(database) == ["0003"]


@pytest.mark.parametrize("backend", backend_params(SQLITE), indirect=True)
def test_sqlite_connection_with_foreign_keys_on_is_refused(database: Database) -> None:
    """With PRAGMA foreign_keys on, SQLite cannot rebuild tables inside a transaction: refused, untouched."""
    with engine_for(database) as engine, engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys = ON")  # SQLAlchemy begins a transaction here
        with pytest.raises(UnsupportedConnectionError, match="PRAGMA foreign_keys is ON"):
            upgrade_to_head(connection)
        connection.rollback()
    assert version_rows(database) is None


@pytest.mark.parametrize("backend", backend_params(), indirect=True)
def test_autocommit_connection_migrates_like_its_engine(database: Database, environment_copy: Path) -> None:
    """A connection in AUTOCOMMIT has no transaction to run in: each revision is committed, under the lock."""
    add_table_revisions(environment_copy, "ac")
    statements: list[str] = []
    with engine_for(database) as engine:
        event.listen(engine, "before_cursor_execute", lambda *args: statements.append(str(args[2])))
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            assert _runner.upgrade(environment_copy, connection, 30) == "0003"
            assert version_rows(database) == ["0003"]  # committed, seen from another session
    if database.backend.name == "postgresql":
        assert any("pg_try_advisory_lock(" in s for s in statements)  # the session lock, not the xact one
    elif database.backend.name == "mysql":
        assert any("GET_LOCK" in s for s in statements)
    assert lock_is_free(database)


@pytest.mark.parametrize("backend", backend_params(), indirect=True)
def test_autocommit_engine_still_rolls_back_a_failed_revision(
    database: Database, environment_copy: Path
) -> None:
    """From an engine in AUTOCOMMIT, a revision that fails half-way keeps none of its data changes."""
    add_revision(
        environment_copy,
        "0002",
        "0001",
        'op.create_table("granite_assets_notes", sa.Column("id", sa.Integer, primary_key=True))',
        message="create notes",
    )
    add_revision(
        environment_copy,
        "0003",
        "0002",
        'op.execute("INSERT INTO granite_assets_notes (id) VALUES (1)")\n'
        'raise RuntimeError("broke after the insert")',
        message="insert then break",
    )
    with (
        engine_for(database, isolation_level="AUTOCOMMIT") as engine,
        pytest.raises(MigrationFailedError) as caught,
    ):
        _runner.upgrade(environment_copy, engine, 30)
    assert caught.value.revision == "0003"
    if database.backend.name == "sqlite":  # one transaction for the call: nothing at all stays
        assert version_rows(database) is None
    else:  # 0002 committed; 0003's insert was rolled back with its transaction
        assert version_rows(database) == ["0002"]
        assert database.scalar_rows("SELECT id FROM granite_assets_notes") == []


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(), indirect=True)
def test_replicas_on_autocommit_connections_apply_each_revision_once(
    database: Database, environment_copy: Path, tmp_path: Path
) -> None:
    """Eight processes passing AUTOCOMMIT connections to one fresh database all succeed, each body once."""
    log = tmp_path / "runs.log"
    add_revision(environment_copy, "0002", "0001", record_body(log, "0002"), message="recorded")
    with Workers(8, environment_copy, 120, tmp_path / "workers", autocommit_connection=True) as workers:
        workers.start(database.url_string)
        results = workers.results()
    assert results == [{"revision": "0002"}] * 8
    assert runs(log) == {(str(database.url.database), "0002"): 1}
    assert version_rows(database) == ["0002"]


@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_callers_transaction_outlives_a_lock_timeout(database: Database, environment_copy: Path) -> None:
    """A caller's transaction that timed out waiting for the lock is left usable, nothing of ours in it."""
    add_table_revisions(environment_copy, "wait")
    with engine_for(database) as engine, engine.connect() as connection:
        with holding_lock(database), pytest.raises(MigrationLockTimeoutError):
            _runner.upgrade(environment_copy, connection, 1)
        assert connection.execute(text("SELECT 1")).scalar() == 1
        assert _runner.upgrade(environment_copy, connection, 30) == "0003"
        connection.commit()
    assert version_rows(database) == ["0003"]


@pytest.mark.parametrize("backend", backend_params(), indirect=True)
def test_autocommit_engine_commits_the_migration(database: Database, environment_copy: Path) -> None:
    """From an engine in AUTOCOMMIT, a successful migration is committed and seen by other sessions."""
    add_table_revisions(environment_copy, "ace")
    with engine_for(database, isolation_level="AUTOCOMMIT") as engine:
        assert _runner.upgrade(environment_copy, engine, 30) == "0003"
    assert version_rows(database) == ["0003"]
    assert {"granite_assets_ace0002", "granite_assets_ace0003"} <= database.table_names()
    assert lock_is_free(database)


@pytest.mark.parametrize("backend", backend_params(), indirect=True)
def test_autocommit_connection_needs_no_second_connection(database: Database, environment_copy: Path) -> None:
    """An AUTOCOMMIT connection, its engine's only one, is migrated on itself and left in AUTOCOMMIT."""
    add_table_revisions(environment_copy, "one")
    engine = create_engine(database.url, poolclass=QueuePool, pool_size=1, max_overflow=0, pool_timeout=1)
    try:
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            assert _runner.upgrade(environment_copy, connection, 30) == "0003"
            assert _runner.upgrade(environment_copy, connection, 30) == "0003"  # the no-op path too
            assert _isolation.in_autocommit(connection)
            assert not connection.in_transaction()
    finally:
        engine.dispose()
    assert version_rows(database) == ["0003"]
    assert lock_is_free(database)


@pytest.mark.parametrize("backend", backend_params(SERVERS), indirect=True)
def test_autocommit_connection_is_migrated_where_it_points(database: Database, tmp_path: Path) -> None:
    """An AUTOCOMMIT connection moved to another database (USE) or schema (search_path) is migrated there."""
    with fresh_database(database.backend, tmp_path) as other, engine_for(database) as engine:
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            if database.backend.name == "mysql":
                connection.execute(text(f"USE {other.url.database}"))
            else:
                connection.execute(text("CREATE SCHEMA tenant"))
                connection.execute(text("SET search_path TO tenant"))
            assert upgrade_to_head(connection) == head_revision()
            assert current_revision(connection) == head_revision()
        if database.backend.name == "mysql":
            assert version_rows(other) == [head_revision()]
            assert database.table_names() == set()
        else:
            found = "SELECT table_schema FROM information_schema.tables WHERE table_name = :name"
            with engine.connect() as connection:
                assert connection.execute(text(found), {"name": VERSION_TABLE}).scalars().all() == ["tenant"]


@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_repeatable_read_reread_with_no_free_connection_says_so(
    database: Database, environment_copy: Path
) -> None:
    """The REPEATABLE READ re-read, finding the engine's pool exhausted, says so instead of a raw timeout."""
    add_table_revisions(environment_copy, "rrp")
    engine = create_engine(
        database.url,
        poolclass=QueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=1,
        isolation_level="REPEATABLE READ",
    )
    try:
        with engine.connect() as connection:
            connection.begin()
            with pytest.raises(DatabaseConnectionError, match="pool") as caught:
                _runner.upgrade(environment_copy, connection, 30)
            assert "pool_size" in str(caught.value)
            connection.rollback()
    finally:
        engine.dispose()
    assert version_rows(database) is None


@pytest.mark.parametrize("backend", backend_params(SERVERS), indirect=True)
def test_engine_with_schema_translate_map_is_refused(database: Database, tmp_path: Path) -> None:
    """An Engine whose schema_translate_map moves the default schema is refused before anything is written."""
    with fresh_database(database.backend, tmp_path) as other, engine_for(database) as engine:
        schema = str(other.url.database)
        if database.backend.name == "postgresql":
            schema = "tenant"
            database.execute("CREATE SCHEMA tenant")
        translated = engine.execution_options(schema_translate_map={None: schema})
        for call in (upgrade_to_head, upgrade_to_head, current_revision):
            with pytest.raises(UnsupportedConnectionError, match="schema_translate_map"):
                call(translated)
        schemas = ", ".join(f"'{name}'" for name in ("public", "tenant", database.url.database, schema))
        where = f"SELECT table_schema FROM information_schema.tables WHERE table_schema IN ({schemas})"
        assert database.scalar_rows(f"{where} AND table_name = '{VERSION_TABLE}'") == []


@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_aborted_transaction_gets_a_migration_error(database: Database) -> None:
    """A caller's PostgreSQL transaction aborted by an earlier statement is told to roll back."""
    with engine_for(database) as engine, engine.connect() as connection:
        with pytest.raises(DBAPIError):
            connection.execute(text("SELECT no_such_column"))
        for call in (upgrade_to_head, current_revision, check_up_to_date):
            with pytest.raises(MigrationError, match="roll it back"):
                call(connection)
        connection.rollback()
        assert upgrade_to_head(connection) == head_revision()


# -- A connection with no transaction open -----------------------------------------------------

HOST_ENV = """
from alembic import context
from sqlalchemy import engine_from_config, pool
from granite_assets.migrations import {function}

config = context.config
connectable = engine_from_config(
    config.get_section(config.config_ini_section, {{}}), prefix="sqlalchemy.", poolclass=pool.NullPool
)
with connectable.connect() as connection:
    {function}(connection)  # granite-assets first, on the same connection
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
"""


@pytest.mark.parametrize(
    ("function", "at_head"),
    [
        ("upgrade_to_head", True),
        ("upgrade_to_head", False),
        ("current_revision", True),
        ("check_up_to_date", True),
    ],
    ids=["upgrade-at-head", "upgrade-pending", "current_revision", "check_up_to_date"],
)
@pytest.mark.parametrize("backend", backend_params(), indirect=True)
def test_a_call_on_the_hosts_env_py_connection_leaves_the_hosts_run_to_commit(
    database: Database, function: str, at_head: bool, tmp_path: Path
) -> None:
    """A call in the host's env.py, before context.configure(), leaves no transaction for Alembic to mistake
    for the host's own: the host's revision is committed, and so is granite-assets' migration."""
    from alembic import command
    from alembic.config import Config

    if at_head:
        upgrade_to_head(database.url_string)
    root = tmp_path / "host"
    (root / "versions").mkdir(parents=True)
    (root / "env.py").write_text(HOST_ENV.format(function=function))
    (root / "versions" / "host1.py").write_text(HOST_REVISION)
    config = Config()
    config.set_main_option("script_location", str(root))
    config.set_main_option("sqlalchemy.url", database.url_string.replace("%", "%%"))
    command.upgrade(config, "head")
    assert "host_orders" in database.table_names()
    assert version_rows(database) == [head_revision()]


@pytest.mark.parametrize("backend", backend_params(), indirect=True)
def test_a_connection_with_no_transaction_open_is_migrated_and_committed(
    database: Database, environment_copy: Path
) -> None:
    """With no transaction of the caller's to join, each revision is committed under the session lock, on
    every backend (MariaDB and SQLite with foreign keys on included), and the connection comes back as it
    came: no transaction open, its isolation level unchanged."""
    add_table_revisions(environment_copy, "fresh")
    with engine_for(database) as engine, engine.connect() as connection:
        if database.backend.name == "sqlite":
            connection.exec_driver_sql("PRAGMA foreign_keys = ON")
            connection.commit()
        level = connection.get_isolation_level()
        assert _runner.upgrade(environment_copy, connection, 30) == "0003"
        assert version_rows(database) == ["0003"]  # committed: seen from another session
        assert not connection.in_transaction()
        assert not _isolation.in_autocommit(connection)
        assert connection.get_isolation_level() == level
        assert _runner.current_revision(connection, 30) == "0003"
        assert not connection.in_transaction()
        if database.backend.name == "sqlite":
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert lock_is_free(database)


@pytest.mark.parametrize("backend", backend_params(POSTGRESQL), indirect=True)
def test_a_connection_set_to_its_own_isolation_level_gets_it_back(
    database: Database, environment_copy: Path
) -> None:
    """An isolation level the host set on the connection itself is restored after a migration on it."""
    add_table_revisions(environment_copy, "level")
    with engine_for(database) as engine, engine.connect() as connection:
        connection.execution_options(isolation_level="SERIALIZABLE")
        assert _runner.upgrade(environment_copy, connection, 30) == "0003"
        assert connection.get_isolation_level() == "SERIALIZABLE"
        assert not connection.in_transaction()


@pytest.mark.parametrize("backend", backend_params(MYSQL), indirect=True)
def test_an_engine_whose_pooled_connection_was_left_elsewhere_says_where_it_migrates(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A USE left on a pooled connection moves the tables (documented); the warning names the database."""
    engine = create_engine(database.url, poolclass=QueuePool, pool_size=1, max_overflow=0)
    try:
        with fresh_database(database.backend, tmp_path) as other:
            with engine.connect() as connection:
                connection.execute(text(f"USE {other.url.database}"))
            with caplog.at_level("WARNING", logger="granite_assets"):
                assert upgrade_to_head(engine) == head_revision()
            assert version_rows(other) == [head_revision()]
    finally:
        engine.dispose()
    said = f"in the database {other.url.database}, not the URL's"
    assert any(said in record.getMessage() for record in caplog.records)


POSTGRESQL_ALL_DRIVERS = [*POSTGRESQL, Backend("postgresql", "pg8000")]


@pytest.mark.parametrize(
    "statement",
    [
        "SET default_transaction_isolation = 'repeatable read'",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    ],
    ids=["default_transaction_isolation", "session_characteristics"],
)
@pytest.mark.parametrize("pending", [False, True], ids=["at-head", "pending"])
@pytest.mark.parametrize("backend", backend_params(POSTGRESQL_ALL_DRIVERS), indirect=True)
def test_an_isolation_level_the_session_set_itself_survives(
    database: Database, environment_copy: Path, statement: str, pending: bool
) -> None:
    """A session whose isolation the host set with SQL (a connect event, say) keeps it after a call."""
    add_table_revisions(environment_copy, "iso")
    if not pending:
        _runner.upgrade(environment_copy, database.url_string, 30)
    with engine_for(database) as engine, engine.connect() as connection:
        connection.exec_driver_sql(statement)
        connection.commit()
        assert _runner.upgrade(environment_copy, connection, 30) == "0003"
        level = connection.exec_driver_sql("SHOW transaction_isolation").scalar()
        connection.rollback()
    assert level == "repeatable read"


@pytest.mark.parametrize("backend", backend_params(), indirect=True)
def test_a_begin_block_on_an_autocommit_engine(database: Database, environment_copy: Path) -> None:
    """In ``with engine.begin()`` on an AUTOCOMMIT engine, a read works; a migration, which needs real
    transactions that SQLAlchemy will not begin inside that block, is refused before anything changes."""
    engine = create_engine(database.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    _runner.upgrade(environment_copy, database.url_string, 30)
    try:
        with engine.begin() as connection:
            assert _runner.upgrade(environment_copy, connection, 30) == "0001"
        add_table_revisions(environment_copy, "acb")
        refused = pytest.raises(UnsupportedConnectionError, match=r"outside the begin\(\) block")
        with engine.begin() as connection, refused:
            _runner.upgrade(environment_copy, connection, 30)
        assert version_rows(database) == ["0001"]
        _runner.upgrade(environment_copy, database.url_string, 30)
        with engine.begin() as connection:
            assert _runner.upgrade(environment_copy, connection, 30) == "0003"
    finally:
        engine.dispose()
    assert lock_is_free(database)
