"""upgrade_to_head and its read-only companions, on every backend and kind of target."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import ASYNC_DRIVERS, Database, add_revision
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.pool import NullPool, QueuePool
from support import add_table_revisions

from granite_assets.migrations import (
    VERSION_TABLE,
    DatabaseBehindError,
    _runner,
    check_up_to_date,
    current_revision,
    downgrade,
    head_revision,
    revisions,
    upgrade_to_head,
)


def connections_to(database: Database) -> int:
    """How many sessions other than the asking one are connected to ``database``."""
    if database.backend.name == "sqlite":
        return 0
    name = database.url.database
    if database.backend.name == "postgresql":
        sql = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    else:
        sql = (
            "SELECT count(*) FROM information_schema.processlist "
            f"WHERE db = '{name}' AND id <> CONNECTION_ID()"
        )
    engine = create_engine(
        database.url.set(database=None) if database.backend.name == "mysql" else database.url
    )
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def test_first_call_creates_and_stamps_the_version_table(database: Database) -> None:
    """A database granite-assets never touched gets its version table, stamped at head."""
    assert current_revision(database.url_string) is None
    assert upgrade_to_head(database.url_string) == head_revision()
    assert VERSION_TABLE in database.table_names()
    assert database.scalar_rows(f"SELECT version_num FROM {VERSION_TABLE}") == [head_revision()]
    assert current_revision(database.url_string) == head_revision()


def test_second_call_changes_nothing(database: Database) -> None:
    """Calling again on an up-to-date database leaves tables and version row as they were."""
    upgrade_to_head(database.url_string)
    before = (database.table_names(), database.scalar_rows(f"SELECT version_num FROM {VERSION_TABLE}"))
    assert upgrade_to_head(database.url_string) == head_revision()
    after = (database.table_names(), database.scalar_rows(f"SELECT version_num FROM {VERSION_TABLE}"))
    assert after == before


def test_url_object_target(database: Database) -> None:
    """A sqlalchemy.URL works as well as a string."""
    assert upgrade_to_head(database.url) == head_revision()


def test_engine_target_is_used_and_not_disposed(database: Database) -> None:
    """An Engine is used as given: every connection returns to its pool and the engine stays usable."""
    engine = create_engine(database.url, poolclass=QueuePool)
    try:
        assert upgrade_to_head(engine) == head_revision()
        assert isinstance(engine.pool, QueuePool)
        assert engine.pool.checkedout() == 0
        with engine.connect() as connection:
            assert (
                connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
                == head_revision()
            )
    finally:
        engine.dispose()


def test_url_target_leaves_no_connection_open(database: Database) -> None:
    """With a URL, granite-assets disposes its engine: no session of ours outlives the call."""
    upgrade_to_head(database.url_string)
    upgrade_to_head(database.url_string)
    assert connections_to(database) == 0


@contextmanager
def statements_sent(engine: Engine) -> Iterator[list[str]]:
    """Collect every statement the engine's connections send to the database meanwhile."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(str(args[2]))  # (connection, cursor, statement, parameters, context, executemany)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_current_revision_of_a_fresh_database_sends_one_statement(database: Database) -> None:
    """A missing version table is told from the failed SELECT alone: no existence query follows it.

    PostgreSQL alone asks one thing more, and only then: whether the login may use a schema of
    its search_path, without which every table looks missing (see test_least_privilege.py).
    """
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        with statements_sent(engine) as sent:
            assert current_revision(engine) is None
    finally:
        engine.dispose()
    assert VERSION_TABLE in sent[0]
    probe = ["SELECT current_schema() IS NULL, current_setting('search_path'), current_user"]
    assert sent[1:] == (probe if database.backend.name == "postgresql" else []), sent


def test_upgrade_of_an_up_to_date_database_sends_one_statement(database: Database) -> None:
    """The no-op path reads the version table once and sends nothing else."""
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        upgrade_to_head(engine)
        with statements_sent(engine) as sent:
            assert upgrade_to_head(engine) == head_revision()
    finally:
        engine.dispose()
    assert len(sent) == 1, sent
    assert VERSION_TABLE in sent[0]


def test_pending_revisions_are_applied_in_order(database: Database, environment_copy: Path) -> None:
    """Revisions added after a database was stamped are applied, oldest first, on the next call."""
    assert _runner.upgrade(environment_copy, database.url_string, 10) == "0001"
    add_revision(
        environment_copy,
        "0002",
        "0001",
        'op.create_table("granite_assets_a", sa.Column("id", sa.Integer, primary_key=True))',
        'op.drop_table("granite_assets_a")',
    )
    add_revision(
        environment_copy,
        "0003",
        "0002",
        'op.add_column("granite_assets_a", sa.Column("name", sa.String(50)))',
        'op.drop_column("granite_assets_a", "name")',
    )
    assert _runner.upgrade(environment_copy, database.url_string, 10) == "0003"
    assert "granite_assets_a" in database.table_names()
    assert database.scalar_rows(f"SELECT version_num FROM {VERSION_TABLE}") == ["0003"]


def test_fast_path_never_skips_a_revision_added_after_the_manifest(
    database: Database, environment_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A revision file the manifest does not list is still applied: the stale manifest is not trusted."""
    _runner.upgrade(environment_copy, database.url_string, 10)
    add_revision(
        environment_copy,
        "0002",
        "0001",
        'op.create_table("granite_assets_b", sa.Column("id", sa.Integer, primary_key=True))',
        'op.drop_table("granite_assets_b")',
        manifest=False,
    )
    with caplog.at_level(logging.WARNING, logger="granite_assets"):
        assert _runner.upgrade(environment_copy, database.url_string, 10) == "0002"
    assert "granite_assets_b" in database.table_names()
    assert any("revisions.json" in r.getMessage() for r in caplog.records)


def test_fast_path_notices_a_replaced_revision_file(
    database: Database, environment_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A manifest naming other files than versions/ holds is not trusted, even when it counts as many.

    After 0002's file is replaced by 0004's (0003 now follows 0001), the stale manifest still
    lists three revisions ending at 0003, where the database is: trusting it would skip 0004.
    """
    url = database.url_string
    add_table_revisions(environment_copy, "r")
    assert _runner.upgrade(environment_copy, url, 10) == "0003"
    (environment_copy / "versions" / "0002_table_0002.py").unlink()
    add_revision(environment_copy, "0003", "0001", message="table 0003", manifest=False)
    add_revision(
        environment_copy,
        "0004",
        "0003",
        'op.create_table("granite_assets_r0004", sa.Column("id", sa.Integer, primary_key=True))',
        message="table 0004",
        manifest=False,
    )
    shutil.rmtree(environment_copy / "versions" / "__pycache__", ignore_errors=True)  # 0003 was rewritten
    manifest = load_manifest(environment_copy)
    assert len(manifest) == len(list((environment_copy / "versions").glob("*.py")))
    assert manifest[-1] == "0003"

    with caplog.at_level(logging.WARNING, logger="granite_assets"):
        assert _runner.upgrade(environment_copy, url, 10) == "0004"
    assert "granite_assets_r0004" in database.table_names()
    assert database.scalar_rows(f"SELECT version_num FROM {VERSION_TABLE}") == ["0004"]
    assert any("revisions.json" in r.getMessage() for r in caplog.records)


def load_manifest(directory: Path) -> list[str]:
    """The revision ids the manifest of ``directory`` lists, in its order."""
    data = json.loads((directory / "revisions.json").read_text(encoding="utf-8"))
    return [entry["revision"] for entry in data["revisions"]]


def test_each_applied_revision_is_logged(database: Database, caplog: pytest.LogCaptureFixture) -> None:
    """Every applied revision is logged to the granite_assets logger, with its message."""
    with caplog.at_level(logging.INFO, logger="granite_assets"):
        upgrade_to_head(database.url_string)
    applied = [r.getMessage() for r in caplog.records if r.name.startswith("granite_assets")]
    assert [re.sub(r" in \d+\.\d\d s$", "", line) for line in applied] == [
        f"Applied revision {r.revision} ({r.message})" for r in revisions()
    ]


def test_host_loggers_and_root_logger_survive(database: Database) -> None:
    """The host's loggers stay enabled and the root logger's level and handlers are unchanged."""
    host_logger = logging.getLogger("host.app.created.before")
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    upgrade_to_head(database.url_string)
    assert not host_logger.disabled
    assert not logging.getLogger("sqlalchemy.engine").disabled
    assert (root.level, root.handlers) == (level, handlers)


# Calls every public function that needs no command line, then reports the logging setup as JSON.
EVERY_API_CALL = """
import asyncio, json, logging, sys
from granite_assets import migrations

url, async_url = sys.argv[1], sys.argv[2]
host = logging.getLogger("host.app")
assert migrations.current_revision(url) is None
try:
    migrations.check_up_to_date(url)
except migrations.DatabaseBehindError:
    pass
migrations.upgrade_to_head(url)
migrations.check_up_to_date(url)
migrations.downgrade(url, "base")
asyncio.run(migrations.upgrade_to_head_async(async_url))
migrations.upgrade_sql(url)
migrations.downgrade_sql(url, migrations.head_revision(), "base")
migrations.revisions()
migrations.to_sync_url(async_url)
root = logging.getLogger()
loggers = [root, *(l for l in logging.Logger.manager.loggerDict.values() if isinstance(l, logging.Logger))]
print(json.dumps({
    "root_level": logging.getLevelName(root.level),
    "handlers": {l.name: [type(h).__name__ for h in l.handlers] for l in loggers if l.handlers},
    "ours": sorted(l.name for l in loggers if l.name.startswith("granite_assets")),
    "host_disabled": host.disabled,
}))
"""


def test_no_logging_is_configured_in_a_fresh_process(database: Database) -> None:
    """In a process that set up no logging, the API adds no handler anywhere and leaves the root at WARNING.

    Under pytest the root logger already has handlers, so only a fresh process can show this.
    """
    async_url = database.with_driver(ASYNC_DRIVERS[database.backend.name]).render_as_string(
        hide_password=False
    )

    done = subprocess.run(
        [sys.executable, "-c", EVERY_API_CALL, database.url_string, async_url],
        capture_output=True,
        text=True,
        check=True,
    )

    report = json.loads(done.stdout.splitlines()[-1])
    assert report["root_level"] == "WARNING"
    assert "granite_assets.migrations" in report["ours"]  # it logged, to its own logger
    # Alembic gives its own logger a NullHandler on import; nothing else may have a handler.
    assert report["handlers"] in ({}, {"alembic": ["NullHandler"]})
    assert report["host_disabled"] is False
    assert database.scalar_rows(f"SELECT version_num FROM {VERSION_TABLE}") == [head_revision()]


def test_import_pulls_in_neither_sqlalchemy_nor_alembic() -> None:
    """Importing the package and its migrations module loads no SQLAlchemy and no Alembic."""
    code = (
        "import sys, granite_assets, granite_assets.migrations;"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'sqlalchemy', 'alembic'});"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == ""


def test_head_revision_needs_no_database() -> None:
    """head_revision answers from the bundled history alone: the last of revisions()."""
    assert head_revision() == revisions()[-1].revision == "0001"


def test_works_from_any_current_directory(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No file is looked up relative to the current directory (a host's alembic.ini there is ignored)."""
    (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = nowhere\n")
    monkeypatch.chdir(tmp_path)
    assert upgrade_to_head(database.url_string) == head_revision()


def test_reading_a_sqlite_file_that_does_not_exist_creates_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """current_revision, check_up_to_date and downgrade on a mistyped SQLite path create no empty database."""
    url = f"sqlite:///{tmp_path / 'ap.db'}"
    with caplog.at_level(logging.WARNING, logger="granite_assets"):
        assert current_revision(url) is None
        with pytest.raises(DatabaseBehindError) as caught:
            check_up_to_date(url)
    assert caught.value.pending == tuple(r.revision for r in revisions())
    assert list(tmp_path.iterdir()) == []
    assert any(
        f"There is no SQLite database at {tmp_path / 'ap.db'}" in r.getMessage() for r in caplog.records
    )
    with caplog.at_level(logging.WARNING, logger="granite_assets"):
        assert downgrade(url, "base") is None
        with pytest.raises(DatabaseBehindError, match="never migrated it"):
            downgrade(url, head_revision() or "base")
    assert list(tmp_path.iterdir()) == []
    assert upgrade_to_head(url) == head_revision()  # an upgrade creates it, on purpose
