"""The exceptions as users meet them: under their public name, and intact through pickling."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from granite_assets import migrations

EXCEPTIONS = [
    value
    for name in migrations.__all__
    if isinstance(value := getattr(migrations, name), type) and issubclass(value, BaseException)
]
# Each exception as the library raises it, with its attributes.
SAMPLES = [
    migrations.MigrationError("failed"),
    migrations.MissingDependencyError("install it"),
    migrations.InvalidURLError("bad URL"),
    migrations.AsyncDriverURLError("async", sync_url="postgresql+psycopg://app:***@db/app"),
    migrations.DatabaseConnectionError("no answer"),
    migrations.InvalidVersionTableError("two rows"),
    migrations.DatabaseAheadError("ahead", revision="9999", reason="incompatible", blocking="0003"),
    migrations.DatabaseBehindError("behind", current="0001", pending=["0002", "0003"]),
    migrations.MigrationLockTimeoutError("held"),
    migrations.MigrationFailedError("failed in 0002", revision="0002"),
    migrations.DDLLockTimeoutError(
        "0003 waited", revision="0003", blockers=["pid 42 (idle)"], attempts=6, applied=["ALTER TABLE"]
    ),
    migrations.InsufficientPrivilegeError(
        "may not change the schema", revision="0002", login="app", statement="CREATE TABLE granite_assets_x ("
    ),
    migrations.UnknownRevisionError("no such revision"),
    migrations.UnsupportedConnectionError("pass the engine"),
]


def test_every_public_exception_has_a_sample() -> None:
    """The samples below cover every exception granite_assets.migrations exports."""
    assert {type(exc) for exc in SAMPLES} == set(EXCEPTIONS)


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda cls: cls.__name__)
def test_exception_names_its_public_module(cls: type[BaseException]) -> None:
    """Each exception says it lives in granite_assets.migrations, where users import it from."""
    assert cls.__module__ == "granite_assets.migrations"
    assert getattr(migrations, cls.__qualname__) is cls


@pytest.mark.parametrize("exc", SAMPLES, ids=lambda exc: type(exc).__name__)
def test_exception_survives_pickling(exc: migrations.MigrationError) -> None:
    """A pickled exception (a worker process's, say) comes back with its type, message and attributes."""
    copy = pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes
    assert type(copy) is type(exc)
    assert str(copy) == str(exc)
    assert copy.args == exc.args
    assert vars(copy) == vars(exc)


def test_a_subclass_of_the_user_keeps_its_own_module() -> None:
    """Only granite-assets' own exceptions are renamed; a subclass written elsewhere keeps its module."""

    class Mine(migrations.MigrationError):
        pass

    assert Mine.__module__ == __name__


@pytest.mark.slow
def test_traceback_shows_the_public_name(tmp_path: Path) -> None:
    """An uncaught error's traceback ends with granite_assets.migrations.<Name>, the name to catch."""
    code = (
        "from granite_assets.migrations import upgrade_to_head\n"
        "upgrade_to_head('postgresql+psycopg2cffi://app@localhost/app')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("granite_assets.migrations.MissingDependencyError: "), done.stderr
    assert "granite_assets.migrations._errors" not in done.stderr
