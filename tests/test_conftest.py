"""The test suite's own reporting: why a server was skipped, and which backends a run used."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SERVER_VARIABLES, require_server
from support import new_password

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parent.parent
# One quick test that takes the database fixture, on every backend.
ONE_TEST = "tests/test_upgrade.py::test_first_call_creates_and_stamps_the_version_table"


def run_suite(servers: dict[str, str]) -> str:
    """Run ONE_TEST in a new pytest with these server URLs, no backend required; return its output."""
    env = {k: v for k, v in os.environ.items() if k != "GRANITE_ASSETS_TEST_REQUIRE"}
    env.update({SERVER_VARIABLES[name]: url for name, url in servers.items()})
    done = subprocess.run(
        [sys.executable, "-m", "pytest", ONE_TEST, "-q"],
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_refused_login_is_skipped_with_the_drivers_reason() -> None:
    """A wrong user or password is reported in the driver's words, password hidden, not as a dead server."""
    require_server("postgresql")
    require_server("mysql")
    password = new_password()
    out = run_suite(
        {
            "postgresql": f"postgresql+psycopg2://nosuchuser:{password}@127.0.0.1:5432/postgres",
            "mysql": f"mysql+pymysql://root:{password}@127.0.0.1:3306/",
        }
    )
    assert password not in out
    assert 'role "nosuchuser" does not exist' in out
    assert "Access denied for user 'root'" in out
    assert "granite-assets: backends tested: sqlite-pysqlite\n" in out
    assert "granite-assets: mysql tests skipped: mysql+pymysql://root:***@127.0.0.1:3306/" in out


def test_the_summary_names_every_backend_used() -> None:
    """With every server up, the run ends by naming the four backends it tested."""
    servers = {
        name: os.environ[variable] for name, variable in SERVER_VARIABLES.items() if require_server(name)
    }
    out = run_suite(servers)
    tested = "mysql-pymysql, postgresql-psycopg, postgresql-psycopg2, sqlite-pysqlite"
    assert f"granite-assets: backends tested: {tested}\n" in out
    assert "tests skipped" not in out
