"""The ``granite-assets db`` command line, run as operators run it: a real process, a real database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
from command_line import COMMAND_LINE
from conftest import Database, add_revision
from support import add_table_revisions, holding_lock, new_password, snapshot, url_with_password, version_rows

from granite_assets import migrations
from granite_assets._cli import (
    EXIT_AHEAD,
    EXIT_BEHIND,
    EXIT_MIGRATION_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    URL_VARIABLE,
    build_parser,
)

pytestmark = pytest.mark.slow

CONSOLE_SCRIPT = Path(sys.executable).with_name("granite-assets")
# Runs the command line on an environment of the test's own, in place of the bundled one.
WITH_ENVIRONMENT = (
    "import sys\n"
    "from pathlib import Path\n"
    "import granite_assets.migrations as migrations\n"
    "directory = Path(sys.argv.pop(1))\n"
    "migrations.bundled_directory = lambda: directory\n"
    "from granite_assets._cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
BASELINE = migrations.revisions()[0]


@dataclass(frozen=True)
class Run:
    """What one command printed and how it exited."""

    code: int
    out: list[str]
    err: str

    @property
    def err_lines(self) -> list[str]:
        """Standard error, line by line."""
        return self.err.splitlines()


def timeless(lines: list[str]) -> list[str]:
    """``lines`` with each time in seconds ("in 0.31 s") replaced by ``#``, to compare exactly."""
    return [re.sub(r"\b\d+\.\d+ s\b", "# s", line) for line in lines]


def granite_assets(
    cwd: Path,
    *args: str,
    secret: str | None = None,
    env_url: str | None = None,
    console_script: bool = False,
    environment: Path | None = None,
    database_url: str | None = None,
) -> Run:
    """Run ``granite-assets ARGS`` in a new process; check that ``secret`` appears nowhere in its output.

    The process is forked from one that imported the command line already (see command_line.py),
    except for the console script, which starts as an operator's does.
    """
    env = {k: v for k, v in os.environ.items() if k not in {URL_VARIABLE, "DATABASE_URL"}}
    if env_url is not None:
        env[URL_VARIABLE] = env_url
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    if console_script:  # the installed script, started as an operator starts it
        done = subprocess.run(
            [str(CONSOLE_SCRIPT), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=300,
            check=False,
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    elif environment is not None:
        code, out, err = COMMAND_LINE.run(
            ["-c", str(environment), *args], env=env, cwd=cwd, code=WITH_ENVIRONMENT
        )
    else:
        code, out, err = COMMAND_LINE.run(["-m", *args], env=env, cwd=cwd)
    if secret is not None:
        assert secret not in out
        assert secret not in err
    return Run(code, out.splitlines(), err)


def test_upgrade_current_check_and_downgrade(database: Database, tmp_path: Path) -> None:
    """upgrade, current, check and downgrade work, print one line per revision, and never the password."""
    password = new_password()
    with url_with_password(database, password) as url:
        run = granite_assets(tmp_path, "db", "check", "--url", url, secret=password)
        assert run.code == EXIT_BEHIND
        assert f"Pending granite-assets revisions:\n  {BASELINE.revision} ({BASELINE.message})\n" in run.err
        assert run.out == []

        run = granite_assets(tmp_path, "db", "current", "--url", url, secret=password)
        assert (run.code, run.out) == (EXIT_OK, ["(none)"])

        run = granite_assets(tmp_path, "db", "upgrade", "--url", url, secret=password)
        assert run.code == EXIT_OK, run.err
        assert run.out == [f"at {BASELINE.revision}"]
        assert timeless(run.err_lines) == [
            f"Applying 1 revision: {BASELINE.revision} ({BASELINE.message})",
            f"[1/1] Applying revision {BASELINE.revision} ({BASELINE.message}) ...",
            f"[1/1] Applied revision {BASELINE.revision} ({BASELINE.message}) in # s",
            "Applied 1 revision in # s",
        ]

        run = granite_assets(tmp_path, "db", "current", "--url", url, secret=password)
        assert (run.code, run.out) == (EXIT_OK, [BASELINE.revision])

        run = granite_assets(tmp_path, "db", "check", "--url", url, secret=password)
        assert (run.code, run.out) == (EXIT_OK, [f"up to date at {BASELINE.revision}"])

        run = granite_assets(tmp_path, "db", "downgrade", "base", "--url", url, secret=password)
        assert run.code == EXIT_OK, run.err
        assert run.out == ["at base"]
        assert f"[1/1] Reverted revision {BASELINE.revision} ({BASELINE.message}) in # s" in timeless(
            run.err_lines
        )
        assert version_rows(database) == []


def test_one_line_per_revision_history_and_heads(
    database: Database, environment_copy: Path, tmp_path: Path
) -> None:
    """With three revisions, upgrade and downgrade print a line for each; history and heads list them."""
    add_table_revisions(environment_copy, "cli")
    url = database.url_string
    run = granite_assets(tmp_path, "db", "upgrade", "--url", url, environment=environment_copy)
    assert run.code == EXIT_OK, run.err
    assert run.out == ["at 0003"]
    assert [line for line in timeless(run.err_lines) if " in # s" in line] == [
        f"[1/3] Applied revision 0001 ({BASELINE.message}) in # s",
        "[2/3] Applied revision 0002 (table 0002) in # s",
        "[3/3] Applied revision 0003 (table 0003) in # s",
        "Applied 3 revisions in # s",
    ]
    run = granite_assets(tmp_path, "db", "downgrade", "0001", "--url", url, environment=environment_copy)
    assert run.code == EXIT_OK, run.err
    assert run.out == ["at 0001"]
    assert [line for line in timeless(run.err_lines) if " in # s" in line] == [
        "[1/2] Reverted revision 0003 (table 0003) in # s",
        "[2/2] Reverted revision 0002 (table 0002) in # s",
        "Reverted 2 revisions in # s",
    ]
    assert version_rows(database) == ["0001"]

    run = granite_assets(tmp_path, "db", "check", "--url", url, environment=environment_copy)
    assert run.code == EXIT_BEHIND
    assert "\n  0002 (table 0002)\n  0003 (table 0003)\n" in run.err

    run = granite_assets(tmp_path, "db", "history", environment=environment_copy)
    assert run.code == EXIT_OK, run.err
    assert run.out == [f"0001  {BASELINE.message}", "0002  table 0002", "0003  table 0003  (head)"]
    run = granite_assets(tmp_path, "db", "heads", environment=environment_copy)
    assert (run.code, run.out) == (EXIT_OK, ["0003"])


def test_console_script_reads_the_url_from_the_environment(database: Database, tmp_path: Path) -> None:
    """The installed script takes the URL from GRANITE_ASSETS_DATABASE_URL, and --url wins over it."""
    password = new_password()
    with url_with_password(database, password) as url:
        run = granite_assets(tmp_path, "db", "upgrade", env_url=url, console_script=True, secret=password)
        assert run.code == EXIT_OK, run.err
        assert run.out[-1] == f"at {BASELINE.revision}"
        unusable = f"nosuchdatabase://someone:{password}@nowhere/none"
        run = granite_assets(
            tmp_path, "db", "current", "--url", url, env_url=unusable, console_script=True, secret=password
        )
        assert (run.code, run.out) == (EXIT_OK, [BASELINE.revision])
        assert version_rows(database) == [BASELINE.revision]  # before the login and its tables go


@pytest.mark.parametrize("unknown", ["9999", "0000zz"])
def test_check_says_ahead(database: Database, tmp_path: Path, unknown: str) -> None:
    """At a revision this release lacks, sorting after or before its head: check exits 4, the others 1."""
    migrations.upgrade_to_head(database.url_string)
    database.execute(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '{unknown}'")
    before = snapshot(database)
    run = granite_assets(tmp_path, "db", "check", "--url", database.url_string)
    assert run.code == EXIT_AHEAD, run.err
    assert unknown in run.err
    for command in (["upgrade"], ["downgrade", "base"]):
        run = granite_assets(tmp_path, "db", *command, "--url", database.url_string)
        assert run.code == EXIT_MIGRATION_ERROR, run.err
        assert run.err.startswith("error: ")
        assert f"revision {unknown}, which this release does not ship" in run.err
    run = granite_assets(tmp_path, "db", "current", "--url", database.url_string)
    assert (run.code, run.out) == (EXIT_OK, [unknown])
    assert snapshot(database) == before


def test_lock_timeout_option(database: Database, tmp_path: Path) -> None:
    """--lock-timeout bounds the wait for a lock held elsewhere: upgrade and downgrade exit 1, unchanged."""
    password = new_password()
    with url_with_password(database, password) as url:
        for args in (["upgrade"], ["downgrade", "base"]):  # each with work to do: 0001 to apply, to revert
            before = snapshot(database)
            with holding_lock(database):
                run = granite_assets(
                    tmp_path, "db", *args, "--lock-timeout", "1", "--url", url, secret=password
                )
            assert run.code == EXIT_MIGRATION_ERROR
            assert re.search(r"for more than 1 second\b", run.err)
            assert snapshot(database) == before
            migrations.upgrade_to_head(url)


def test_offline_sql(database: Database, tmp_path: Path) -> None:
    """upgrade --sql (reading the database) and downgrade --sql --from print only SQL, and no password."""
    password = new_password()
    with url_with_password(database, password) as url:
        _offline_sql(database, tmp_path, url, password)


def _offline_sql(database: Database, tmp_path: Path, url: str, password: str) -> None:
    before = snapshot(database)
    run = granite_assets(tmp_path, "db", "upgrade", "--sql", "--url", url, secret=password)
    assert run.code == EXIT_OK, run.err
    sql = "\n".join(run.out)
    assert f"CREATE TABLE {migrations.VERSION_TABLE}" in sql
    assert "Applied revision" not in sql
    run = granite_assets(
        tmp_path,
        "db",
        "downgrade",
        "--sql",
        "--from",
        BASELINE.revision,
        "base",
        "--url",
        url,
        secret=password,
    )
    assert run.code == EXIT_OK, run.err
    sql = "\n".join(run.out)
    assert f"DELETE FROM {migrations.VERSION_TABLE}" in sql
    assert "Reverted revision" not in sql
    assert snapshot(database) == before


USAGE_ERRORS = {
    "unknown-subcommand": ["db", "frobnicate"],
    "no-url": ["db", "upgrade"],
    "downgrade-without-revision": ["db", "downgrade", "--url", "sqlite://"],
    "offline-downgrade-without-from": ["db", "downgrade", "base", "--sql", "--url", "sqlite://"],
    "lock-timeout-not-a-number": ["db", "upgrade", "--lock-timeout", "soon", "--url", "sqlite://"],
    "heads-takes-no-url": ["db", "heads", "--url", "sqlite://"],
    "from-without-sql": ["db", "upgrade", "--from", "0001", "--url", "sqlite://"],
    "lock-timeout-with-sql": ["db", "upgrade", "--sql", "--lock-timeout", "5", "--url", "sqlite://"],
}


@pytest.mark.parametrize("args", USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    """A command line that does not parse exits 2 with a usage message, touching no database."""
    run = granite_assets(tmp_path, *args)
    assert run.code == EXIT_USAGE
    assert "usage: granite-assets" in run.err
    assert run.out == []
    assert list(tmp_path.iterdir()) == []


def test_unknown_revision_exits_1(database: Database, tmp_path: Path) -> None:
    """downgrade to, or offline SQL from, a revision this release lacks exits 1 without a traceback."""
    for args in (["downgrade", "0042"], ["upgrade", "--sql", "--from", "0042"]):
        run = granite_assets(tmp_path, "db", *args, "--url", database.url_string)
        assert run.code == EXIT_MIGRATION_ERROR
        assert run.err.startswith("error: Revision '0042' is not one granite-assets ships")
        assert "Traceback" not in run.err
    assert version_rows(database) is None


@pytest.mark.parametrize(
    ("args", "lists"),
    [
        ([], ["db", "--version"]),
        (["db"], ["upgrade", "downgrade", "stamp", "current", "check", "grants", "heads", "history"]),
    ],
    ids=["no-command", "no-subcommand"],
)
def test_no_command_prints_help(tmp_path: Path, args: list[str], lists: list[str]) -> None:
    """Without a command, the help of the level reached is printed (on stderr, exit 2), not a bare error."""
    run = granite_assets(tmp_path, *args)
    assert run.code == EXIT_USAGE
    assert run.err.startswith(f"usage: granite-assets {' '.join(args)}".rstrip() + " [-h]")
    assert "error:" not in run.err
    for name in lists:
        assert name in run.err
    assert run.out == []


def test_version(tmp_path: Path) -> None:
    """--version prints the installed version on stdout."""
    run = granite_assets(tmp_path, "--version")
    assert (run.code, run.out) == (EXIT_OK, [f"granite-assets {version('granite-assets')}"])


def test_every_option_help_shows_its_default() -> None:
    """Every option of every command says in its help what happens without it."""
    commands = [
        build_parser().parse_args(["db", *args]).command_parser
        for args in (
            ["upgrade"],
            ["downgrade", "base"],
            ["stamp", "base"],
            ["current"],
            ["check"],
            ["grants", "--role", "app"],
            ["heads"],
            ["history"],
        )
    ]
    assert len(commands) == 8
    options = [a for p in commands for a in p._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in options} == {
        "url",
        "sql",
        "from_revision",
        "lock_timeout",
        "ddl_lock_timeout",
        "ddl_retries",
        "statement_timeout",
        "format",
        "wait",
        "role",
        "dialect",
        "owner",
        "read_only",
        "quiet",
    }
    for option in options:
        assert "(default: " in (option.help or "") or "(no default: " in (option.help or ""), option.dest
    help_text = "\n".join(p.format_help() for p in commands)
    assert f"(default: {migrations.DEFAULT_LOCK_TIMEOUT:g})" in help_text
    assert f"(default: {migrations.DEFAULT_DDL_LOCK_TIMEOUT:g})" in help_text
    assert f"(default: {migrations.DEFAULT_DDL_RETRIES})" in help_text


def test_offline_downgrade_without_from_shows_the_downgrade_usage(tmp_path: Path) -> None:
    """downgrade --sql without --from prints the downgrade command's usage, not the top level's."""
    run = granite_assets(tmp_path, "db", "downgrade", "--sql", "base", "--url", "postgresql://")
    assert run.code == EXIT_USAGE
    assert run.err.startswith("usage: granite-assets db downgrade")
    assert "granite-assets db downgrade: error: downgrade --sql needs --from REVISION" in run.err


def test_offline_sql_with_nothing_to_do_says_so_in_sql(tmp_path: Path) -> None:
    """upgrade --sql from the head, and downgrade --sql to where it starts, print one SQL comment."""
    head = migrations.head_revision()
    assert head is not None
    run = granite_assets(tmp_path, "db", "upgrade", "--sql", "--from", head, "--url", "postgresql://")
    assert (run.code, run.out) == (EXIT_OK, [f"-- Nothing to do: {head} is the head revision."])
    run = granite_assets(tmp_path, "db", "downgrade", "--sql", "--from", head, head, "--url", "postgresql://")
    assert (run.code, run.out) == (EXIT_OK, [f"-- Nothing to do: the database is at {head} already."])


def test_check_suggests_the_shell_command_first(tmp_path: Path) -> None:
    """check on a database that is behind tells a shell user the command to run before the Python call."""
    run = granite_assets(tmp_path, "db", "check", "--url", f"sqlite:///{tmp_path / 'app.db'}")
    assert run.code == EXIT_BEHIND
    assert "Run `granite-assets db upgrade`" in run.err
    assert run.err.index("granite-assets db upgrade") < run.err.index("upgrade_to_head")


def test_diagnostics_go_to_stderr_so_redirected_sql_is_pure(
    database: Database, environment_copy: Path, tmp_path: Path
) -> None:
    """With a stale manifest, upgrade --sql > file holds only SQL; the warning and progress go to stderr."""
    add_revision(environment_copy, "0002", "0001", manifest=False)  # the manifest no longer matches
    url = database.url_string
    script = tmp_path / "upgrade.sql"
    with script.open("w") as stdout:
        done = subprocess.run(
            [sys.executable, "-c", WITH_ENVIRONMENT, str(environment_copy), "db", "upgrade", "--sql"],
            env={**os.environ, URL_VARIABLE: url},
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            check=False,
        )
    assert done.returncode == EXIT_OK, done.stderr
    assert "make migrate-manifest" in done.stderr
    sql = script.read_text()
    assert sql.startswith(("BEGIN;", "CREATE TABLE")), sql[:200]
    assert "manifest" not in sql
    assert "-- Running upgrade 0001 -> 0002" in sql

    run = granite_assets(tmp_path, "db", "upgrade", "--url", url, environment=environment_copy)
    assert run.code == EXIT_OK, run.err
    assert run.out == ["at 0002"]
    assert "make migrate-manifest" in run.err
    assert "[2/2] Applied revision 0002 (test revision 0002) in # s" in timeless(run.err_lines)


def test_downgrade_with_nothing_to_revert_says_so(database: Database, tmp_path: Path) -> None:
    """downgrade 0001 on a database granite-assets never touched exits 3: there is nothing to downgrade."""
    run = granite_assets(tmp_path, "db", "downgrade", BASELINE.revision, "--url", database.url_string)
    assert run.code == EXIT_BEHIND
    assert "there is nothing to downgrade" in run.err
    assert "never migrated it" in run.err
    assert run.out == []
    assert version_rows(database) is None


@pytest.mark.parametrize("value", ["nan", "-1", "soon"])
def test_lock_timeout_must_be_zero_or_more_seconds(tmp_path: Path, value: str) -> None:
    """--lock-timeout refuses NaN, negative numbers and words as a usage error naming the option."""
    run = granite_assets(tmp_path, "db", "upgrade", "--url", "sqlite://", "--lock-timeout", value)
    assert run.code == EXIT_USAGE
    assert "--lock-timeout" in run.err
    assert "zero or more seconds" in run.err


@pytest.mark.parametrize(("command", "code"), [("current", EXIT_OK), ("check", EXIT_BEHIND)])
def test_reading_a_sqlite_file_that_does_not_exist_creates_nothing(
    tmp_path: Path, command: str, code: int
) -> None:
    """current and check on a mistyped SQLite path give their verdict, say no file is there, create none."""
    run = granite_assets(tmp_path, "db", command, "--url", "sqlite:///ap.db")
    assert run.code == code
    assert f"There is no SQLite database at {tmp_path / 'ap.db'}" in run.err
    assert list(tmp_path.iterdir()) == []


MISPLACED_URL = {
    "url-without---url": ["db", "upgrade", "{url}"],
    "url-for-a-command-without-one": ["db", "heads", "--url", "{url}"],
    "url-without-a-command": ["{url}"],
}


@pytest.mark.parametrize("args", MISPLACED_URL.values(), ids=MISPLACED_URL.keys())
def test_a_url_in_the_wrong_place_is_echoed_without_its_password(tmp_path: Path, args: list[str]) -> None:
    """A URL typed where the command line expects something else shows in errors with its password hidden."""
    password = new_password()
    url = f"postgresql+psycopg2://app:{password}@db.internal/app"
    run = granite_assets(tmp_path, *(arg.format(url=url) for arg in args), secret=password)
    assert run.code in {EXIT_USAGE, EXIT_MIGRATION_ERROR}
    assert "postgresql+psycopg2://app:***@db.internal/app" in run.err


def test_an_unknown_argument_shows_the_usage_of_its_command(tmp_path: Path) -> None:
    """An argument a command does not take is reported with that command's usage, not the top level's."""
    run = granite_assets(tmp_path, "db", "heads", "--url", "sqlite://")
    assert run.code == EXIT_USAGE
    assert run.err.startswith("usage: granite-assets db heads")
    assert "granite-assets db heads: error: unrecognized arguments: --url sqlite://" in run.err


@pytest.mark.parametrize("command", ["upgrade", "check", "current"])
def test_a_db_command_without_db_names_the_command_to_run(tmp_path: Path, command: str) -> None:
    """``granite-assets upgrade`` says to run ``granite-assets db upgrade``, and shows no password."""
    password = new_password()
    url = f"postgresql+psycopg2://app:{password}@db.internal/app"
    run = granite_assets(tmp_path, command, "--url", url, secret=password)
    assert run.code == EXIT_USAGE
    assert f"run `granite-assets db {command}`" in run.err


def test_the_db_commands_are_the_db_groups_commands() -> None:
    """The commands recognised without their group are exactly the db group's."""
    from granite_assets._cli import DB_COMMANDS, build_parser

    help_text = build_parser().parse_known_args(["db"])[0].command_parser.format_help()
    listed = re.findall(r"^    (\w+)\s", help_text, re.MULTILINE)
    assert sorted(listed) == sorted(DB_COMMANDS)


def test_offline_downgrade_from_below_its_target_exits_3_without_a_traceback(tmp_path: Path) -> None:
    """``db downgrade 0001 --sql --from base`` has nothing to revert, and says so as the online one does."""
    run = granite_assets(
        tmp_path, "db", "downgrade", "0001", "--sql", "--from", "base", "--url", "postgresql://"
    )
    assert run.code == EXIT_BEHIND
    assert "Traceback" not in run.err
    assert "nothing to downgrade" in run.err


def test_an_empty_url_is_refused_rather_than_replaced_by_the_environments(tmp_path: Path) -> None:
    """``--url "$UNSET"`` is a mistake: it does not quietly fall back to $GRANITE_ASSETS_DATABASE_URL."""
    run = granite_assets(tmp_path, "db", "upgrade", "--url", "", env_url=f"sqlite:///{tmp_path / 'other.db'}")
    assert run.code == EXIT_USAGE
    assert "--url is empty" in run.err
    assert list(tmp_path.iterdir()) == []


def test_the_exit_codes_are_the_documented_numbers() -> None:
    """The codes scripts test for are fixed: 0 ok, 1 migration error, 2 usage, 3 behind, 4 ahead."""
    assert (EXIT_OK, EXIT_MIGRATION_ERROR, EXIT_USAGE, EXIT_BEHIND, EXIT_AHEAD) == (0, 1, 2, 3, 4)


def test_only_database_url_set_says_it_was_seen_and_not_read(tmp_path: Path) -> None:
    """With DATABASE_URL alone, the command says it saw it, why it does not read it, and what to set."""
    run = granite_assets(tmp_path, "db", "current", database_url=f"sqlite:///{tmp_path / 'app.db'}")
    assert run.code == 2
    assert "DATABASE_URL is set, but granite-assets deliberately does not read it" in run.err
    assert URL_VARIABLE in run.err
    assert list(tmp_path.iterdir()) == []


def test_an_in_memory_url_gets_advice_for_the_command_line(tmp_path: Path) -> None:
    """The command line names the URL as typed and says to name a file, not to pass an Engine."""
    run = granite_assets(tmp_path, "db", "upgrade", "--url", "sqlite:///:memory:")
    assert run.code == 1
    assert "sqlite:///:memory: is an in-memory SQLite database" in run.err
    assert "Name a database file instead" in run.err
    assert "Engine" not in run.err
    assert "%3A" not in run.err


def test_an_async_url_gets_advice_for_the_command_line(tmp_path: Path) -> None:
    """An async URL is answered with the sync URL to give the command, not with Python functions."""
    password = new_password()
    run = granite_assets(
        tmp_path,
        "db",
        "current",
        "--url",
        f"postgresql+asyncpg://app:{password}@127.0.0.1/app",
        secret=password,
    )
    assert run.code == 1
    assert "the command line cannot use" in run.err
    assert "postgresql+psycopg://app:***@127.0.0.1/app" in run.err
    assert "to_sync_url" not in run.err
    assert "upgrade_to_head_async" not in run.err


@pytest.mark.parametrize(
    "args",
    [
        ["--ddl-retries", "-1"],
        ["--ddl-retries", "two"],
        ["--statement-timeout", "0"],
        ["--ddl-lock-timeout", "-3"],
    ],
)
def test_bad_table_lock_bounds_exit_2(tmp_path: Path, args: list[str]) -> None:
    """A table-lock bound that makes no sense is a usage error, before anything connects."""
    run = granite_assets(tmp_path, "db", "upgrade", "--url", f"sqlite:///{tmp_path / 'app.db'}", *args)
    assert run.code == EXIT_USAGE
    assert "Traceback" not in run.err
    assert list(tmp_path.iterdir()) == []
