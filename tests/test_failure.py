"""A revision that raises half-way: what each backend is left with, and what the error says."""

from __future__ import annotations

import shutil
import traceback
from pathlib import Path

import pytest
from conftest import BACKENDS, Database, add_revision, backend_params
from support import new_password, url_with_password, version_rows

from granite_assets.migrations import MigrationFailedError, _runner

VERSION_TABLE = "granite_assets_alembic_version"
TABLE_0002 = "granite_assets_first"
TABLE_0003 = "granite_assets_second"
PARTIAL_0004 = "granite_assets_partial"
LATER_0004 = "granite_assets_later"


def create(table: str) -> str:
    """Revision code that creates ``table``."""
    return f'op.create_table("{table}", sa.Column("id", sa.Integer, primary_key=True))'


def write_0004(directory: Path, *, broken: bool) -> None:
    """Write revision 0004: DDL, then (broken) an exception, or (fixed) more DDL."""
    rest = 'raise RuntimeError("revision 0004 broke half-way")' if broken else create(LATER_0004)
    add_revision(directory, "0004", "0003", f"{create(PARTIAL_0004)}\n{rest}", message="breaks half-way")
    shutil.rmtree(directory / "versions" / "__pycache__", ignore_errors=True)


def test_revision_that_raises_half_way(database: Database, environment_copy: Path) -> None:
    """A failing revision leaves each backend in its documented state, is named, and applies once fixed."""
    password = new_password()
    backend = database.backend.name
    add_revision(environment_copy, "0002", "0001", create(TABLE_0002), message="first table")
    with url_with_password(database, password) as url:
        assert _runner.upgrade(environment_copy, url, 30) == "0002"
        add_revision(environment_copy, "0003", "0002", create(TABLE_0003), message="second table")
        write_0004(environment_copy, broken=True)

        with pytest.raises(MigrationFailedError) as caught:
            _runner.upgrade(environment_copy, url, 30)
        error = caught.value
        message = str(error)
        assert error.revision == "0004"
        assert "revision 0004 (breaks half-way) failed" in message
        assert "revision 0004 broke half-way" in message
        assert password not in message
        assert password not in "".join(traceback.format_exception(error))

        tables = database.table_names()
        if backend == "sqlite":
            # One transaction per call: 0003, applied by the same call, was rolled back too.
            assert version_rows(database) == ["0002"]
            assert tables == {VERSION_TABLE, TABLE_0002}
            assert "whole upgrade was rolled back" in message
        elif backend == "postgresql":
            # One transaction per revision: 0003 stays, nothing of 0004 does.
            assert version_rows(database) == ["0003"]
            assert tables == {VERSION_TABLE, TABLE_0002, TABLE_0003}
            assert "at revision 0003" in message
        else:
            # MariaDB commits each DDL statement: 0004's first table stays, unrecorded.
            assert version_rows(database) == ["0003"]
            assert tables == {VERSION_TABLE, TABLE_0002, TABLE_0003, PARTIAL_0004}
            assert "at revision 0003" in message
            assert "cannot roll back DDL" in message

        write_0004(environment_copy, broken=False)
        if backend == "mysql":
            # The fixed revision trips over what the broken one left; undone by hand, it applies.
            with pytest.raises(MigrationFailedError) as again:
                _runner.upgrade(environment_copy, url, 30)
            assert again.value.revision == "0004"
            assert PARTIAL_0004 in str(again.value)
            database.execute(f"DROP TABLE {PARTIAL_0004}")
        assert _runner.upgrade(environment_copy, url, 30) == "0004"
        assert version_rows(database) == ["0004"]
        assert database.table_names() == {
            VERSION_TABLE,
            TABLE_0002,
            TABLE_0003,
            PARTIAL_0004,
            LATER_0004,
        }


def test_revision_that_raises_on_a_fresh_database(database: Database, environment_copy: Path) -> None:
    """A revision failing in a fresh database's first upgrade keeps the last completed one (or nothing)."""
    add_revision(environment_copy, "0002", "0001", create(TABLE_0002), message="first table")
    breaking = f'{create(TABLE_0003)}\nraise RuntimeError("revision 0003 broke half-way")'
    add_revision(environment_copy, "0003", "0002", breaking, message="breaks at once")
    with pytest.raises(MigrationFailedError) as caught:
        _runner.upgrade(environment_copy, database.url_string, 30)
    assert caught.value.revision == "0003"
    assert "revision 0003 (breaks at once) failed" in str(caught.value)
    if database.backend.name == "sqlite":
        assert version_rows(database) is None  # even the version table was rolled back
        assert database.table_names() == set()
    elif database.backend.name == "postgresql":
        assert version_rows(database) == ["0002"]
        assert database.table_names() == {VERSION_TABLE, TABLE_0002}
    else:
        assert version_rows(database) == ["0002"]
        assert database.table_names() == {VERSION_TABLE, TABLE_0002, TABLE_0003}


PENDING = ("0002", "0003", "0004")


@pytest.mark.parametrize("failing", PENDING, ids=["first", "middle", "last"])
def test_failure_names_the_revision_that_failed_and_where_the_database_is(
    database: Database, environment_copy: Path, failing: str
) -> None:
    """With three revisions pending, the one that fails is named, and so is the revision read back."""
    _runner.upgrade(environment_copy, database.url_string, 30)  # at 0001
    parent = "0001"
    for revision in PENDING:
        body = create(f"granite_assets_t{revision}")
        if revision == failing:
            body += f'\nraise RuntimeError("revision {revision} broke")'
        add_revision(environment_copy, revision, parent, body, message=f"step {revision}")
        parent = revision
    with pytest.raises(MigrationFailedError) as caught:
        _runner.upgrade(environment_copy, database.url_string, 30)
    assert caught.value.revision == failing
    assert f"revision {failing} (step {failing}) failed" in str(caught.value)
    # SQLite: the whole call was one transaction; elsewhere each revision before the failed one stays.
    at = (
        "0001"
        if database.backend.name == "sqlite"
        else {"0002": "0001", "0003": "0002", "0004": "0003"}[failing]
    )
    assert version_rows(database) == [at]
    assert f"at revision {at}" in str(caught.value)


def test_failed_downgrade_step_is_named(database: Database, environment_copy: Path) -> None:
    """A downgrade whose middle step fails names that step and the revision the database is at."""
    parent = "0001"
    for revision in PENDING:
        down = f'op.drop_table("granite_assets_t{revision}")'
        if revision == "0003":
            down = 'raise RuntimeError("0003 cannot be reverted")'
        add_revision(environment_copy, revision, parent, create(f"granite_assets_t{revision}"), down)
        parent = revision
    _runner.upgrade(environment_copy, database.url_string, 30)
    with pytest.raises(MigrationFailedError) as caught:
        _runner.downgrade(environment_copy, database.url_string, "0001", 30)
    assert caught.value.revision == "0003"
    at = "0004" if database.backend.name == "sqlite" else "0003"  # SQLite: the whole call rolled back
    assert version_rows(database) == [at]
    assert f"at revision {at}" in str(caught.value)


@pytest.mark.parametrize(
    "backend", backend_params([b for b in BACKENDS if b.name == "postgresql"]), indirect=True
)
def test_error_raised_by_the_commit_blames_the_revision_it_committed(
    database: Database, environment_copy: Path
) -> None:
    """A deferred foreign key that fails at 0002's COMMIT is 0002's failure, with the database at 0001."""
    add_revision(
        environment_copy,
        "0002",
        "0001",
        'op.execute("CREATE TABLE granite_assets_parent (id INTEGER PRIMARY KEY)")\n'
        'op.execute("CREATE TABLE granite_assets_child (id INTEGER PRIMARY KEY, parent_id INTEGER '
        'REFERENCES granite_assets_parent (id) DEFERRABLE INITIALLY DEFERRED)")\n'
        'op.execute("INSERT INTO granite_assets_child (id, parent_id) VALUES (1, 42)")',
        message="orphan child",
    )
    add_revision(environment_copy, "0003", "0002", create(TABLE_0003), message="after it")
    with pytest.raises(MigrationFailedError) as caught:
        _runner.upgrade(environment_copy, database.url_string, 30)
    assert caught.value.revision == "0002"
    assert "revision 0002 (orphan child) failed" in str(caught.value)
    assert version_rows(database) == ["0001"]
    assert "at revision 0001" in str(caught.value)
