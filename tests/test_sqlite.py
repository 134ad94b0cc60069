"""SQLite's own rules: table rebuilds with the host's foreign keys on, and the URL's busy timeout."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import BACKENDS, Database, add_revision, backend_params
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import NullPool
from support import holding_lock, version_rows

from granite_assets.migrations import MigrationFailedError, _runner

pytestmark = pytest.mark.parametrize(
    "backend", backend_params([b for b in BACKENDS if b.name == "sqlite"]), indirect=True
)

ASSET_TABLE = """op.create_table(
    "granite_assets_asset",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(40)),
)"""
REBUILD = """with op.batch_alter_table("granite_assets_asset", recreate="always") as batch:
    batch.alter_column("name", type_=sa.String(80))"""


def engine_with_foreign_keys(database: Database) -> Engine:
    """The host's engine: SQLite with foreign keys enforced on every connection, as hosts often set."""
    engine = create_engine(database.url, poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def enforce(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    return engine


def host_orders(database: Database) -> None:
    """The host's table, whose rows go with the granite-assets asset they refer to."""
    database.execute(
        "CREATE TABLE host_orders (id INTEGER PRIMARY KEY, "
        "asset_id INTEGER NOT NULL REFERENCES granite_assets_asset (id) ON DELETE CASCADE)",
        "INSERT INTO granite_assets_asset (id, name) VALUES (1, 'logo')",
        "INSERT INTO host_orders (id, asset_id) VALUES (1, 1), (2, 1)",
    )


def test_table_rebuild_keeps_the_hosts_rows(database: Database, environment_copy: Path) -> None:
    """A batch revision rebuilding a table the host refers to with ON DELETE CASCADE keeps all its rows."""
    add_revision(environment_copy, "0002", "0001", ASSET_TABLE, message="asset table")
    engine = engine_with_foreign_keys(database)
    try:
        assert _runner.upgrade(environment_copy, engine, 30) == "0002"
        host_orders(database)
        add_revision(environment_copy, "0003", "0002", REBUILD, message="rebuild asset table")
        assert _runner.upgrade(environment_copy, engine, 30) == "0003"
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # back on
            assert connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    finally:
        engine.dispose()
    assert database.scalar_rows("SELECT count(*) FROM host_orders") == [2]
    assert version_rows(database) == ["0003"]


def test_revision_that_breaks_a_foreign_key_commits_nothing(
    database: Database, environment_copy: Path
) -> None:
    """A revision leaving rows that break a foreign key fails the check before the commit: nothing stays."""
    add_revision(environment_copy, "0002", "0001", ASSET_TABLE, message="asset table")
    engine = engine_with_foreign_keys(database)
    try:
        _runner.upgrade(environment_copy, engine, 30)
        host_orders(database)
        add_revision(
            environment_copy,
            "0003",
            "0002",
            'op.execute("DELETE FROM granite_assets_asset")',
            message="purge",
        )
        with pytest.raises(MigrationFailedError) as caught:
            _runner.upgrade(environment_copy, engine, 30)
    finally:
        engine.dispose()
    assert "2 row(s) of host_orders referring to granite_assets_asset" in str(caught.value)
    assert "rolled back" in str(caught.value)
    assert database.scalar_rows("SELECT count(*) FROM granite_assets_asset") == [1]
    assert database.scalar_rows("SELECT count(*) FROM host_orders") == [2]
    assert version_rows(database) == ["0002"]


def test_a_key_naming_our_table_in_capitals_is_checked_too(
    database: Database, environment_copy: Path
) -> None:
    """SQLite's names ignore case: a host key to GRANITE_ASSETS_ASSET that a revision breaks stops it."""
    add_revision(environment_copy, "0002", "0001", ASSET_TABLE, message="asset table")
    _runner.upgrade(environment_copy, database.url_string, 30)
    database.execute(
        "CREATE TABLE host_orders (id INTEGER PRIMARY KEY, "
        "asset_id INTEGER REFERENCES GRANITE_ASSETS_ASSET (id))",
        "INSERT INTO granite_assets_asset (id, name) VALUES (1, 'logo')",
        "INSERT INTO host_orders (id, asset_id) VALUES (1, 1)",
    )
    add_revision(
        environment_copy, "0003", "0002", 'op.execute("DELETE FROM granite_assets_asset")', message="purge"
    )
    engine = engine_with_foreign_keys(database)
    try:
        with pytest.raises(MigrationFailedError, match="1 row"):
            _runner.upgrade(environment_copy, engine, 30)
    finally:
        engine.dispose()
    assert version_rows(database) == ["0002"]
    assert database.scalar_rows("SELECT count(*) FROM granite_assets_asset") == [1]


def test_violations_that_were_there_before_do_not_block_the_upgrade(
    database: Database, environment_copy: Path
) -> None:
    """Rows that already broke a foreign key (written while the host had it off) are not ours to refuse."""
    add_revision(environment_copy, "0002", "0001", ASSET_TABLE, message="asset table")
    _runner.upgrade(environment_copy, database.url_string, 30)
    host_orders(database)
    database.execute("INSERT INTO host_orders (id, asset_id) VALUES (3, 99)")  # foreign keys are off here
    add_revision(environment_copy, "0003", "0002", REBUILD, message="rebuild asset table")
    engine = engine_with_foreign_keys(database)
    try:
        assert _runner.upgrade(environment_copy, engine, 30) == "0003"
    finally:
        engine.dispose()
    assert database.scalar_rows("SELECT count(*) FROM host_orders") == [3]


def malformed_key(database: Database, parent: str) -> None:
    """A host table whose foreign key refers to a column that is not unique: SQLite accepts it."""
    database.execute(
        "CREATE TABLE host_codes (code TEXT)",
        f"CREATE TABLE host_tags (id INTEGER PRIMARY KEY, code TEXT REFERENCES {parent} (code))",
    )


def test_a_malformed_foreign_key_elsewhere_in_the_hosts_schema_is_not_ours_to_check(
    database: Database, environment_copy: Path
) -> None:
    """A host key SQLite cannot check ("foreign key mismatch") on tables no revision touches is left alone."""
    malformed_key(database, "host_codes")
    add_revision(environment_copy, "0002", "0001", ASSET_TABLE, message="asset table")
    engine = engine_with_foreign_keys(database)
    try:
        assert _runner.upgrade(environment_copy, engine, 30) == "0002"
    finally:
        engine.dispose()
    assert version_rows(database) == ["0002"]


def test_a_malformed_foreign_key_to_granite_assets_tables_is_named(
    database: Database, environment_copy: Path
) -> None:
    """A host key to our tables that SQLite cannot check fails clearly, naming it, and changes nothing."""
    add_revision(environment_copy, "0002", "0001", ASSET_TABLE, message="asset table")
    _runner.upgrade(environment_copy, database.url_string, 30)
    database.execute(
        "CREATE TABLE host_tags (id INTEGER PRIMARY KEY, "
        "asset_name TEXT REFERENCES granite_assets_asset (name))"  # name is not unique
    )
    add_revision(environment_copy, "0003", "0002", REBUILD, message="rebuild asset table")
    engine = engine_with_foreign_keys(database)
    try:
        with pytest.raises(MigrationFailedError) as caught:
            _runner.upgrade(environment_copy, engine, 30)
    finally:
        engine.dispose()
    assert "host_tags" in str(caught.value)
    assert "foreign key mismatch" in str(caught.value)
    assert "Nothing was changed" in str(caught.value)
    assert version_rows(database) == ["0002"]


def test_lock_wait_is_lock_timeout_whatever_the_urls_busy_timeout(
    database: Database, environment_copy: Path
) -> None:
    """A URL's ?timeout= sets the busy timeout of statements; the wait for the migration lock is lock_timeout.

    Another connection holds the write lock for a second and a half: with the URL's 0.1 s as the
    wait, the upgrade would fail; with lock_timeout's 60 s, it waits and succeeds.
    """
    add_revision(environment_copy, "0002", "0001", message="second")
    held = threading.Event()

    def hold_for_a_while() -> None:
        with holding_lock(database):
            held.set()
            time.sleep(1.5)

    holder = threading.Thread(target=hold_for_a_while)
    holder.start()
    try:
        assert held.wait(30)
        assert (
            _runner.upgrade(environment_copy, database.url.update_query_dict({"timeout": "0.1"}), 60)
            == "0002"
        )
    finally:
        holder.join()


DEFERRED_WORKER = """
import sys
from pathlib import Path
from sqlalchemy import create_engine, event
from granite_assets.migrations import _runner
from granite_assets.migrations import MigrationError

directory, url = Path(sys.argv[1]), sys.argv[2]
engine = create_engine(url)

# SQLAlchemy's recipe for pysqlite transactions: the driver's own BEGIN off, a plain (deferred) one on.
@event.listens_for(engine, "connect")
def _connect(dbapi_connection, record):
    dbapi_connection.isolation_level = None

@event.listens_for(engine, "begin")
def _begin(connection):
    connection.exec_driver_sql("BEGIN")

try:
    with engine.begin() as connection:
        print(_runner.upgrade(directory, connection, 60))
except MigrationError as exc:
    print(type(exc).__name__, exc)
"""


@pytest.mark.slow
def test_deferred_transactions_that_cannot_wait_for_the_write_lock_say_so(
    database: Database, environment_copy: Path, tmp_path: Path
) -> None:
    """Callers' deferred transactions that have read cannot wait for another's write lock (SQLite would
    deadlock): those that lose get UnsupportedConnectionError saying what to do, not a bookkeeping failure."""
    add_revision(environment_copy, "0002", "0001", "import time\ntime.sleep(1.5)", message="slow")
    script = tmp_path / "worker.py"
    script.write_text(DEFERRED_WORKER)
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(environment_copy), database.url_string],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [worker.communicate(timeout=120)[0].strip() for worker in workers]
    assert "0002" in outputs
    for output in outputs:
        assert output == "0002" or (
            output.startswith("UnsupportedConnectionError") and "BEGIN IMMEDIATE" in output
        ), output
    assert version_rows(database) == ["0002"]


def engine_with_the_pysqlite_recipe(database: Database, *, foreign_keys: bool = False) -> Engine:
    """SQLAlchemy's recipe for real pysqlite transactions: the driver's BEGIN off, a BEGIN per transaction."""
    engine = create_engine(database.url, poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def no_driver_begin(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None
        if foreign_keys:
            dbapi_connection.execute("PRAGMA foreign_keys = ON")

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


@pytest.mark.parametrize("target", ["engine", "connection"])
def test_the_pysqlite_transaction_recipe_is_migrated(
    database: Database, environment_copy: Path, target: str
) -> None:
    """An engine on SQLAlchemy's pysqlite recipe, and a fresh connection of it, are migrated and committed."""
    add_revision(environment_copy, "0002", "0001", ASSET_TABLE, message="asset")
    engine = engine_with_the_pysqlite_recipe(database)
    try:
        if target == "engine":
            assert _runner.upgrade(environment_copy, engine, 30) == "0002"
        else:
            with engine.connect() as connection:
                assert _runner.upgrade(environment_copy, connection, 30) == "0002"
                assert not connection.in_transaction()
    finally:
        engine.dispose()
    assert version_rows(database) == ["0002"]


def test_the_pysqlite_recipe_with_foreign_keys_on_keeps_the_hosts_rows_through_a_rebuild(
    database: Database, environment_copy: Path
) -> None:
    """With the recipe every statement begins a transaction, where PRAGMA foreign_keys is ignored: the
    switch must still happen, or a table rebuild deletes the host's rows through ON DELETE CASCADE."""
    add_revision(environment_copy, "0002", "0001", ASSET_TABLE, message="asset")
    add_revision(environment_copy, "0003", "0002", REBUILD, message="rebuild")
    _runner.upgrade(environment_copy, database.url_string, 30)
    _runner.downgrade(environment_copy, database.url_string, "0002", 30)
    database.execute(
        "INSERT INTO granite_assets_asset (id, name) VALUES (1, 'a')",
        "CREATE TABLE host_orders (id INTEGER PRIMARY KEY, asset_id INTEGER "
        "REFERENCES granite_assets_asset (id) ON DELETE CASCADE)",
        "INSERT INTO host_orders (id, asset_id) VALUES (1, 1)",
    )
    engine = engine_with_the_pysqlite_recipe(database, foreign_keys=True)
    try:
        assert _runner.upgrade(environment_copy, engine, 30) == "0003"
    finally:
        engine.dispose()
    assert database.scalar_rows("SELECT count(*) FROM host_orders") == [1]
