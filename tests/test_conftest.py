"""The test suite's own reporting: why a server was skipped, and which backends a run used.

Each check runs twice: in one pytest process, and under pytest-xdist as ``make test`` runs the
suite, where the workers' backends must reach the controller's summary.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from command_line import COMMAND_LINE
from conftest import SERVER_VARIABLES, DatabasesAhead, require_server
from sqlalchemy import bindparam, create_engine, text
from sqlalchemy.pool import NullPool
from support import new_password

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parent.parent
# One quick test that takes the database fixture, on every backend.
ONE_TEST = "tests/test_upgrade.py::test_first_call_creates_and_stamps_the_version_table"


#: pytest's options for one process, and for two pytest-xdist workers (ONE_TEST's four backends split).
RUNNERS = [pytest.param(("-p", "no:xdist"), id="one-process"), pytest.param(("-n", "2"), id="xdist")]


def run_suite(servers: dict[str, str], runner: tuple[str, ...], *, require: str = "", expect: int = 0) -> str:
    """Run ONE_TEST in a new pytest with these server URLs and required backends; return its output."""
    env = {**os.environ, "GRANITE_ASSETS_TEST_REQUIRE": require}
    env.update({SERVER_VARIABLES[name]: url for name, url in servers.items()})
    done = subprocess.run(
        [sys.executable, "-m", "pytest", ONE_TEST, "-q", *runner],
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == expect, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_refused_login_is_skipped_with_the_drivers_reason(runner: tuple[str, ...]) -> None:
    """A wrong user or password is reported in the driver's words, password hidden, not as a dead server."""
    require_server("postgresql")
    require_server("mysql")
    password = new_password()
    out = run_suite(
        {
            "postgresql": f"postgresql+psycopg2://nosuchuser:{password}@127.0.0.1:5432/postgres",
            "mysql": f"mysql+pymysql://root:{password}@127.0.0.1:3306/",
        },
        runner,
    )
    assert password not in out
    assert 'role "nosuchuser" does not exist' in out
    assert "Access denied for user 'root'" in out
    assert "granite-assets: backends tested: sqlite-pysqlite\n" in out
    assert "granite-assets: mysql tests skipped: mysql+pymysql://root:***@127.0.0.1:3306/" in out


@pytest.mark.heavy
@pytest.mark.parametrize("runner", RUNNERS)
def test_the_summary_names_every_backend_used(runner: tuple[str, ...]) -> None:
    """With every server up, the run ends by naming the four backends it tested."""
    servers = {
        name: os.environ[variable] for name, variable in SERVER_VARIABLES.items() if require_server(name)
    }
    out = run_suite(servers, runner)
    tested = "mysql-pymysql, postgresql-psycopg, postgresql-psycopg2, sqlite-pysqlite"
    assert f"granite-assets: backends tested: {tested}\n" in out
    assert "tests skipped" not in out


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_required_backend_that_is_down_fails_the_run(runner: tuple[str, ...]) -> None:
    """A server GRANITE_ASSETS_TEST_REQUIRE names that refuses the login errors its tests, never skips."""
    require_server("mysql")
    servers = {
        "postgresql": "postgresql+psycopg2://nosuchuser@127.0.0.1:5432/postgres",
        "mysql": os.environ[SERVER_VARIABLES["mysql"]],
    }
    out = run_suite(servers, runner, require="postgresql,mysql", expect=1)
    assert "(and GRANITE_ASSETS_TEST_REQUIRE requires it)" in out
    assert out.splitlines()[-1].startswith("2 passed, 2 errors in ")
    assert "granite-assets: backends tested: mysql-pymysql, sqlite-pysqlite\n" in out
    assert "granite-assets: postgresql tests skipped: postgresql+psycopg2://nosuchuser@" in out


def test_databases_made_ahead_are_new_each_time_and_all_dropped() -> None:
    """Each take is a database of its own, empty; after close, neither it nor the one made ahead is left."""
    admin = require_server("postgresql")
    ahead = DatabasesAhead()
    names = [ahead.take(admin) for _ in range(2)]
    spare = ahead._ready[admin].result()  # the database made ahead for the next test
    assert len({*names, spare}) == 3
    engine = create_engine(admin.set(database=names[1]), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            assert (
                connection.execute(
                    text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
                ).scalar()
                == 0
            )
    finally:
        engine.dispose()
    for name in names:
        ahead.drop(admin, name)
    ahead.close()
    engine = create_engine(admin, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            left = connection.execute(
                text("SELECT datname FROM pg_database WHERE datname IN :names").bindparams(
                    bindparam("names", expanding=True)
                ),
                {"names": [*names, spare]},
            ).all()
    finally:
        engine.dispose()
    assert left == []


def test_each_command_runs_in_a_process_of_its_own(tmp_path: Path) -> None:
    """The forked commands (command_line.py) each get their own streams, environment, folder and exit code."""
    leave_a_mark = "import granite_assets, os, sys; granite_assets.mark = os.getpid(); sys.exit(3)"
    code, out, err = COMMAND_LINE.run(["-c"], env={}, cwd=tmp_path, code=leave_a_mark)
    assert (code, out, err) == (3, "", "")
    look = (
        "import granite_assets, os, sys\n"
        "print(os.getcwd(), os.environ['ONLY_HERE'], hasattr(granite_assets, 'mark'))\n"
        "print('to stderr', file=sys.stderr)\n"
        "raise ValueError('uncaught')\n"
    )
    code, out, err = COMMAND_LINE.run(["-c"], env={"ONLY_HERE": "yes"}, cwd=tmp_path, code=look)
    assert code == 1
    assert out == f"{tmp_path} yes False\n"
    assert err.startswith("to stderr\nTraceback")
    assert err.endswith("ValueError: uncaught\n")
    assert "ONLY_HERE" not in os.environ
    code, out, err = COMMAND_LINE.run(["-m", "--version"], env=dict(os.environ), cwd=tmp_path)
    assert (code, out.split()[0], err) == (0, "granite-assets", "")
