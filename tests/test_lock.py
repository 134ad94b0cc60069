"""The migration lock, the start-up check, downgrades and offline SQL."""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import IO

import pytest
from conftest import BACKENDS, Database, add_revision, backend_params
from sqlalchemy import URL, create_engine
from sqlalchemy.pool import NullPool
from support import (
    add_table_revisions,
    holding_lock,
    lock_is_free,
    mysql_lock_name,
    new_password,
    snapshot,
    url_with_password,
    version_rows,
)

from granite_assets import migrations
from granite_assets.migrations import (
    VERSION_TABLE,
    DatabaseAheadError,
    DatabaseBehindError,
    InvalidURLError,
    MigrationLockTimeoutError,
    UnknownRevisionError,
    _runner,
    _waiting,
)
from granite_assets.migrations._backends.postgresql import LOCK_KEY as POSTGRESQL_LOCK_KEY

SERVER_BACKENDS = [b for b in BACKENDS if b.name != "sqlite"]


@pytest.fixture
def three_revisions(environment_copy: Path) -> Path:
    """The bundled environment plus revisions 0002 and 0003, each creating (and dropping) a table."""
    add_table_revisions(environment_copy, "t")
    return environment_copy


def test_lock_timeout_says_which_lock_where_and_how_to_find_the_holder(
    database: Database, environment_copy: Path
) -> None:
    """With the lock held elsewhere, upgrade times out naming lock, database and holder, changing nothing."""
    add_revision(
        environment_copy,
        "0002",
        "0001",
        'op.create_table("granite_assets_a", sa.Column("id", sa.Integer, primary_key=True))',
    )
    password = new_password()
    with url_with_password(database, password) as url:
        assert _runner.upgrade(environment_copy, url, 30) == "0002"
        add_revision(
            environment_copy,
            "0003",
            "0002",
            'op.create_table("granite_assets_b", sa.Column("id", sa.Integer, primary_key=True))',
        )
        before = snapshot(database)
        with holding_lock(database):
            with pytest.raises(MigrationLockTimeoutError) as caught:
                _runner.upgrade(environment_copy, url, 1)
            holders = found_holders(database, str(caught.value))
        assert snapshot(database) == before
    assert holders == (None if database.backend.name == "sqlite" else 1)  # the message's query works
    message = str(caught.value)
    assert password not in message
    assert password not in "".join(traceback.format_exception(caught.value))
    assert str(database.url.database) in message
    assert re.search(r"for more than 1 second\b", message)
    if database.backend.name == "postgresql":
        assert f"advisory lock {POSTGRESQL_LOCK_KEY}" in message
        assert "pg_locks" in message
        assert "pg_stat_activity" in message
    elif database.backend.name == "mysql":
        assert mysql_lock_name(database) in message
        assert "IS_USED_LOCK" in message
    else:
        assert "write lock" in message
        assert "fuser" in message


def found_holders(database: Database, message: str) -> int | None:
    """How many sessions the holder query in a lock-timeout message finds (``None``: SQLite has none)."""
    if database.backend.name == "postgresql":
        query = re.search(r"SELECT pid, .*? AND granted\)", message)
        assert query, message
        return len(database.scalar_rows(query.group()))
    if database.backend.name == "mysql":
        query = re.search(r"SELECT IS_USED_LOCK\('[^']+'\)", message)
        assert query, message
        return len([pid for pid in database.scalar_rows(query.group()) if pid is not None])
    return None


@pytest.mark.parametrize("backend", backend_params(SERVER_BACKENDS), indirect=True)
def test_lock_is_the_databases_however_the_url_names_it(database: Database, environment_copy: Path) -> None:
    """An engine whose URL leaves the database to connect_args still waits for that database's lock."""
    argument = {"postgresql": "dbname", "mysql": "database"}[database.backend.name]
    url = database.url
    no_database = URL.create(url.drivername, url.username, url.password, url.host, url.port)
    engine = create_engine(no_database, poolclass=NullPool, connect_args={argument: url.database})
    try:
        with holding_lock(database), pytest.raises(MigrationLockTimeoutError):
            _runner.upgrade(environment_copy, engine, 1)
    finally:
        engine.dispose()
    assert version_rows(database) is None


def test_noop_upgrade_takes_no_lock(database: Database, three_revisions: Path) -> None:
    """At head, upgrade, check_up_to_date and current_revision return while another session holds the lock."""
    assert _runner.upgrade(three_revisions, database.url_string, 30) == "0003"
    with holding_lock(database):
        assert _runner.upgrade(three_revisions, database.url_string, 1) == "0003"
        assert _runner.check_up_to_date(three_revisions, database.url_string, 1) == "0003"
        assert _runner.current_revision(database.url_string, 1) == "0003"
    assert lock_is_free(database)


def test_check_up_to_date_tells_behind_from_ahead(database: Database, three_revisions: Path) -> None:
    """check_up_to_date lists pending revisions when behind, names the unknown one when ahead."""
    url = database.url_string
    with pytest.raises(DatabaseBehindError) as fresh:
        _runner.check_up_to_date(three_revisions, url, 30)
    assert fresh.value.current is None
    assert fresh.value.pending == ("0001", "0002", "0003")

    _runner.upgrade(three_revisions, url, 30)
    _runner.downgrade(three_revisions, url, "0001", 30)
    with pytest.raises(DatabaseBehindError) as behind:
        _runner.check_up_to_date(three_revisions, url, 30)
    assert behind.value.current == "0001"
    assert behind.value.pending == ("0002", "0003")
    assert "0002 (table 0002), 0003 (table 0003)" in str(behind.value)

    _runner.upgrade(three_revisions, url, 30)
    assert _runner.check_up_to_date(three_revisions, url, 30) == "0003"

    database.execute(f"UPDATE {VERSION_TABLE} SET version_num = '9999'")
    with pytest.raises(DatabaseAheadError) as ahead:
        _runner.check_up_to_date(three_revisions, url, 30)
    assert ahead.value.revision == "9999"
    assert "9999" in str(ahead.value)
    assert "upgrade the granite-assets package" in str(ahead.value)


# Revision ids this release does not ship: one that sorts after the head, one that sorts before it.
AHEAD_REVISIONS = ["9999", "0000zz"]


@pytest.mark.parametrize("unknown", AHEAD_REVISIONS)
def test_ahead_means_a_revision_this_release_does_not_ship(
    database: Database, three_revisions: Path, unknown: str
) -> None:
    """An unknown revision is "ahead" wherever it sorts: upgrade and check refuse it and change nothing."""
    url = database.url_string
    _runner.upgrade(three_revisions, url, 30)
    _runner.downgrade(three_revisions, url, "0001", 30)
    database.execute(f"UPDATE {VERSION_TABLE} SET version_num = '{unknown}'")
    before = snapshot(database)

    with pytest.raises(DatabaseAheadError) as upgrading:
        _runner.upgrade(three_revisions, url, 30)
    with pytest.raises(DatabaseAheadError) as checking:
        _runner.check_up_to_date(three_revisions, url, 30)
    with pytest.raises(DatabaseAheadError) as public_upgrade:
        migrations.upgrade_to_head(url)
    with pytest.raises(DatabaseAheadError) as public_check:
        migrations.check_up_to_date(url)

    refused = (upgrading, checking, public_upgrade, public_check)
    assert [caught.value.revision for caught in refused] == [unknown] * len(refused)
    assert f"revision {unknown}, which this release does not ship" in str(upgrading.value)
    assert snapshot(database) == before
    assert lock_is_free(database)


@pytest.mark.parametrize("unknown", AHEAD_REVISIONS)
@pytest.mark.parametrize("destination", ["0001", "base"])
def test_downgrade_refuses_a_database_that_is_ahead(
    database: Database, three_revisions: Path, unknown: str, destination: str
) -> None:
    """Downgrading a database at a revision this release lacks raises DatabaseAheadError, changing nothing."""
    url = database.url_string
    _runner.upgrade(three_revisions, url, 30)
    database.execute(f"UPDATE {VERSION_TABLE} SET version_num = '{unknown}'")
    before = snapshot(database)

    with pytest.raises(DatabaseAheadError) as caught:
        _runner.downgrade(three_revisions, url, destination, 30)

    assert caught.value.revision == unknown
    assert snapshot(database) == before
    assert lock_is_free(database)


def test_public_check_on_a_fresh_database_lists_the_bundled_revisions(database: Database) -> None:
    """The public check_up_to_date on a never-migrated database lists every bundled revision as pending."""
    with pytest.raises(DatabaseBehindError) as caught:
        migrations.check_up_to_date(database.url_string)
    assert caught.value.pending == tuple(r.revision for r in migrations.revisions())
    assert version_rows(database) is None


def test_downgrade_to_a_revision_and_to_base(database: Database, three_revisions: Path) -> None:
    """downgrade reverts to a named revision, then to base (an empty version table); upgrade works again."""
    url = database.url_string
    _runner.upgrade(three_revisions, url, 30)
    assert _runner.downgrade(three_revisions, url, "0002", 30) == "0002"
    assert version_rows(database) == ["0002"]
    assert database.table_names() == {VERSION_TABLE, "granite_assets_t0002"}
    assert _runner.downgrade(three_revisions, url, "0002", 30) == "0002"  # already there: nothing to do
    assert _runner.downgrade(three_revisions, url, "base", 30) is None
    assert version_rows(database) == []
    assert database.table_names() == {VERSION_TABLE}
    assert _runner.upgrade(three_revisions, url, 30) == "0003"
    assert lock_is_free(database)


def test_downgrade_waits_for_the_lock(database: Database, three_revisions: Path) -> None:
    """downgrade takes the migration lock: while another session holds it, it times out, changing nothing."""
    _runner.upgrade(three_revisions, database.url_string, 30)
    before = snapshot(database)
    with holding_lock(database), pytest.raises(MigrationLockTimeoutError):
        _runner.downgrade(three_revisions, database.url_string, "base", 1)
    assert snapshot(database) == before


def test_downgrade_refuses_an_unknown_revision(database: Database, three_revisions: Path) -> None:
    """downgrade to a revision this release does not ship raises UnknownRevisionError listing the choices."""
    _runner.upgrade(three_revisions, database.url_string, 30)
    before = snapshot(database)
    with pytest.raises(UnknownRevisionError) as caught:
        _runner.downgrade(three_revisions, database.url_string, "0042", 30)
    assert "base, 0001, 0002, 0003" in str(caught.value)
    assert snapshot(database) == before


OFFLINE_TARGETS = [
    "postgresql",
    "mysql",
    "sqlite",
    "postgresql+psycopg2://admin:{password}@db.example.com:5432/app",
    "mysql+pymysql://admin:{password}@db.example.com/app",
]


@pytest.mark.parametrize("target", OFFLINE_TARGETS)
def test_offline_sql_uses_our_version_table_and_no_secret(
    target: str, caplog: pytest.LogCaptureFixture
) -> None:
    """upgrade_sql and downgrade_sql write our version table, never alembic_version, and no password."""
    caplog.set_level(logging.INFO, logger="granite_assets")
    password = new_password()
    given = target.format(password=password)
    upgrade = migrations.upgrade_sql(given)
    downgrade = migrations.downgrade_sql(given, "0001", "base")
    for sql in (upgrade, downgrade):
        assert VERSION_TABLE in sql
        assert not re.search(r"(?<!\w)alembic_version", sql)
        assert password not in sql
        assert "db.example.com" not in sql
    assert re.search(rf"CREATE TABLE {VERSION_TABLE}", upgrade)
    assert f"INSERT INTO {VERSION_TABLE} (version_num) VALUES ('0001')" in upgrade
    assert f"DELETE FROM {VERSION_TABLE}" in downgrade
    assert not [r for r in caplog.records if "revision" in r.getMessage()]  # nothing was applied


def test_offline_sql_refuses_unknown_revisions_and_dialects() -> None:
    """Offline SQL from a revision this release lacks, or for an unknown dialect, raises a clear error."""
    with pytest.raises(UnknownRevisionError, match="'0042' is not one granite-assets ships"):
        migrations.upgrade_sql("postgresql", "0042")
    with pytest.raises(UnknownRevisionError, match="'0042' is not one granite-assets ships"):
        migrations.downgrade_sql("mysql", "0042", "base")
    with pytest.raises(InvalidURLError, match="Unknown database dialect 'nosuchdatabase'"):
        migrations.upgrade_sql("nosuchdatabase")


@pytest.mark.parametrize("target", OFFLINE_TARGETS)
def test_offline_sql_from_a_revision(three_revisions: Path, target: str) -> None:
    """Offline SQL from a revision covers only the later ones and updates, not creates, the version table."""
    given = target.format(password=new_password())
    sql = _runner.offline_sql(three_revisions, given, "0001", "head", downgrade=False)
    assert "CREATE TABLE granite_assets_t0002" in sql
    assert "CREATE TABLE granite_assets_t0003" in sql
    assert f"CREATE TABLE {VERSION_TABLE}" not in sql
    assert f"UPDATE {VERSION_TABLE} SET version_num='0003' WHERE {VERSION_TABLE}.version_num = '0002'" in sql
    down = _runner.offline_sql(three_revisions, given, "0003", "0001", downgrade=True)
    assert "DROP TABLE granite_assets_t0003" in down
    assert "DROP TABLE granite_assets_t0002" in down
    assert f"UPDATE {VERSION_TABLE} SET version_num='0001'" in down


def test_downgrade_of_a_database_never_migrated_says_there_is_nothing_to_do(database: Database) -> None:
    """Downgrading an untouched database to a revision is a DatabaseBehindError; to base, a no-op."""
    with pytest.raises(DatabaseBehindError, match="never migrated it") as caught:
        migrations.downgrade(database.url_string, migrations.head_revision() or "")
    assert "nothing to downgrade" in str(caught.value)
    assert caught.value.current is None
    assert migrations.downgrade(database.url_string, "base") is None
    assert version_rows(database) is None


def test_downgrade_to_a_revision_above_the_database_is_refused(
    database: Database, three_revisions: Path
) -> None:
    """A downgrade 'up' to a newer revision is refused naming both, and changes nothing."""
    _runner.upgrade(three_revisions, database.url_string, 30)
    _runner.downgrade(three_revisions, database.url_string, "0001", 30)
    with pytest.raises(DatabaseBehindError, match=r"at revision 0001.*below 0003") as caught:
        _runner.downgrade(three_revisions, database.url_string, "0003", 30)
    assert caught.value.pending == ("0002", "0003")
    assert version_rows(database) == ["0001"]


def test_lock_wait_is_logged_once_then_now_and_again(
    database: Database,
    three_revisions: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Waiting for a held lock logs one line, then one per LOG_EVERY seconds with the time waited."""
    monkeypatch.setattr(_waiting, "LOG_EVERY", 0.4)
    caplog.set_level(logging.INFO, logger="granite_assets")
    with holding_lock(database), pytest.raises(MigrationLockTimeoutError):
        _runner.upgrade(three_revisions, database.url_string, 3)
    waiting = [r.getMessage() for r in caplog.records if "aiting for" in r.getMessage()]
    assert waiting[0].startswith("Waiting for")
    assert 2 <= len(waiting) <= 9  # about 3 s / 0.4 s, never one per poll
    assert all(line.startswith("Still waiting for") and " seconds " in line for line in waiting[1:])
    holder = "fuser" if database.backend.name == "sqlite" else "find its holder"
    assert all(holder in line for line in waiting)


INTERRUPTED_WAITER = """
import logging, sys
from pathlib import Path
from granite_assets.migrations import _runner
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
try:
    _runner.upgrade(Path(sys.argv[1]), sys.argv[2], 120)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


@pytest.mark.slow
def test_ctrl_c_interrupts_a_lock_wait(database: Database, three_revisions: Path) -> None:
    """SIGINT ends a wait for a held lock at once on every backend, SQLite's busy wait included."""
    waiting = threading.Event()

    def watch(stream: IO[str]) -> None:
        for line in stream:
            if line.startswith("Waiting for"):
                waiting.set()

    with (
        holding_lock(database),
        subprocess.Popen(
            [sys.executable, "-c", INTERRUPTED_WAITER, str(three_revisions), database.url_string],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as waiter,
    ):
        assert waiter.stderr is not None
        assert waiter.stdout is not None
        watcher = threading.Thread(target=watch, args=(waiter.stderr,), daemon=True)
        watcher.start()
        try:
            # Its log says when it waits; a wait it cannot log (inside SQLite) gets five seconds.
            waiting.wait(5)
            waiter.send_signal(signal.SIGINT)
            waiter.wait(timeout=20)  # 120 s if the signal went unheard
        finally:
            waiter.kill()
            watcher.join()
        out = waiter.stdout.read()
    assert out.strip() == "interrupted"
    assert version_rows(database) is None


@pytest.mark.parametrize(
    "start", ["0001:0001", "head:0001", "postgresql://admin:{password}@db.example.com/app"]
)
def test_offline_sql_from_something_that_is_not_a_revision(start: str) -> None:
    """A range, or a URL typed in the wrong place, given as --from is an unknown revision, password hidden."""
    password = new_password()
    start = start.format(password=password)
    with pytest.raises(UnknownRevisionError) as caught:
        migrations.upgrade_sql("postgresql", start)
    assert password not in str(caught.value)
    with pytest.raises(UnknownRevisionError) as caught:
        migrations.downgrade_sql("postgresql", start, "base")
    assert password not in str(caught.value)


def test_offline_downgrade_from_below_its_target_has_nothing_to_revert(three_revisions: Path) -> None:
    """Offline as online, a downgrade to a revision above its start raises DatabaseBehindError."""
    with pytest.raises(DatabaseBehindError, match="nothing to downgrade") as caught:
        _runner.offline_sql(three_revisions, "postgresql", "0001", "0003", downgrade=True)
    assert caught.value.pending == ("0002", "0003")
    with pytest.raises(DatabaseBehindError, match="nothing to downgrade"):
        migrations.downgrade_sql("postgresql", "base", "0001")
    assert _runner.offline_sql(three_revisions, "postgresql", "0002", "0002", downgrade=True) == ""
    assert _runner.offline_sql(three_revisions, "postgresql", "0003", "head", downgrade=False) == ""
