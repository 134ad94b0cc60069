"""The package installed without its ``db`` extra, as a host that forgot it would have it."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from granite_assets.migrations._errors import INSTALL_HINT

REPOSITORY = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys
import granite_assets, granite_assets.migrations as migrations
report = {"heavy": sorted(m for m in sys.modules if m.split(".")[0] in {"sqlalchemy", "alembic"})}
report["head"] = migrations.head_revision()
for name in ("upgrade_to_head", "current_revision", "check_up_to_date"):
    try:
        getattr(migrations, name)("sqlite:///never-created.db")
    except ImportError as exc:
        report[name] = [type(exc).__name__, isinstance(exc, migrations.MigrationError), str(exc)]
print(json.dumps(report))
"""


@pytest.mark.slow
@pytest.mark.packaging
def test_missing_db_extra_gives_an_install_hint(tmp_path: Path, built_wheel: Path) -> None:
    """Without alembic and SQLAlchemy the package imports, and each database call says how to install them."""
    venv = tmp_path / "venv"
    uv = [sys.executable, "-m", "uv"]
    subprocess.run([*uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([*uv, "pip", "install", "--quiet", "--python", str(python), str(built_wheel)], check=True)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    out = subprocess.run(
        [str(python), "-c", PROBE], check=True, capture_output=True, text=True, cwd=workdir
    ).stdout
    report = json.loads(out)
    assert report["heavy"] == []
    assert report["head"] == "0001"
    for name in ("upgrade_to_head", "current_revision", "check_up_to_date"):
        kind, is_migration_error, message = report[name]
        assert kind == "MissingDependencyError"
        assert is_migration_error
        assert message.endswith(f"Install the db extra: {INSTALL_HINT}")
        assert "granite-assets[db]" not in message  # the index's granite-assets is another project
    assert not (workdir / "never-created.db").exists()

    # The hint, followed, makes the same calls work.
    hinted = shlex.split(INSTALL_HINT.removeprefix("pip install "))
    subprocess.run([*uv, "pip", "install", "--quiet", "--python", str(python), *hinted], check=True)
    out = subprocess.run(
        [str(python), "-c", PROBE], check=True, capture_output=True, text=True, cwd=workdir
    ).stdout
    assert [name for name in json.loads(out) if name not in {"heavy", "head"}] == []


def test_install_hint_names_the_db_extra_of_pyproject() -> None:
    """The hint installs exactly the db extra's packages, with its lower bounds."""
    pyproject = tomllib.loads((REPOSITORY / "pyproject.toml").read_text(encoding="utf-8"))
    extra = pyproject["project"]["optional-dependencies"]["db"]
    assert "pip install " + " ".join(f'"{requirement}"' for requirement in extra) == INSTALL_HINT
