"""The file-list logic of scripts/check_wheel.py (``make check-wheel``), without building anything."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from check_wheel import ENVIRONMENT, check_built, check_wheel_files, environment_files, is_stray, keep_checked

pytestmark = pytest.mark.packaging

ENV = "granite_assets/alembic/"
SOURCE = ["alembic.ini", "env.py", "revisions.json", "script.py.mako", "versions/0001_baseline.py"]
GOOD_WHEEL = [
    "granite_assets/__init__.py",
    "granite_assets/py.typed",
    *(ENV + name for name in SOURCE),
    "granite_assets-0.1.0.dist-info/METADATA",
    "granite_assets-0.1.0.dist-info/RECORD",
]


def test_complete_wheel_passes() -> None:
    """A wheel holding every environment file and nothing else is accepted."""
    report = check_wheel_files(SOURCE, GOOD_WHEEL)

    assert report.ok
    assert report.missing == []
    assert report.stray == []


def test_missing_revision_file_is_named() -> None:
    """A revision file the source tree has but the wheel lacks is reported by its wheel path."""
    source = [*SOURCE, "versions/0002_add_assets.py"]

    report = check_wheel_files(source, GOOD_WHEEL)

    assert not report.ok
    assert report.missing == [ENV + "versions/0002_add_assets.py"]


@pytest.mark.parametrize("required", ["alembic.ini", "env.py", "script.py.mako", "revisions.json"])
def test_required_file_is_missing_even_when_the_tree_lacks_it(required: str) -> None:
    """The environment's fixed files are required even if the source tree lost them too."""
    source = [name for name in SOURCE if name != required]
    wheel = [name for name in GOOD_WHEEL if name != ENV + required]

    assert check_wheel_files(source, wheel).missing == [ENV + required]


def test_wheel_without_any_revision_is_reported() -> None:
    """An environment with no versions/*.py at all cannot pass."""
    source = [name for name in SOURCE if not name.startswith("versions/")]
    wheel = [name for name in GOOD_WHEEL if "/versions/" not in name]

    assert check_wheel_files(source, wheel).missing == [ENV + "versions/*.py (no revision at all)"]


@pytest.mark.parametrize(
    "stray",
    [
        ENV + "versions/__pycache__/0001_baseline.cpython-311.pyc",
        "granite_assets/__pycache__/models.cpython-311.pyc",
        "granite_assets/_runner.pyc",
        ENV + "scratch.db",
        ENV + "versions/granite_assets.sqlite3",
        "granite_assets/tests/test_models.py",
        "granite_assets/conftest.py",
        "tests/conftest.py",
        "conftest.py",
        "scripts/check_wheel.py",
        ENV + "versions/.0002_add_assets.py.swp",
        ENV + "notes.txt",
        "granite_assets/models.py~",
        "granite_assets/models.py.orig",
        "granite_assets/_runner.py.bak",
        "granite_assets/#models.py#",
        "granite_assets/.DS_Store",
        "granite_assets/models_test.py",
        ENV + "versions/__pycache__/0002_add_ab_test.cpython-311.pyc",
    ],
)
def test_stray_file_is_named(stray: str) -> None:
    """Caches, compiled files, databases, tests, foreign files and unknown ones are named as stray."""
    report = check_wheel_files(SOURCE, [*GOOD_WHEEL, stray])

    assert report.stray == [stray]
    assert report.missing == []


def test_directory_entries_are_ignored() -> None:
    """Zip directory entries are not files and are neither missing nor stray."""
    assert check_wheel_files(SOURCE, [*GOOD_WHEEL, ENV, ENV + "versions/"]).ok


def test_environment_files_skip_build_leftovers(tmp_path: Path) -> None:
    """The source tree's caches and scratch databases are not expected in the wheel."""
    for name in [*SOURCE, "versions/__pycache__/0001_baseline.cpython-311.pyc", "scratch.db"]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x", encoding="utf-8")

    assert environment_files(tmp_path) == sorted(SOURCE)


def test_is_stray_looks_at_every_path_part() -> None:
    """A file is stray when any folder above it is (a tests package, a cache)."""
    assert is_stray("granite_assets/tests/data/fixture.json")
    assert is_stray("granite_assets/alembic/__pycache__/env.cpython-311.pyc")
    assert not is_stray("granite_assets/alembic/versions/0001_baseline.py")
    assert not is_stray("granite_assets/_history.py")


def test_checked_files_are_kept_in_dist(tmp_path: Path) -> None:
    """The checked sdist and wheel land in dist/, replacing older builds and leaving other files alone."""
    built = tmp_path / "build"
    built.mkdir()
    files = [built / "granite_assets-0.2.0.tar.gz", built / "granite_assets-0.2.0-py3-none-any.whl"]
    for file in files:
        file.write_text(file.name)
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "granite_assets-0.1.0-py3-none-any.whl").write_text("old")
    (dist / "notes.txt").write_text("mine")

    kept = keep_checked(files, dist)

    assert kept == [dist / file.name for file in files]
    assert sorted(p.name for p in dist.iterdir()) == sorted([*(f.name for f in files), "notes.txt"])


@pytest.mark.parametrize("name", ["0002_add_ab_test.py", "0002_test.py", "test_0002.py"])
def test_revision_named_like_a_test_ships(name: str, tmp_path: Path) -> None:
    """Every .py in versions/ is a revision Alembic loads, whatever its slug: it is expected, never stray.

    ``make migrate-create MSG="add ab test"`` writes ``0002_add_ab_test.py``.
    """
    revision = f"versions/{name}"
    for path in [*SOURCE, revision]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x", encoding="utf-8")

    assert not is_stray(ENV + revision)
    assert revision in environment_files(tmp_path)
    assert check_wheel_files(environment_files(tmp_path), [*GOOD_WHEEL, ENV + revision]).ok
    assert check_wheel_files(environment_files(tmp_path), GOOD_WHEEL).missing == [ENV + revision]


def test_test_modules_outside_versions_are_stray() -> None:
    """Outside versions/, test modules and test folders are stray, wherever they are in the package."""
    assert is_stray("granite_assets/test_models.py")
    assert is_stray("granite_assets/models_test.py")
    assert is_stray("granite_assets/alembic/conftest.py")
    assert is_stray("granite_assets/alembic/versions/tests/test_0001.py")


@pytest.mark.parametrize("lacking", ["script.py.mako", "alembic.ini"])
def test_a_built_wheel_lacking_a_required_file_fails_the_check(
    lacking: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """make check-wheel exits 1 on a wheel without script.py.mako or alembic.ini, and names it."""
    wheel = tmp_path / "granite_assets-0.2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in environment_files(ENVIRONMENT):
            if name != lacking:
                archive.write(ENVIRONMENT / name, ENV + name)
        archive.writestr("granite_assets/__init__.py", "")
    sdist = tmp_path / "granite_assets-0.2.0.tar.gz"
    sdist.write_bytes(b"")

    assert check_built(sdist, wheel, tmp_path) == 1
    assert f"missing from {wheel.name}: {ENV}{lacking}" in capsys.readouterr().err
