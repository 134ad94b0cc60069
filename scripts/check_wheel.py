"""Build the sdist and the wheel, and prove that the wheel ships the migrations and nothing else.

1. Builds both with the project's build backend (``uv build``, else ``python -m build``) into a
   temporary folder; the wheel is built from the sdist, so a file the sdist lacks is caught too.
2. Checks that the wheel holds every file under ``src/granite_assets/alembic/`` (``alembic.ini``,
   ``env.py``, ``script.py.mako``, ``revisions.json``, each ``versions/*.py``) and nothing stray
   (``__pycache__``, compiled files, scratch databases, editor backups, test code outside
   ``versions/``), and that the ``revisions.json`` inside it matches the revision files inside it.
3. Installs the wheel with its ``db`` extra into a fresh virtual environment and, from a folder
   outside the source tree, upgrades a new SQLite database to head with ``upgrade_to_head``.

The checked sdist and wheel are then copied into ``dist/``, ready to install or upload.

On failure it prints exactly which files are missing or stray, and exits 1.

Usage::

    make check-wheel
    python scripts/check_wheel.py --keep   # keep the temporary folder, to look inside
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "granite_assets"
ENVIRONMENT = ROOT / "src" / PACKAGE / "alembic"

#: Files every wheel's Alembic environment needs, besides at least one revision.
REQUIRED = ("alembic.ini", "env.py", "script.py.mako", "revisions.json")

#: Leftovers of builds, runs and editors, matched against every part of a path: never shipped.
LEFTOVER_PATTERNS = (
    "__pycache__",
    "*.pyc",
    "*.pyo",
    "*.db",
    "*.db-journal",
    "*.db-wal",
    "*.db-shm",
    "*.sqlite",
    "*.sqlite3",
    ".*",  # hidden files and folders: editor swap and lock files, .DS_Store
    "*~",
    "*.bak",
    "*.orig",
    "*.rej",
    "*.swp",
    "#*#",
)
#: Folders that hold tests, and the names of test modules: test code never ships.
TEST_FOLDERS = ("tests", "test")
TEST_MODULES = ("test_*.py", "*_test.py", "conftest.py")


@dataclass
class WheelReport:
    """What is wrong with a wheel's files; empty lists when nothing is."""

    missing: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the wheel holds exactly what it should."""
        return not self.missing and not self.stray


def is_revision(path: str) -> bool:
    """Whether ``path`` is a file Alembic loads as a revision: a ``.py`` right inside ``versions/``.

    ``path`` is relative to the Alembic environment or to the wheel's root.
    """
    *folder, name = PurePosixPath(path).parts
    return name.endswith(".py") and tuple(folder) in {("versions",), (PACKAGE, "alembic", "versions")}


def is_stray(path: str) -> bool:
    """Whether ``path`` (relative, ``/``-separated) is, or lies inside, something that must not ship.

    Files are judged by what they are: leftovers (caches, compiled files, scratch databases,
    hidden, editor and backup files) anywhere, and test code, except a revision, whose slug may
    well end in ``_test``.
    """
    parts = PurePosixPath(path).parts
    if any(fnmatch(part, pattern) for part in parts for pattern in LEFTOVER_PATTERNS):
        return True
    if any(part in TEST_FOLDERS for part in parts[:-1]):
        return True
    return not is_revision(path) and any(fnmatch(parts[-1], pattern) for pattern in TEST_MODULES)


def environment_files(environment: Path) -> list[str]:
    """The files of the Alembic environment in the source tree that the wheel must ship.

    Returns paths relative to ``environment``, ``/``-separated and sorted; the build leftovers
    that :func:`is_stray` names (caches, scratch databases) are not among them.
    """
    return sorted(
        path.relative_to(environment).as_posix()
        for path in environment.rglob("*")
        if path.is_file() and not is_stray(path.relative_to(environment).as_posix())
    )


def check_wheel_files(environment_files: Iterable[str], wheel_names: Iterable[str]) -> WheelReport:
    """Compare the files a wheel holds with those the Alembic environment has.

    Args:
        environment_files: The environment's files, relative to ``src/granite_assets/alembic``.
        wheel_names: The names in the wheel's zip archive.

    Returns:
        The environment files the wheel lacks (as wheel paths), and the wheel's entries that
        should not be there: anything :func:`is_stray` names, anything outside the
        package and its ``.dist-info``, and files in the wheel's environment that the source
        tree does not have.
    """
    prefix = f"{PACKAGE}/alembic/"
    names = [name for name in wheel_names if not name.endswith("/")]
    expected = {prefix + name for name in environment_files}
    expected |= {prefix + name for name in REQUIRED}
    report = WheelReport()
    report.missing = sorted(expected - set(names))
    if not any(
        name.startswith(prefix + "versions/") and name.endswith(".py") for name in [*names, *expected]
    ):
        report.missing.append(prefix + "versions/*.py (no revision at all)")
    for name in names:
        top = name.split("/", 1)[0]
        if (
            is_stray(name)
            or not (top == PACKAGE or (top.startswith(f"{PACKAGE}-") and top.endswith(".dist-info")))
            or (name.startswith(prefix) and name not in expected)
        ):
            report.stray.append(name)
    report.stray.sort()
    return report


def find_uv() -> str | None:
    """The uv this project installs into ``.tools/``, or one on ``PATH``."""
    bundled = ROOT / ".tools" / "bin" / "uv"
    return str(bundled) if bundled.exists() else shutil.which("uv")


def build(project: Path, out_dir: Path) -> tuple[Path, Path]:
    """Build the sdist, then the wheel from it, into ``out_dir``; return their paths."""
    uv = find_uv()
    if uv is not None:
        command = [uv, "build", "--quiet", "--out-dir", str(out_dir), str(project)]
    else:
        command = [sys.executable, "-m", "build", "--outdir", str(out_dir), str(project)]
    subprocess.run(command, check=True)
    (sdist,) = out_dir.glob("*.tar.gz")
    (wheel,) = out_dir.glob("*.whl")
    return sdist, wheel


def wheel_manifest_problems(wheel: Path, scratch: Path) -> list[str]:
    """How the wheel's ``revisions.json`` differs from the wheel's own revision files."""
    from granite_assets.migrations._manifest import manifest_problems

    unpacked = scratch / "unpacked"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    return manifest_problems(unpacked / PACKAGE / "alembic")


SMOKE_TEST = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import granite_assets
    from granite_assets import migrations

    installed = Path(granite_assets.__file__).resolve()
    assert Path(sys.prefix).resolve() in installed.parents, f"imported from {installed}"
    url = f"sqlite:///{Path('smoke.db').resolve()}"
    revision = migrations.upgrade_to_head(url)
    head = migrations.head_revision()
    assert revision == head == migrations.current_revision(url), (revision, head)
    print(f"upgrade_to_head brought {url} to {head}, using {installed.parent}")
    """
)


def install_and_migrate(wheel: Path, scratch: Path) -> None:
    """Install ``wheel[db]`` into a new virtual environment; migrate SQLite from outside the tree."""
    venv = scratch / "venv"
    python = venv / "bin" / "python"
    requirement = f"granite-assets[db] @ {wheel.as_uri()}"
    uv = find_uv()
    if uv is not None:
        subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        subprocess.run([uv, "pip", "install", "--quiet", "--python", str(python), requirement], check=True)
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", requirement], check=True)
    workdir = scratch / "host"
    workdir.mkdir()
    environment = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    subprocess.run([str(python), "-c", SMOKE_TEST], cwd=workdir, env=environment, check=True)
    subprocess.run(
        [str(venv / "bin" / "granite-assets"), "db", "check", "--url", "sqlite:///smoke.db"],
        cwd=workdir,
        env=environment,
        check=True,
    )


def keep_checked(files: Iterable[Path], dist: Path) -> list[Path]:
    """Copy the checked sdist and wheel into ``dist``, replacing older builds of the package there."""
    dist.mkdir(parents=True, exist_ok=True)
    for old in [*dist.glob(f"{PACKAGE}-*.whl"), *dist.glob(f"{PACKAGE}-*.tar.gz")]:
        old.unlink()
    return [Path(shutil.copy2(file, dist / file.name)) for file in files]


def main(argv: list[str] | None = None) -> int:
    """Run the checks; return 0 when the wheel is right, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and say where")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))

    scratch = Path(tempfile.mkdtemp(prefix="granite-assets-check-wheel-"))
    try:
        sdist, wheel = build(ROOT, scratch / "dist")
        print(f"Built {sdist.name} and {wheel.name}")
        return check_built(sdist, wheel, scratch)
    except subprocess.CalledProcessError as exc:
        print(f"check-wheel failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"Kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def check_built(sdist: Path, wheel: Path, scratch: Path) -> int:
    """Check a built wheel's files and manifest, install it and migrate; keep both files if it passes."""
    with zipfile.ZipFile(wheel) as archive:
        report = check_wheel_files(environment_files(ENVIRONMENT), archive.namelist())
    for name in report.missing:
        print(f"missing from {wheel.name}: {name}", file=sys.stderr)
    for name in report.stray:
        print(f"stray in {wheel.name}: {name}", file=sys.stderr)
    if not report.ok:
        return 1
    print(f"{wheel.name} holds every file of src/{PACKAGE}/alembic/ and nothing stray")
    problems = wheel_manifest_problems(wheel, scratch)
    for problem in problems:
        print(f"revisions.json in {wheel.name}: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"revisions.json in {wheel.name} matches its versions/")
    install_and_migrate(wheel, scratch)
    for kept in keep_checked([sdist, wheel], ROOT / "dist"):
        print(f"Checked and kept: {kept}")
    print("check-wheel passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
