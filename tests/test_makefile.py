"""The Makefile as the README presents it: ``make help`` and ``make migrate``, run for real."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BACKENDS, Backend, Database, backend_params, fresh_database
from support import new_password, url_with_password, version_rows

from granite_assets._cli import URL_VARIABLE

pytestmark = [pytest.mark.slow, pytest.mark.makefile]

REPOSITORY = Path(__file__).resolve().parent.parent
# Stands in for make's shell: records each command line make hands to a shell, then runs it. Those
# command lines are the only ones the recipe puts in the process list.
RECORDING_SHELL = """#!/usr/bin/env bash
printf '%s\\n' "$@" >> "$RECORDED_COMMANDS"
exec bash "$@"
"""


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``make ARGS`` in the repository, as from a fresh shell (not from inside another make)."""
    outer = {"MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES", URL_VARIABLE, "DATABASE_URL"}
    clean = {k: v for k, v in os.environ.items() if k not in outer}
    return subprocess.run(
        ["make", *args],
        cwd=REPOSITORY,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_help_lists_every_target() -> None:
    """``make help`` names every target the Makefile defines, each with its one-line description."""
    makefile = (REPOSITORY / "Makefile").read_text(encoding="utf-8")
    targets = re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE)
    assert {"install", "format", "migrate", "migrate-manifest", "test", "docs"} <= set(targets)
    listed = re.findall(r"^\s+(?:\x1b\[1m)?([a-z][a-z-]*)", make("help").stdout, re.MULTILINE)
    assert sorted(listed) == sorted(targets)


@pytest.fixture(params=backend_params([b for b in BACKENDS if b.name != "sqlite"]))
def server_backend(request: pytest.FixtureRequest) -> Backend:
    """The backends whose URLs can carry a password."""
    value: Backend = request.param
    return value


@pytest.fixture
def server_database(server_backend: Backend, tmp_path: Path) -> Iterator[Database]:
    """A fresh database on a server backend."""
    with fresh_database(server_backend, tmp_path) as db:
        yield db


def test_migrate_keeps_the_password_off_the_terminal_and_the_process_list(
    server_database: Database, tmp_path: Path
) -> None:
    """``make migrate`` reads GRANITE_ASSETS_DATABASE_URL; neither a command line nor the output shows it."""
    password = new_password()
    recorded = tmp_path / "commands.log"
    shell = tmp_path / "shell"
    shell.write_text(RECORDING_SHELL)
    shell.chmod(0o755)
    with url_with_password(server_database, password) as url:
        done = make("migrate", f"SHELL={shell}", env={URL_VARIABLE: url, "RECORDED_COMMANDS": str(recorded)})
        assert done.returncode == 0, done.stdout + done.stderr
        assert version_rows(server_database) == ["0001"]
    assert done.stdout.splitlines()[-1] == "at 0001"
    assert password not in done.stdout + done.stderr
    commands = recorded.read_text()
    assert "granite-assets db upgrade" in commands
    assert password not in commands


def test_migrate_ignores_an_exported_database_url(tmp_path: Path) -> None:
    """An application's exported DATABASE_URL is never migrated: make migrate reads its own variable only."""
    application = tmp_path / "application.db"
    ours = tmp_path / "ours.db"
    env = {"DATABASE_URL": f"sqlite:///{application}", URL_VARIABLE: f"sqlite:///{ours}"}
    done = make("migrate", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ours.exists()
    assert not application.exists()


def test_migrate_refuses_database_url_on_the_command_line(tmp_path: Path) -> None:
    """``make migrate DATABASE_URL=...``, the old form, stops, names the right variable, migrates nothing."""
    target = tmp_path / f"{new_password()}.db"
    done = make("migrate", f"DATABASE_URL=sqlite:///{target}")
    assert done.returncode != 0
    assert f"export {URL_VARIABLE}=" in done.stderr
    assert target.name not in done.stdout + done.stderr
    assert not target.exists()
