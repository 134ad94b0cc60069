"""The maintainer's whole path, in a temporary copy of the project, from a new model to a host's foreign key.

A model is added to the copy's ``models.py`` and ``make migrate-create`` is run there (with this
test's own virtual environment, which is never modified: the copy's ``src`` comes first on
``PYTHONPATH`` and the scripts put it first on ``sys.path``). The generated revision is then
followed through ruff, mypy, ``make migrate-check``, pytest-alembic's checks, an upgrade and a
downgrade on every backend, the built wheel, and a host application's own Alembic upgrade that
adds a foreign key to the new table.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from check_wheel import build, check_wheel_files, environment_files, wheel_manifest_problems
from conftest import Backend, Database, add_revision, require_server
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from granite_assets.migrations import _runner
from granite_assets.migrations._history import history_from_scripts, read_manifest
from granite_assets.migrations._manifest import manifest_problems
from granite_assets.migrations._names import VERSION_TABLE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENT = Path("src", "granite_assets", "alembic")
LOCK_TIMEOUT = 30.0
MESSAGE = "add asset metadata table"

ASSET = "granite_assets_e2e_asset"
METADATA = "granite_assets_e2e_asset_metadata"
HOST_TABLE = "host_asset_orders"

# What a maintainer adds to models.py: a metadata table with a foreign key to another
# granite-assets table, a unique constraint and an index.
NEW_MODELS = f'''

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column


class E2EAsset(Base):
    """An asset (added by tests/test_maintainer_e2e.py)."""

    __tablename__ = "{ASSET}"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class E2EAssetMetadata(Base):
    """A key and value about an asset (added by tests/test_maintainer_e2e.py)."""

    __tablename__ = "{METADATA}"
    __table_args__ = (UniqueConstraint("asset_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("{ASSET}.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(100), index=True)
    value: Mapped[str | None] = mapped_column(String(1000))
'''

HOST_ENV = """
from alembic import context
from sqlalchemy import create_engine, pool

engine = create_engine(context.config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
try:
    with engine.connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
finally:
    engine.dispose()
"""

HOST_REVISION = f'''"""host: orders of granite-assets assets"""

import sqlalchemy as sa
from alembic import op

revision = "h0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "{HOST_TABLE}",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "asset_id",
            sa.Integer,
            sa.ForeignKey("{ASSET}.id", name="fk_{HOST_TABLE}_asset_id"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_table("{HOST_TABLE}")
'''


def copy_project(target: Path) -> Path:
    """Copy the files a clone of the project has (plus new, unignored ones) into ``target``."""
    if not (ROOT / ".git").exists():  # an unpacked sdist: it holds only project files already
        junk = shutil.ignore_patterns(".venv*", ".tools", "__pycache__", "*.db", ".*_cache", "dist")
        shutil.copytree(ROOT, target, ignore=junk)
        return target
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listing.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is listed too
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def environment_for(project: Path) -> dict[str, str]:
    """This process's environment, with ``project``'s code first and no outer make's settings."""
    environment = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(project / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return environment


def run(project: Path, *args: str | Path, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
    """Run a command in ``project``; fail showing its output unless it exits with ``expect``."""
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=project,
        env=environment_for(project),
        capture_output=True,
        text=True,
        check=False,
    )
    if expect is not None and result.returncode != expect:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {result.returncode}, not {expect}:\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}",
            pytrace=False,
        )
    return result


def make(project: Path, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
    """Run the copy's Makefile with this test's virtual environment, which it must not reinstall."""
    venv = Path(sys.prefix)
    return run(
        project,
        "make",
        "-C",
        project,
        f"VENV={venv}",
        "-o",
        f"{venv}/.installed",
        f"UV={ROOT / '.tools' / 'bin' / 'uv'}",
        *args,
        expect=expect,
    )


def revision_files(project: Path) -> list[str]:
    """The revision files of the copy, sorted by name."""
    return sorted(p.name for p in (project / ENVIRONMENT / "versions").glob("*.py"))


@dataclass(frozen=True)
class Generated:
    """A copy of the project after the maintainer added a model and ran ``make migrate-create``."""

    project: Path
    revision_file: Path
    revision: str
    previous: str
    output: str

    @property
    def environment(self) -> Path:
        """The copy's Alembic environment."""
        return self.project / ENVIRONMENT


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """A copy of the project with the new models and the revision ``make migrate-create`` wrote."""
    project = copy_project(tmp_path_factory.mktemp("maintainer") / "project")
    previous = history_from_scripts(project / ENVIRONMENT).head
    assert previous is not None
    before = revision_files(project)
    with (project / "src" / "granite_assets" / "models.py").open("a", encoding="utf-8") as models:
        models.write(NEW_MODELS)

    result = make(project, "migrate-create", f"MSG={MESSAGE}")

    new = sorted(set(revision_files(project)) - set(before))
    assert len(new) == 1, result.stdout + result.stderr
    path = project / ENVIRONMENT / "versions" / new[0]
    return Generated(project, path, new[0].split("_", 1)[0], previous, result.stdout + result.stderr)


def test_migrate_create_writes_a_sortable_revision_and_regenerates_the_manifest(generated: Generated) -> None:
    """The new file is versions/<next number>_<slug>.py, sorts last, and revisions.json lists it."""
    name = generated.revision_file.name
    assert re.fullmatch(r"\d{4}_add_asset_metadata_table\.py", name)
    assert int(generated.revision) == int(generated.previous) + 1
    assert revision_files(generated.project)[-1] == name
    assert f"Wrote revision {generated.revision}" in generated.output

    assert manifest_problems(generated.environment) == []
    manifest = read_manifest(generated.environment)
    assert manifest is not None
    assert manifest.head == generated.revision
    assert manifest.revisions[-1].down_revision == generated.previous
    assert manifest.revisions[-1].message == MESSAGE

    source = generated.revision_file.read_text(encoding="utf-8")
    for expected in (
        f'"{ASSET}"',
        f'"{METADATA}"',
        f"fk_{METADATA}_asset_id",
        f"uq_{METADATA}_asset_id_key",
        f"ix_{METADATA}_key",
        f'down_revision: str | None = "{generated.previous}"',
    ):
        assert expected in source


@pytest.mark.lint
def test_generated_revision_passes_ruff_and_mypy_unedited(generated: Generated) -> None:
    """The revision as written passes ruff (lint and format) and mypy strict with the project's config."""
    path = generated.revision_file
    run(generated.project, sys.executable, "-m", "ruff", "check", "--no-cache", path)
    run(generated.project, sys.executable, "-m", "ruff", "format", "--check", "--no-cache", path)
    result = run(generated.project, sys.executable, "-m", "mypy", "--no-incremental", path)
    assert "Success" in result.stdout


def test_migrate_check_passes_after_generation(generated: Generated) -> None:
    """make migrate-check finds the models, the revisions and revisions.json in agreement."""
    result = make(generated.project, "migrate-check")

    assert f"one head ({generated.revision})" in result.stdout


def test_pytest_alembic_checks_pass_with_the_new_revision(generated: Generated, backend: Backend) -> None:
    """The copy's pytest-alembic checks (stairway, models match DDL) pass with the new revision."""
    if backend.name != "sqlite":
        require_server(backend.name)  # skips or fails here, as CI requires, rather than in the copy

    result = run(
        generated.project,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-k",
        f"[{backend.id}]",
        "tests/test_migration_history.py",
    )

    assert " passed" in result.stdout
    assert "skipped" not in result.stdout


def test_new_revision_upgrades_and_downgrades(generated: Generated, database: Database) -> None:
    """The new revision creates its tables, constraints and index, removes them again, and reapplies."""
    url = database.url_string
    assert _runner.upgrade(generated.environment, url, LOCK_TIMEOUT) == generated.revision
    _assert_new_schema(database)

    assert (
        _runner.downgrade(generated.environment, url, generated.previous, LOCK_TIMEOUT) == generated.previous
    )
    tables = database.table_names()
    assert ASSET not in tables
    assert METADATA not in tables
    assert database.scalar_rows(f"SELECT version_num FROM {VERSION_TABLE}") == [generated.previous]

    assert _runner.upgrade(generated.environment, url, LOCK_TIMEOUT) == generated.revision
    _assert_new_schema(database)


def _assert_new_schema(database: Database) -> None:
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            inspector = inspect(connection)
            assert {ASSET, METADATA} <= set(inspector.get_table_names())
            (foreign_key,) = inspector.get_foreign_keys(METADATA)
            assert foreign_key["referred_table"] == ASSET
            assert foreign_key["constrained_columns"] == ["asset_id"]
            assert foreign_key["name"] == f"fk_{METADATA}_asset_id"
            unique = {u["name"]: u["column_names"] for u in inspector.get_unique_constraints(METADATA)}
            assert unique[f"uq_{METADATA}_asset_id_key"] == ["asset_id", "key"]
            indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes(METADATA)}
            assert indexes[f"ix_{METADATA}_key"] == ["key"]
    finally:
        engine.dispose()


def test_host_adds_a_foreign_key_to_the_new_table(
    generated: Generated, database: Database, tmp_path: Path
) -> None:
    """After granite-assets' upgrade, a host's own Alembic upgrade creates a table referencing the new one."""
    url = database.url_string
    host = _host_environment(tmp_path / "host_migrations")
    host_config = Config()
    host_config.set_main_option("script_location", str(host))
    host_config.set_main_option("path_separator", "os")
    host_config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))

    assert _runner.upgrade(generated.environment, url, LOCK_TIMEOUT) == generated.revision
    command.upgrade(host_config, "head")
    # The library's no-op path afterwards leaves the host's bookkeeping alone.
    assert _runner.upgrade(generated.environment, url, LOCK_TIMEOUT) == generated.revision

    assert database.scalar_rows("SELECT version_num FROM alembic_version") == ["h0001"]
    assert database.scalar_rows(f"SELECT version_num FROM {VERSION_TABLE}") == [generated.revision]
    with _connect(database) as connection:
        (foreign_key,) = inspect(connection).get_foreign_keys(HOST_TABLE)
        assert foreign_key["referred_table"] == ASSET
        connection.execute(text(f"INSERT INTO {ASSET} (id, name) VALUES (1, 'logo')"))
        connection.execute(text(f"INSERT INTO {HOST_TABLE} (id, asset_id) VALUES (1, 1)"))
        connection.commit()
        with pytest.raises(IntegrityError):
            connection.execute(text(f"INSERT INTO {HOST_TABLE} (id, asset_id) VALUES (2, 42)"))
        connection.rollback()

    command.downgrade(host_config, "base")
    assert HOST_TABLE not in database.table_names()
    assert _runner.downgrade(generated.environment, url, "base", LOCK_TIMEOUT) is None
    assert not {ASSET, METADATA} & database.table_names()


def _host_environment(directory: Path) -> Path:
    (directory / "versions").mkdir(parents=True)
    (directory / "env.py").write_text(HOST_ENV, encoding="utf-8")
    (directory / "script.py.mako").write_text("", encoding="utf-8")
    (directory / "versions" / "h0001_host_orders.py").write_text(HOST_REVISION, encoding="utf-8")
    return directory


@contextmanager
def _connect(database: Database) -> Iterator[Connection]:
    """A connection with foreign keys enforced (SQLite needs the pragma)."""
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                connection.exec_driver_sql("PRAGMA foreign_keys = ON")
            yield connection
    finally:
        engine.dispose()


@pytest.mark.packaging
def test_new_revision_ships_in_the_built_wheel(generated: Generated, tmp_path: Path) -> None:
    """A wheel built from the copy holds the new revision and a revisions.json that lists it."""
    _, wheel = build(generated.project, tmp_path / "dist")

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert f"granite_assets/alembic/versions/{generated.revision_file.name}" in names
    report = check_wheel_files(environment_files(generated.environment), names)
    assert report.ok, report
    assert wheel_manifest_problems(wheel, tmp_path) == []


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh copy of the project, its models unchanged."""
    return copy_project(tmp_path / "project")


def test_migrate_create_without_a_model_change_writes_nothing(project: Path) -> None:
    """With the models matching the revisions, migrate-create writes no file and says so."""
    before = revision_files(project)
    manifest = (project / ENVIRONMENT / "revisions.json").read_bytes()

    result = make(project, "migrate-create", "MSG=nothing changed")

    assert "No schema change" in result.stdout
    assert revision_files(project) == before
    assert (project / ENVIRONMENT / "revisions.json").read_bytes() == manifest


def test_migrate_create_refuses_without_a_message(project: Path) -> None:
    """migrate-create without MSG, or with a blank one, refuses with exit status 2 and writes nothing."""
    before = revision_files(project)

    result = make(project, "migrate-create", expect=None)
    assert result.returncode != 0
    assert "Refusing to create a revision without a message" in result.stderr

    blank = run(project, sys.executable, "scripts/migrate_create.py", "--message", "   ", expect=2)
    assert 'MSG="' in blank.stderr
    assert revision_files(project) == before


def test_migrate_create_refuses_when_the_history_has_several_heads(project: Path) -> None:
    """Two revisions on the same parent make migrate-create refuse (exit 2) and name the heads."""
    environment = project / ENVIRONMENT
    head = history_from_scripts(environment).head
    add_revision(environment, "9001", head, message="left", manifest=False)
    add_revision(environment, "9002", head, message="right", manifest=False)
    before = revision_files(project)

    result = run(project, sys.executable, "scripts/migrate_create.py", "--message", "x", expect=2)

    assert "2 heads (9001, 9002)" in result.stderr
    assert revision_files(project) == before


def test_migrate_check_fails_listing_model_and_manifest_differences(project: Path) -> None:
    """migrate-check exits 1 and lists a model without a revision and a stale revisions.json."""
    with (project / "src" / "granite_assets" / "models.py").open("a", encoding="utf-8") as models:
        models.write(NEW_MODELS)
    (project / ENVIRONMENT / "revisions.json").write_text('{"revisions": []}\n', encoding="utf-8")

    result = run(project, sys.executable, "scripts/migrate_check.py", expect=1)

    assert f"add table {ASSET}" in result.stderr
    assert f"add table {METADATA}" in result.stderr
    assert f"add index ix_{METADATA}_key on {METADATA} (key)" in result.stderr
    assert "is not in the manifest" in result.stderr


def test_migrate_check_fails_on_a_model_change_alone(project: Path) -> None:
    """make migrate-check exits non-zero when only the models differ from the revisions."""
    with (project / "src" / "granite_assets" / "models.py").open("a", encoding="utf-8") as models:
        models.write(NEW_MODELS)

    result = make(project, "migrate-check", expect=None)

    assert result.returncode != 0, result.stdout
    assert f"add table {ASSET}" in result.stderr
    assert "revisions.json is stale" not in result.stderr


def test_migrate_check_fails_on_a_manifest_in_the_wrong_order(project: Path) -> None:
    """make migrate-check exits non-zero when revisions.json lists the right revisions in the wrong order."""
    environment = project / ENVIRONMENT
    head = history_from_scripts(environment).head
    add_revision(environment, "9001", head, message="first")
    add_revision(environment, "9002", "9001", message="second")
    manifest = environment / "revisions.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["revisions"][-2:] = reversed(data["revisions"][-2:])
    manifest.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    result = make(project, "migrate-check", expect=None)

    assert result.returncode != 0, result.stdout
    assert "the manifest lists the revisions in the wrong order" in result.stderr


@pytest.mark.packaging
@pytest.mark.parametrize(
    "excluded",
    ["src/granite_assets/alembic/versions/0001_*.py", "src/granite_assets/alembic/env.py"],
    ids=["first-revision", "env.py"],
)
def test_check_wheel_fails_when_the_wheel_lacks_a_file(project: Path, excluded: str) -> None:
    """make check-wheel exits non-zero, naming the file, when the build leaves out a file of alembic/.

    The build ships what .gitignore does not exclude, so an ignore rule is how a file goes missing.
    """
    with (project / ".gitignore").open("a", encoding="utf-8") as ignore:
        ignore.write(f"{excluded}\n")
    # check_wheel.py builds with the uv of the project's .tools/, which a clone's `make install` makes.
    (project / ".tools").symlink_to(ROOT / ".tools", target_is_directory=True)

    result = make(project, "check-wheel", expect=None)

    assert result.returncode != 0, result.stdout
    missing = excluded.removeprefix("src/").replace("*", "baseline")
    assert re.search(rf"missing from granite_assets-\S+\.whl: {re.escape(missing)}$", result.stderr, re.M)


# Runs an `alembic` command and prints, as its last line, the tables of every SQLite database whose
# engine was disposed meanwhile, looked at just before disposal (env.py deletes its scratch file after).
SCRATCH_TABLES = """
import json, sqlite3, sys
from contextlib import closing
from alembic.config import main
from sqlalchemy import Engine, event

seen = []

@event.listens_for(Engine, "engine_disposed")
def record_tables(engine):
    if engine.url.get_backend_name() == "sqlite" and engine.url.database:
        with closing(sqlite3.connect(engine.url.database)) as db:
            rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            seen.append(sorted(name for (name,) in rows))

main(argv=sys.argv[1:])
print(json.dumps(seen))
"""


@pytest.mark.parametrize(
    "step", [["check"], ["current"], ["upgrade", "head"], ["downgrade", "base"]], ids="-".join
)
def test_maintainer_scratch_database_has_only_our_version_table(step: list[str]) -> None:
    """The scratch database the maintainer ini brings to head has our version table, never alembic_version."""
    ini = ROOT / ENVIRONMENT / "alembic.ini"

    result = run(ROOT, sys.executable, "-c", SCRATCH_TABLES, "--config", ini, *step)

    (tables,) = json.loads(result.stdout.splitlines()[-1])
    assert VERSION_TABLE in tables
    assert "alembic_version" not in tables


def test_direct_alembic_revision_command_uses_a_scratch_database(project: Path) -> None:
    """`alembic --config <the ini> revision --autogenerate` works from the root, on a scratch database."""
    with (project / "src" / "granite_assets" / "models.py").open("a", encoding="utf-8") as models:
        models.write(NEW_MODELS)
    before = set(revision_files(project))

    ini = ENVIRONMENT / "alembic.ini"
    run(
        project, sys.executable, "-m", "alembic", "--config", ini, "revision", "--autogenerate", "-m", MESSAGE
    )

    (new,) = set(revision_files(project)) - before
    assert f'"{METADATA}"' in (project / ENVIRONMENT / "versions" / new).read_text(encoding="utf-8")
    assert manifest_problems(project / ENVIRONMENT) == []
    assert not [p for p in project.rglob("*") if p.suffix in {".db", ".sqlite", ".sqlite3"}]


def test_alembic_ini_against_a_host_database_leaves_its_alembic_version(database: Database) -> None:
    """The maintainer ini, pointed at a host's database with -x url=, never touches the host's tables."""
    database.execute(
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
        "INSERT INTO alembic_version (version_num) VALUES ('host0001')",
        "CREATE TABLE host_things (id INTEGER PRIMARY KEY)",
    )
    ini = ROOT / ENVIRONMENT / "alembic.ini"
    url = f"url={database.url_string}"
    for step in (["upgrade", "head"], ["check"], ["downgrade", "base"], ["upgrade", "head"]):
        run(ROOT, sys.executable, "-m", "alembic", "--config", ini, "-x", url, *step)

    assert database.scalar_rows("SELECT version_num FROM alembic_version") == ["host0001"]
    assert {"alembic_version", "host_things", VERSION_TABLE} <= database.table_names()
    head = history_from_scripts(ROOT / ENVIRONMENT).head
    assert database.scalar_rows(f"SELECT version_num FROM {VERSION_TABLE}") == [head]


UNPREFIXED_MODELS = '''

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column


class Asset(Base):
    """A model whose table could be a host's (added by tests/test_maintainer_e2e.py)."""

    __tablename__ = "assets"

    id: Mapped[int] = mapped_column(primary_key=True)


class Tag(Base):
    """A prefixed table with an index named by hand (added by tests/test_maintainer_e2e.py)."""

    __tablename__ = "granite_assets_e2e_tag"
    __table_args__ = (Index("ix_tag_custom", "label"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(40))
'''


def test_a_model_whose_names_could_be_a_hosts_is_refused(project: Path) -> None:
    """A table without the prefix, or an index named without it, gets no revision, and migrate-check fails."""
    with (project / "src" / "granite_assets" / "models.py").open("a", encoding="utf-8") as models:
        models.write(UNPREFIXED_MODELS)
    before = revision_files(project)

    created = make(project, "migrate-create", "MSG=add assets", expect=None)
    assert created.returncode != 0
    assert "table assets: its name must start with granite_assets_" in created.stderr
    assert "Index ix_tag_custom on granite_assets_e2e_tag" in created.stderr
    assert revision_files(project) == before

    ini = ENVIRONMENT / "alembic.ini"
    direct = run(
        project,
        sys.executable,
        "-m",
        "alembic",
        "--config",
        ini,
        "revision",
        "--autogenerate",
        "-m",
        "x",
        expect=None,
    )
    assert direct.returncode != 0
    assert "table assets" in direct.stderr
    assert revision_files(project) == before

    checked = run(project, sys.executable, "scripts/migrate_check.py", expect=1)
    assert "table assets: its name must start with granite_assets_" in checked.stderr
