"""The commands operators bring from Alembic and Django: upgrade REVISION, stamp, check --wait, JSON output.

Each runs as operators run it, a real process against a real database, on SQLite, PostgreSQL
(psycopg2) and MariaDB; one test checks several things per backend, since every process costs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import BACKENDS, Database, backend_params
from support import version_rows
from test_cli import WITH_ENVIRONMENT, granite_assets, timeless
from test_rolling import add_flagged_revision

from granite_assets import migrations
from granite_assets._cli import EXIT_AHEAD, EXIT_BEHIND, EXIT_MIGRATION_ERROR, EXIT_OK, URL_VARIABLE
from granite_assets.migrations import _runner
from granite_assets.migrations._names import COMPATIBILITY_TABLE

pytestmark = pytest.mark.slow

# One driver per server: the commands do not differ between PostgreSQL's drivers.
THREE_BACKENDS = backend_params([b for b in BACKENDS if b.driver in {"pysqlite", "psycopg2", "pymysql"}])
BASELINE = migrations.revisions()[0]
# The documented --format json shapes (docs/cli.rst): every key, always present.
STATE_KEYS = {"format", "database_revision", "head", "state", "pending", "newer"}
HISTORY_KEYS = {"format", "head", "revisions"}
REVISION_KEYS = {"revision", "down_revision", "message", "backward_compatible", "head"}


def three_revisions(environment: Path) -> None:
    """Give ``environment`` 0002 and 0003, each a table and backward compatible (so the record is kept)."""
    for revision in ("0002", "0003"):
        table = f"granite_assets_op{revision}"
        add_flagged_revision(
            environment,
            revision,
            f'op.create_table("{table}", sa.Column("id", sa.Integer, primary_key=True))',
            f'op.drop_table("{table}")',
            compatible=True,
            message=f"table {revision}",
        )


def record(database: Database) -> list[str]:
    """The revisions the compatibility record holds, in order."""
    return sorted(str(r) for r in database.scalar_rows(f"SELECT revision FROM {COMPATIBILITY_TABLE}"))


def document(out: list[str]) -> dict[str, Any]:
    """The one JSON document a command printed on standard output."""
    parsed: dict[str, Any] = json.loads("\n".join(out))
    return parsed


@pytest.mark.heavy
@pytest.mark.parametrize("backend", THREE_BACKENDS)
def test_upgrade_to_a_revision_stamp_history_and_sql_from_the_database(
    database: Database, environment_copy: Path, tmp_path: Path
) -> None:
    """upgrade REV stops there, history --url and --sql start from the database, stamp runs nothing."""
    three_revisions(environment_copy)
    url = database.url_string

    def cli(*args: str) -> Any:
        return granite_assets(tmp_path, "db", *args, environment=environment_copy, env_url=url)

    run = cli("upgrade", "0002")
    assert (run.code, run.out) == (EXIT_OK, ["at 0002"]), run.err
    base = f"0001 ({BASELINE.message})"
    assert timeless(run.err_lines) == [
        f"Applying 2 revisions: {base}, 0002 (table 0002)",
        f"[1/2] Applying revision {base} ...",
        f"[1/2] Applied revision {base} in # s",
        "[2/2] Applying revision 0002 (table 0002) ...",
        "[2/2] Applied revision 0002 (table 0002) in # s",
        "Applied 2 revisions in # s",
    ]
    assert (version_rows(database), record(database)) == (["0002"], ["0001", "0002"])

    run = cli("upgrade", "0001")  # below the database: a downgrade's work, refused
    assert run.code == EXIT_BEHIND
    assert "granite-assets db downgrade 0001" in run.err
    run = cli("upgrade", "0042")
    assert run.code == EXIT_MIGRATION_ERROR
    assert run.err.startswith("error: Revision '0042' is not one granite-assets ships")
    assert version_rows(database) == ["0002"]

    run = cli("history", "--url", url)
    assert (run.code, run.out) == (
        EXIT_OK,
        [f"[X] 0001  {BASELINE.message}", "[X] 0002  table 0002  (current)", "[ ] 0003  table 0003  (head)"],
    )
    run = cli("upgrade", "--sql")  # from where the database is: only 0003's DDL
    assert run.code == EXIT_OK, run.err
    sql = "\n".join(run.out)
    assert "granite_assets_op0003" in sql
    assert "granite_assets_op0002" not in sql

    run = cli("upgrade")  # the rest of the way
    assert (run.code, run.out) == (EXIT_OK, ["at 0003"]), run.err
    run = cli("upgrade", "--sql")
    assert (run.code, run.out) == (EXIT_OK, ["-- Nothing to do: 0003 is the head revision."])

    run = cli("stamp", "0001")
    assert (run.code, run.out) == (EXIT_OK, ["stamped 0001; was 0003"]), run.err
    assert (cli("current").out, record(database)) == (["0001"], ["0001"])
    assert "granite_assets_op0003" in database.table_names()  # nothing ran
    run = cli("stamp", "0003")
    assert (run.code, run.out) == (EXIT_OK, ["stamped 0003; was 0001"]), run.err
    assert (cli("current").out, record(database)) == (["0003"], ["0001", "0002", "0003"])
    run = cli("stamp", "0042")
    assert run.code == EXIT_MIGRATION_ERROR
    assert run.err.startswith("error: Revision '0042' is not one granite-assets ships")
    assert version_rows(database) == ["0003"]
    run = cli("stamp", "base")
    assert (run.code, run.out) == (EXIT_OK, ["stamped base; was 0003"]), run.err
    assert (version_rows(database), record(database)) == ([], [])

    with pytest.raises(migrations.UnknownRevisionError):
        migrations.stamp(url, "0042")
    with pytest.raises(migrations.UnknownRevisionError):
        migrations.upgrade_to(url, "0042")
    assert migrations.upgrade_to(url, BASELINE.revision) == BASELINE.revision  # the bundled history
    assert migrations.stamp(url, "base") == BASELINE.revision


@pytest.mark.heavy
@pytest.mark.parametrize("backend", THREE_BACKENDS)
def test_check_waits_and_every_json_document_has_the_documented_shape(
    database: Database, environment_copy: Path, tmp_path: Path
) -> None:
    """check --wait returns once another process upgrades, or with check's code; JSON holds the state."""
    three_revisions(environment_copy)
    url = database.url_string

    def cli(*args: str) -> Any:
        return granite_assets(tmp_path, "db", *args, environment=environment_copy, env_url=url)

    started = time.monotonic()
    run = cli("check", "--wait", "1", "--format", "json")  # nothing upgrades: behind when the time is up
    assert time.monotonic() - started >= 1
    assert run.code == EXIT_BEHIND
    state = document(run.out)
    assert set(state) == STATE_KEYS
    assert state["format"] == 1
    assert (state["database_revision"], state["head"], state["state"], state["newer"]) == (
        None,
        "0003",
        "behind",
        [],
    )
    assert state["pending"][1] == {"revision": "0002", "message": "table 0002", "backward_compatible": True}
    assert "Pending granite-assets revisions" in run.err

    env = {**subprocess_env(), URL_VARIABLE: url}
    command = [sys.executable, "-c", WITH_ENVIRONMENT, str(environment_copy), "db", "check", "--wait", "5"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as waiting:
        time.sleep(1)
        _runner.upgrade(environment_copy, url, 60.0)  # another process's upgrade, as far as the check knows
        upgraded = time.monotonic()
        out, err = waiting.communicate(timeout=30)
    # 0, not 3: it saw the upgrade before its 5 seconds were up, and within a poll or two of it.
    assert (waiting.returncode, out) == (EXIT_OK, "up to date at 0003\n"), err
    assert time.monotonic() - upgraded < 3
    assert "Waiting up to 5 seconds" in err

    for command_args in (["current"], ["check"]):
        run = cli(*command_args, "--format", "json")
        assert run.code == EXIT_OK, run.err
        state = document(run.out)
        assert set(state) == STATE_KEYS
        assert (state["database_revision"], state["state"], state["pending"]) == ("0003", "up_to_date", [])
    run = cli("heads", "--format", "json")
    assert document(run.out) == {"format": 1, "head": "0003", "heads": ["0003"]}
    run = cli("history", "--format", "json")
    history = document(run.out)
    assert set(history) == HISTORY_KEYS
    assert all(set(entry) == REVISION_KEYS for entry in history["revisions"])
    run = cli("history", "--format", "json", "--url", url)
    history = document(run.out)
    assert set(history) == {*HISTORY_KEYS, "database_revision"}
    assert [(e["revision"], e["applied"], e["current"]) for e in history["revisions"]] == [
        ("0001", True, False),
        ("0002", True, False),
        ("0003", True, True),
    ]

    database.execute(
        f"UPDATE {migrations.VERSION_TABLE} SET version_num = '9999'"
    )  # a newer release's, unrecorded
    run = cli("check", "--format", "json")
    assert run.code == EXIT_AHEAD
    state = document(run.out)
    assert (state["state"], state["newer"]) == (
        "ahead_unrecorded",
        [{"revision": "9999", "backward_compatible": None}],
    )
    assert "9999" in run.err


def subprocess_env() -> dict[str, str]:
    """This process's environment without a database URL of its own."""
    import os

    return {k: v for k, v in os.environ.items() if k not in {URL_VARIABLE, "DATABASE_URL"}}


def test_check_waits_for_an_unreachable_server_then_exits_1(tmp_path: Path) -> None:
    """A server that does not answer is tried again until the time is up (an init container starts first)."""
    started = time.monotonic()
    run = granite_assets(
        tmp_path, "db", "check", "--wait", "1.5", "--url", "postgresql+psycopg2://app@127.0.0.1:1/app"
    )
    assert time.monotonic() - started >= 1.5
    assert run.code == EXIT_MIGRATION_ERROR
    assert "Gave up after 1.5 seconds" in run.err
    assert "Could not connect" in run.err


def test_offline_sql_without_a_database_says_what_it_assumes(tmp_path: Path) -> None:
    """upgrade --sql on a dialect alone says, in SQL and on stderr, that it starts from an empty database."""
    run = granite_assets(tmp_path, "db", "upgrade", "--sql", "--url", "postgresql://")
    assert run.code == EXIT_OK, run.err
    assert run.out[0].startswith("-- granite-assets: assuming an empty database")
    assert "--from REVISION" in run.out[0]
    assert "assuming an empty database" in run.err
    run = granite_assets(
        tmp_path, "db", "upgrade", "--sql", "--from", BASELINE.revision, "--url", "postgresql://"
    )
    assert "assuming" not in run.err
