"""require_revision(): a host revision that needs granite-assets' tables fails clearly without them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import Database, add_revision
from host_support import alembic, alembic_host, host_models, write_models
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine.mock import create_mock_engine
from sqlalchemy.pool import NullPool
from support import add_table_revisions, snapshot

from granite_assets.migrations import (
    DatabaseBehindError,
    UnknownRevisionError,
    _require,
    _runner,
    current_revision,
    head_revision,
    require_revision,
    upgrade_to_head,
)
from granite_assets.migrations._names import VERSION_TABLE

LOCK_TIMEOUT = 30.0


@contextmanager
def in_transaction(database: Database) -> Iterator[Connection]:
    """A connection in a transaction that wrote a row to ``host_before``, as a host's migration may have."""
    database.execute("CREATE TABLE IF NOT EXISTS host_before (id INTEGER PRIMARY KEY)")
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text("INSERT INTO host_before (id) VALUES (1)"))
            yield connection
            connection.rollback()
    finally:
        engine.dispose()


@pytest.fixture
def three_revisions(environment_copy: Path) -> Path:
    """The bundled environment plus revisions 0002 and 0003, each creating a table."""
    add_table_revisions(environment_copy, "r")
    return environment_copy


def test_behind_on_an_untouched_database(database: Database) -> None:
    """Before granite-assets ever ran, the requirement fails saying which revision and what to run."""
    with in_transaction(database) as connection:
        with pytest.raises(DatabaseBehindError) as caught:
            require_revision(connection, "0001")
        # The host's transaction goes on (PostgreSQL aborts it on any failed statement).
        assert connection.execute(text("SELECT count(*) FROM host_before")).scalar() == 1
    message = str(caught.value)
    assert "needs granite-assets revision 0001" in message
    assert "granite-assets never migrated it" in message
    assert "`granite-assets db upgrade`" in message
    assert "upgrade_to_head()" in message
    assert caught.value.current is None
    assert caught.value.pending == (head_revision(),)


def test_met_once_granite_assets_is_upgraded(database: Database) -> None:
    """At the required revision, it returns the database's revision inside the host's transaction."""
    upgrade_to_head(database.url_string)
    with in_transaction(database) as connection:
        assert require_revision(connection, "0001") == head_revision()
        assert connection.execute(text("SELECT count(*) FROM host_before")).scalar() == 1


def test_behind_at_or_after_the_required_revision(database: Database, three_revisions: Path) -> None:
    """Older than required fails naming both revisions; the required one or a later one passes."""
    url = database.url_string
    assert _runner.upgrade(three_revisions, url, LOCK_TIMEOUT) == "0003"
    _runner.downgrade(three_revisions, url, "0002", LOCK_TIMEOUT)
    database.execute("CREATE TABLE host_before (id INTEGER PRIMARY KEY)")
    before = snapshot(database)
    with in_transaction(database) as connection:
        with pytest.raises(DatabaseBehindError) as caught:
            _require.require_revision(three_revisions, connection, "0003")
        assert _require.require_revision(three_revisions, connection, "0002") == "0002"
        assert _require.require_revision(three_revisions, connection, "0001") == "0002"
    assert snapshot(database) == before  # read only
    assert "needs granite-assets revision 0003 (table 0003) or later" in str(caught.value)
    assert "is at granite-assets revision 0002" in str(caught.value)
    assert caught.value.current == "0002"
    assert caught.value.pending == ("0003",)


def test_a_database_ahead_of_this_release_meets_the_requirement(
    database: Database, three_revisions: Path
) -> None:
    """A revision this release does not ship comes from a newer release, whose history holds this one's."""
    assert _runner.upgrade(three_revisions, database.url_string, LOCK_TIMEOUT) == "0003"
    with in_transaction(database) as connection:
        assert require_revision(connection, "0001") == "0003"


def test_an_unknown_revision_is_refused(database: Database) -> None:
    """A revision this release does not ship (or 'head', whose meaning moves) is UnknownRevisionError."""
    upgrade_to_head(database.url_string)
    with in_transaction(database) as connection:
        for revision in ("9999", "head", "base"):
            with pytest.raises(UnknownRevisionError, match=f"given '{revision}'.*name one of: 0001"):
                require_revision(connection, revision)


def test_offline_mode_checks_nothing_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """Under `alembic upgrade --sql` there is no database to read: None, and a warning."""
    engine = create_mock_engine("postgresql://", lambda *_args, **_kwargs: None)
    with caplog.at_level(logging.WARNING, logger="granite_assets"):
        assert require_revision(engine, "0001") is None  # type: ignore[arg-type]  # op.get_bind() offline
    assert "checks nothing" in caplog.text
    assert "granite-assets db upgrade --sql" in caplog.text


def test_anything_but_a_connection_is_refused(database: Database) -> None:
    """A URL or an Engine is a TypeError pointing at op.get_bind()."""
    with pytest.raises(TypeError, match=r"op\.get_bind\(\)"):
        require_revision(database.url_string, "0001")  # type: ignore[arg-type]


REQUIRING_REVISION = '''"""host: orders, which need granite-assets' tables"""

import sqlalchemy as sa
from alembic import op

from granite_assets.migrations import require_revision

revision = "host0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    require_revision(op.get_bind(), "0001")
    op.create_table(
        "host_orders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("note", sa.String(100)),
    )


def downgrade() -> None:
    op.drop_table("host_orders")
'''


@pytest.mark.slow
def test_host_upgrade_fails_before_granite_assets_ran_and_passes_after(
    database: Database, tmp_path: Path
) -> None:
    """The host's `alembic upgrade head` stops with the message, leaves nothing, and works after ours."""
    host = alembic_host(tmp_path / "host", database.url_string)
    write_models(host, host_models())
    (host / "migrations" / "versions" / "host0001_orders.py").write_text(REQUIRING_REVISION, encoding="utf-8")

    output = alembic(host, "upgrade", "head", expect=1)

    assert "DatabaseBehindError" in output
    assert "This migration needs granite-assets revision 0001" in output
    assert "Run `granite-assets db upgrade`" in output
    tables = database.table_names()
    assert "host_orders" not in tables
    assert VERSION_TABLE not in tables  # require_revision wrote nothing
    if "alembic_version" in tables:
        assert database.scalar_rows("SELECT version_num FROM alembic_version") == []

    upgrade_to_head(database.url_string)
    alembic(host, "upgrade", "head")

    assert "host_orders" in database.table_names()
    assert database.scalar_rows("SELECT version_num FROM alembic_version") == ["host0001"]
    assert current_revision(database.url_string) == head_revision()


@pytest.mark.slow
def test_offline_host_sql_still_renders(tmp_path: Path) -> None:
    """`alembic upgrade head --sql` renders the host's script with a requiring revision in it."""
    host = alembic_host(tmp_path / "host", "postgresql://app@db.internal/app")
    write_models(host, host_models())
    (host / "migrations" / "versions" / "host0001_orders.py").write_text(REQUIRING_REVISION, encoding="utf-8")

    output = alembic(host, "upgrade", "head", "--sql")

    assert "CREATE TABLE host_orders" in output
    assert "checks nothing" in output


def test_requirement_on_a_later_revision_in_a_host_transaction(
    database: Database, environment_copy: Path
) -> None:
    """Inside a transaction that already wrote, a failed requirement leaves the transaction usable."""
    add_revision(environment_copy, "0002", "0001", message="second")
    upgrade_to_head(database.url_string)
    with in_transaction(database) as connection:
        with pytest.raises(DatabaseBehindError, match=r"revision 0002 \(second\)"):
            _require.require_revision(environment_copy, connection, "0002")
        connection.execute(text("INSERT INTO host_before (id) VALUES (2)"))
        assert connection.execute(text("SELECT count(*) FROM host_before")).scalar() == 2


LATE_REQUIRING_REVISION = REQUIRING_REVISION.replace(
    '    require_revision(op.get_bind(), "0001")\n    op.create_table(\n        "host_orders",\n'
    '        sa.Column("id", sa.Integer, primary_key=True),\n'
    '        sa.Column("note", sa.String(100)),\n    )\n',
    '    op.create_table("host_orders", sa.Column("id", sa.Integer, primary_key=True))\n'
    '    require_revision(op.get_bind(), "0001")\n',
)


@pytest.mark.slow
def test_called_after_ddl_only_postgresql_undoes_that_ddl(database: Database, tmp_path: Path) -> None:
    """Why the docs say to call it first: SQLite (as alembic init has it) and MariaDB commit DDL at once."""
    assert LATE_REQUIRING_REVISION != REQUIRING_REVISION
    host = alembic_host(tmp_path / "host", database.url_string)
    write_models(host, host_models())
    (host / "migrations" / "versions" / "host0001_orders.py").write_text(
        LATE_REQUIRING_REVISION, encoding="utf-8"
    )

    assert "DatabaseBehindError" in alembic(host, "upgrade", "head", expect=1)

    left_behind = "host_orders" in database.table_names()
    assert left_behind == (database.backend.name != "postgresql")
