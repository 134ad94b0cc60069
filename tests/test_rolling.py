"""Rolling deploys and rollbacks: an older release against a database that a newer release migrated.

Three releases are simulated with scratch copies of the bundled environment:

- release 1 ships ``0002`` (a table, declared not backward compatible, so that release 1 ships no
  compatible revision at all and must not create the compatibility record);
- release 2 adds ``0003``, a nullable column, declared backward compatible;
- release 3 adds ``0004``, which makes that column required: not backward compatible.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BACKENDS, Database, _admin_execute, add_revision, backend_params, require_server
from sqlalchemy import URL, Engine, create_engine, text
from sqlalchemy.pool import NullPool
from support import Workers, lock_is_free, new_password, snapshot, version_rows
from test_cli import granite_assets

from granite_assets._cli import EXIT_AHEAD, EXIT_OK
from granite_assets.migrations import DatabaseAheadError, _runner
from granite_assets.migrations._manifest import write_manifest
from granite_assets.migrations._names import COMPATIBILITY_TABLE, VERSION_TABLE

LOCK_TIMEOUT = 120.0
TRANSACTIONAL = [b for b in BACKENDS if b.name != "mysql"]
SERVERS = [b for b in BACKENDS if b.name != "sqlite"]
ASSET = "granite_assets_asset"

Row = tuple[str, str | None, bool]
#: The compatibility record of a database at 0003 (release 2's head), and at 0004 (release 3's).
RECORD_0003: list[Row] = [("0001", None, False), ("0002", "0001", False), ("0003", "0002", True)]
RECORD_0004: list[Row] = [*RECORD_0003, ("0004", "0003", False)]


def add_flagged_revision(
    directory: Path, revision: str, upgrade: str, downgrade: str, *, compatible: bool, message: str
) -> None:
    """Add ``revision`` after the current head of ``directory``, declaring its backward_compatible."""
    parent = f"{int(revision) - 1:04d}"
    path = add_revision(directory, revision, parent, upgrade, downgrade, message=message, manifest=False)
    with path.open("a", encoding="utf-8") as file:
        file.write(f"\nbackward_compatible = {compatible}\n")
    write_manifest(directory)


@dataclass(frozen=True)
class Releases:
    """The Alembic environments of three consecutive releases."""

    one: Path
    two: Path
    three: Path


def next_release(previous: Path, target: Path) -> Path:
    """A copy of ``previous`` to add revisions to."""
    shutil.copytree(previous, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture
def releases(environment_copy: Path, tmp_path: Path) -> Releases:
    """Release 1 (0002), release 2 (+ compatible 0003), release 3 (+ incompatible 0004)."""
    one = environment_copy
    add_flagged_revision(
        one,
        "0002",
        f'op.create_table("{ASSET}", sa.Column("id", sa.Integer, primary_key=True))',
        f'op.drop_table("{ASSET}")',
        compatible=False,
        message="asset table",
    )
    two = next_release(one, tmp_path / "release2")
    add_flagged_revision(
        two,
        "0003",
        f'op.add_column("{ASSET}", sa.Column("note", sa.String(40), nullable=True))',
        f'with op.batch_alter_table("{ASSET}") as batch:\n    batch.drop_column("note")',
        compatible=True,
        message="asset note",
    )
    three = next_release(two, tmp_path / "release3")
    add_flagged_revision(
        three,
        "0004",
        f'with op.batch_alter_table("{ASSET}") as batch:\n'
        '    batch.alter_column("note", existing_type=sa.String(40), nullable=False)',
        f'with op.batch_alter_table("{ASSET}") as batch:\n'
        '    batch.alter_column("note", existing_type=sa.String(40), nullable=True)',
        compatible=False,
        message="asset note required",
    )
    return Releases(one, two, three)


def record(database: Database) -> list[Row] | None:
    """The compatibility record's rows, oldest first; ``None`` when the table does not exist."""
    if COMPATIBILITY_TABLE not in database.table_names():
        return None
    rows = database.all_rows(
        f"SELECT revision, down_revision, backward_compatible FROM {COMPATIBILITY_TABLE}"
    )
    return sorted((str(r), None if d is None else str(d), bool(c)) for r, d, c in rows)


def state(database: Database) -> tuple[object, ...]:
    """Everything an older release must leave as it found it: tables, version row, record."""
    return (*snapshot(database), record(database))


@contextmanager
def engine_for(target: Database | URL) -> Iterator[Engine]:
    """An engine of the host's, disposed after."""
    engine = create_engine(target.url if isinstance(target, Database) else target, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def refusal(directory: Path, target: Database | str) -> list[DatabaseAheadError]:
    """The errors upgrade_to_head and check_up_to_date raise for the release in ``directory``."""
    url = target.url_string if isinstance(target, Database) else target
    errors = []
    for call in (_runner.upgrade, _runner.check_up_to_date):
        with pytest.raises(DatabaseAheadError) as caught:
            call(directory, url, LOCK_TIMEOUT)
        errors.append(caught.value)
    return errors


def test_a_release_without_compatible_revisions_adds_no_table(database: Database, releases: Releases) -> None:
    """Release 1 ships no backward-compatible revision: upgrading with it creates no compatibility record."""
    assert _runner.upgrade(releases.one, database.url_string, LOCK_TIMEOUT) == "0002"

    assert record(database) is None
    assert COMPATIBILITY_TABLE not in database.table_names()


def test_older_release_runs_after_compatible_revisions(
    database: Database, releases: Releases, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Past compatible 0003 (release 2), release 1's upgrade, check and db check pass and alter nothing."""
    url = database.url_string
    assert _runner.upgrade(releases.one, url, LOCK_TIMEOUT) == "0002"
    assert _runner.upgrade(releases.two, url, LOCK_TIMEOUT) == "0003"
    assert record(database) == RECORD_0003
    before = state(database)

    caplog.set_level(logging.WARNING, logger="granite_assets")
    assert _runner.upgrade(releases.one, url, LOCK_TIMEOUT) == "0003"
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "revision 0003, newer than this release's 0002" in warning.getMessage()
    assert "(0003) are backward compatible" in warning.getMessage()
    assert _runner.check_up_to_date(releases.one, url, LOCK_TIMEOUT) == "0003"
    with engine_for(database) as engine:
        assert _runner.upgrade(releases.one, engine, LOCK_TIMEOUT) == "0003"
        with engine.connect() as connection:  # the caller's transaction: a read, also on MariaDB
            assert _runner.upgrade(releases.one, connection, LOCK_TIMEOUT) == "0003"
            assert _runner.check_up_to_date(releases.one, connection, LOCK_TIMEOUT) == "0003"
            connection.commit()

    run = granite_assets(tmp_path, "db", "check", "--url", url, environment=releases.one)
    assert run.code == EXIT_OK, run.err
    assert run.out[-1] == (
        "ahead, compatible with this release: the database is at 0003, this release's head is 0002"
    )
    assert state(database) == before
    assert lock_is_free(database)


def test_older_release_cannot_downgrade_a_database_ahead_of_it(
    database: Database, releases: Releases
) -> None:
    """Release 1 refuses to downgrade a database at compatible 0003: only release 2 ships its downgrade()."""
    url = database.url_string
    _runner.upgrade(releases.two, url, LOCK_TIMEOUT)
    before = state(database)

    with pytest.raises(DatabaseAheadError) as caught:
        _runner.downgrade(releases.one, url, "0001", LOCK_TIMEOUT)

    assert (caught.value.revision, caught.value.reason, caught.value.blocking) == ("0003", "compatible", None)
    assert "only a release that ships 0003" in str(caught.value)
    assert state(database) == before


def test_incompatible_revision_stops_older_releases_until_reverted(
    database: Database, releases: Releases, tmp_path: Path
) -> None:
    """Release 3's incompatible 0004 stops releases 1 and 2, naming 0004; once reverted, release 1 starts."""
    url = database.url_string
    _runner.upgrade(releases.two, url, LOCK_TIMEOUT)
    assert _runner.upgrade(releases.three, url, LOCK_TIMEOUT) == "0004"
    assert record(database) == RECORD_0004
    before = state(database)

    for older in (releases.one, releases.two):
        for error in refusal(older, database):
            assert (error.revision, error.reason, error.blocking) == ("0004", "incompatible", "0004")
            assert "the newer revision 0004 is not backward compatible" in str(error)
            assert "roll forward" in str(error)
            # 0003 is compatible: reverting only 0004 is enough, and keeps 0003's column and data.
            assert "`granite-assets db downgrade 0003`" in str(error)
            assert "downgrade 0002" not in str(error)
    run = granite_assets(tmp_path, "db", "check", "--url", url, environment=releases.one)
    assert run.code == EXIT_AHEAD
    assert "0004 is not backward compatible" in run.err
    assert "`granite-assets db downgrade 0003`" in run.err
    assert state(database) == before

    assert _runner.downgrade(releases.three, url, "0003", LOCK_TIMEOUT) == "0003"
    assert record(database) == RECORD_0003
    assert _runner.upgrade(releases.one, url, LOCK_TIMEOUT) == "0003"
    assert _runner.check_up_to_date(releases.one, url, LOCK_TIMEOUT) == "0003"
    assert _runner.upgrade(releases.two, url, LOCK_TIMEOUT) == "0003"


def test_database_without_the_record_is_treated_as_incompatible(
    database: Database, releases: Releases
) -> None:
    """A database without the record (an older writer migrated it), or without newer rows, stops release 1."""
    url = database.url_string
    _runner.upgrade(releases.two, url, LOCK_TIMEOUT)

    database.execute(f"DELETE FROM {COMPATIBILITY_TABLE} WHERE revision = '0003'")
    for error in refusal(releases.one, database):
        assert (error.revision, error.reason, error.blocking) == ("0003", "unrecorded", None)

    database.execute(f"DROP TABLE {COMPATIBILITY_TABLE}")
    for error in refusal(releases.one, database):
        assert (error.revision, error.reason, error.blocking) == ("0003", "unrecorded", None)
        assert "says the newer revisions are backward" in str(error)
    assert COMPATIBILITY_TABLE not in database.table_names()


def test_a_damaged_record_is_repaired_by_the_next_migrating_call(
    database: Database, releases: Releases
) -> None:
    """A record that disagrees with the version row (a crash, an edit) is rebuilt by the next migration."""
    url = database.url_string
    _runner.upgrade(releases.two, url, LOCK_TIMEOUT)
    # As if the process died after the version row said 0003 and before the record did, with
    # stale rows besides: the record lies in both directions.
    database.execute(
        f"DELETE FROM {COMPATIBILITY_TABLE} WHERE revision = '0003'",
        f"UPDATE {COMPATIBILITY_TABLE} SET backward_compatible = TRUE WHERE revision = '0002'",
        f"INSERT INTO {COMPATIBILITY_TABLE} (revision, down_revision, backward_compatible) "
        "VALUES ('0099', '0003', TRUE)",
    )

    assert _runner.upgrade(releases.two, url, LOCK_TIMEOUT) == "0003"  # at head: a read, no repair
    assert _runner.upgrade(releases.three, url, LOCK_TIMEOUT) == "0004"

    assert record(database) == RECORD_0004


def test_a_record_whose_rows_form_a_loop_is_treated_as_unrecorded(
    database: Database, releases: Releases, tmp_path: Path
) -> None:
    """Rows that lead back to themselves (a damaged record) stop release 1 instead of hanging it."""
    _runner.upgrade(releases.two, database.url_string, LOCK_TIMEOUT)
    database.execute(
        f"UPDATE {COMPATIBILITY_TABLE} SET down_revision = '0099' WHERE revision = '0003'",
        f"INSERT INTO {COMPATIBILITY_TABLE} (revision, down_revision, backward_compatible) "
        "VALUES ('0099', '0003', TRUE)",
    )

    # In a worker process, which the watchdog kills if the walk never ends.
    with Workers(1, releases.one, LOCK_TIMEOUT, tmp_path / "workers", deadline=60) as worker:
        worker.start(database.url_string)
        (result,) = worker.results()

    assert result["error"] == "DatabaseAheadError", result
    assert "says the newer revisions are backward" in result["message"]


def test_histories_that_part_before_this_release_head_are_not_compatible(
    database: Database, releases: Releases, tmp_path: Path
) -> None:
    """A database migrated by a sibling release (0003b after 0002) stops release 2, whose 0003 it lacks."""
    sibling = next_release(releases.one, tmp_path / "sibling")
    add_revision(sibling, "0003b", "0002", message="sibling", manifest=False)
    path = next((sibling / "versions").glob("0003b_*.py"))
    path.write_text(path.read_text(encoding="utf-8") + "\nbackward_compatible = True\n", encoding="utf-8")
    write_manifest(sibling)
    assert _runner.upgrade(sibling, database.url_string, LOCK_TIMEOUT) == "0003b"

    assert _runner.upgrade(releases.one, database.url_string, LOCK_TIMEOUT) == "0003b"
    for error in refusal(releases.two, database):
        assert (error.revision, error.reason) == ("0003b", "unrecorded")


@pytest.mark.parametrize("backend", backend_params(TRANSACTIONAL), indirect=True)
def test_record_stays_in_the_callers_transaction(database: Database, releases: Releases) -> None:
    """On a caller's connection the record is written in the caller's transaction: a rollback leaves none."""
    with engine_for(database) as engine, engine.connect() as connection:
        connection.begin()
        assert _runner.upgrade(releases.two, connection, LOCK_TIMEOUT) == "0003"
        connection.rollback()
    assert record(database) is None
    assert version_rows(database) is None


@pytest.mark.slow
@pytest.mark.heavy
def test_replicas_of_two_releases_starting_at_once(
    database: Database, releases: Releases, tmp_path: Path
) -> None:
    """Sixteen processes, half release 1 and half release 2, upgrading a new database at once, all succeed."""
    with ExitStack() as stack:
        ones = stack.enter_context(Workers(8, releases.one, LOCK_TIMEOUT, tmp_path / "one"))
        twos = stack.enter_context(Workers(8, releases.two, LOCK_TIMEOUT, tmp_path / "two"))
        ones.start(database.url_string)
        twos.start(database.url_string)
        from_one, from_two = ones.results(), twos.results()

    # A release-1 replica that migrated before every release-2 one finds 0002; the others, 0003.
    assert all(r in ({"revision": "0002"}, {"revision": "0003"}) for r in from_one), from_one
    assert from_two == [{"revision": "0003"}] * 8
    assert version_rows(database) == ["0003"]
    assert record(database) == RECORD_0003
    assert lock_is_free(database)


@contextmanager
def version_table_reader(database: Database, password: str) -> Iterator[URL]:
    """A login that may read the version table and nothing else, as an application's role granted early."""
    backend = database.backend.name
    admin = require_server(backend)
    user = f"ga_user_{uuid.uuid4().hex[:10]}"
    if backend == "postgresql":
        _admin_execute(admin, f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        database.execute(f"GRANT SELECT ON {VERSION_TABLE} TO {user}")
        drop = f"DROP ROLE IF EXISTS {user}"
    else:
        _admin_execute(admin, f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
        _admin_execute(admin, f"GRANT SELECT ON `{database.url.database}`.{VERSION_TABLE} TO '{user}'@'%'")
        drop = f"DROP USER IF EXISTS '{user}'@'%'"
    try:
        yield database.url.set(username=user, password=password)
    finally:
        if backend == "postgresql":
            database.execute(f"DROP OWNED BY {user}")
        _admin_execute(admin, drop)


@pytest.mark.parametrize("backend", backend_params(SERVERS), indirect=True)
def test_a_record_this_login_cannot_read_stops_the_older_release_with_a_migration_error(
    database: Database, releases: Releases, caplog: pytest.LogCaptureFixture
) -> None:
    """A login that may read the version table but not the record gets DatabaseAheadError, and a warning."""
    _runner.upgrade(releases.two, database.url_string, LOCK_TIMEOUT)
    password = new_password()
    caplog.set_level(logging.WARNING, logger="granite_assets")

    with version_table_reader(database, password) as url:
        for error in refusal(releases.one, url.render_as_string(hide_password=False)):
            assert (error.revision, error.reason) == ("0003", "unrecorded")
        with engine_for(url) as engine, engine.connect() as connection:
            with pytest.raises(DatabaseAheadError):
                _runner.check_up_to_date(releases.one, connection, LOCK_TIMEOUT)
            assert connection.execute(text("SELECT 1")).scalar() == 1  # the caller's transaction lives on
            connection.rollback()

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings
    assert all(f"Could not read {COMPATIBILITY_TABLE}" in w for w in warnings), warnings
    assert all("Grant" in w and password not in w for w in warnings)
