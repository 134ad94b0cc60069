"""A host's own autogenerate beside granite-assets' tables: include_name keeps them out of it.

Hosts are made as their authors make them (``alembic init``, ``alembic init -t async``,
``flask db init``), their env.py changed only as the host-integration page says, and their
commands run from a shell in the host's folder.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

import alembic.config
import pytest
from conftest import Database, add_revision
from host_support import (
    ASSET_TABLE,
    DOCS_EXAMPLES,
    alembic_host,
    async_url,
    documented_env,
    host_models,
    new_revision_files,
    run,
    write_models,
)
from host_support import alembic as alembic_command
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from granite_assets.migrations import (
    VERSION_TABLE,
    _runner,
    current_revision,
    head_revision,
    include_name,
    upgrade_to_head,
)
from granite_assets.migrations._names import COMPATIBILITY_TABLE
from granite_assets.models import TABLE_PREFIX

pytestmark = pytest.mark.slow

TEMPLATES = Path(alembic.config.__file__).parent / "templates"
NO_CHANGES = "No new upgrade operations detected"


def operations(revision_file: Path) -> list[str]:
    """The ``op.`` calls of a generated revision's upgrade(), one line each."""
    source = revision_file.read_text(encoding="utf-8")
    upgrade = source.split("def upgrade()", 1)[1].split("def downgrade()", 1)[0]
    return [line.strip() for line in upgrade.splitlines() if line.strip().startswith("op.")]


@pytest.mark.parametrize("template", ["generic", "async"])
def test_autogenerate_writes_only_the_host_tables(database: Database, tmp_path: Path, template: str) -> None:
    """After granite-assets' upgrade, the host's autogenerate creates its own table only; check passes."""
    upgrade_to_head(database.url_string)
    url = database.url_string if template == "generic" else async_url(database)
    host = alembic_host(tmp_path / "host", url, template=template)
    write_models(host, host_models())

    alembic_command(host, "revision", "--autogenerate", "-m", "orders")

    (revision,) = new_revision_files(host)
    assert operations(revision) == ["op.create_table('host_orders',"]
    assert "granite_assets" not in revision.read_text(encoding="utf-8")
    alembic_command(host, "upgrade", "head")
    assert NO_CHANGES in alembic_command(host, "check")
    assert current_revision(database.url_string) == head_revision()
    assert {"host_orders", "alembic_version", VERSION_TABLE} <= database.table_names()


def test_without_the_filter_autogenerate_drops_granite_assets_tables(
    database: Database, tmp_path: Path
) -> None:
    """The control: the same host without include_name proposes to drop granite-assets' version table."""
    upgrade_to_head(database.url_string)
    host = alembic_host(tmp_path / "host", database.url_string, filtered=False)
    write_models(host, host_models())

    alembic_command(host, "revision", "--autogenerate", "-m", "orders")

    (revision,) = new_revision_files(host)
    assert f"op.drop_table('{VERSION_TABLE}')" in operations(revision)


def test_the_hosts_own_indexes_stay_visible_to_its_autogenerate(database: Database, tmp_path: Path) -> None:
    """The filter hides granite-assets' names only: a host index its models lack is proposed for removal."""
    upgrade_to_head(database.url_string)
    host = alembic_host(tmp_path / "host", database.url_string)
    write_models(host, host_models())
    alembic_command(host, "revision", "--autogenerate", "-m", "orders")
    alembic_command(host, "upgrade", "head")
    database.execute("CREATE INDEX ix_host_orders_stray ON host_orders (id)")

    alembic_command(host, "revision", "--autogenerate", "-m", "drop stray index")

    (newest,) = [path for path in new_revision_files(host) if path.name.endswith("_drop_stray_index.py")]
    assert any(
        line.startswith("op.drop_index(") and "'ix_host_orders_stray'" in line for line in operations(newest)
    )


@pytest.fixture
def asset_environment(environment_copy: Path) -> Path:
    """granite-assets' environment with a real table of its own, the one host models refer to."""
    add_revision(
        environment_copy,
        "0002",
        "0001",
        f'op.create_table("{ASSET_TABLE}", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("name", sa.String(100)))',
        f'op.drop_table("{ASSET_TABLE}")',
        message="asset table",
    )
    return environment_copy


def test_foreign_key_to_a_granite_assets_table(
    database: Database, tmp_path: Path, asset_environment: Path
) -> None:
    """A host model referring to a granite-assets table: autogenerate writes the key, upgrade creates it."""
    assert _runner.upgrade(asset_environment, database.url_string, 30) == "0002"
    host = alembic_host(tmp_path / "host", database.url_string)
    write_models(host, host_models(foreign_key=True))

    alembic_command(host, "revision", "--autogenerate", "-m", "orders")

    (revision,) = new_revision_files(host)
    source = revision.read_text(encoding="utf-8")
    assert operations(revision) == ["op.create_table('host_orders',"]
    assert f"sa.ForeignKeyConstraint(['asset_id'], ['{ASSET_TABLE}.id'], )" in source
    assert [line for line in source.splitlines() if "granite_assets" in line] == [
        f"    sa.ForeignKeyConstraint(['asset_id'], ['{ASSET_TABLE}.id'], ),"
    ]
    alembic_command(host, "upgrade", "head")
    assert NO_CHANGES in alembic_command(host, "check")
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            (foreign_key,) = inspect(connection).get_foreign_keys("host_orders")
    finally:
        engine.dispose()
    assert foreign_key["referred_table"] == ASSET_TABLE
    assert foreign_key["constrained_columns"] == ["asset_id"]


FLASK_APP = """
import os

from flask import Flask
from flask_migrate import Migrate

from granite_assets.migrations import include_name
from myapp.models import db

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
db.init_app(app)
migrate = Migrate(app, db, include_name=include_name)
"""


def test_flask_migrate_host(database: Database, tmp_path: Path, asset_environment: Path) -> None:
    """A Flask-Migrate host passing include_name: `flask db migrate` leaves granite-assets' tables alone."""
    assert _runner.upgrade(asset_environment, database.url_string, 30) == "0002"
    host = tmp_path / "host"
    write_models(host, host_models(foreign_key=True, flask=True))
    (host / "myapp" / "app.py").write_text(FLASK_APP, encoding="utf-8")
    environment = {"DATABASE_URL": database.url_string, "FLASK_APP": "myapp.app"}

    def flask(*args: str) -> str:
        return run(host, sys.executable, "-m", "flask", "db", *args, env=environment)

    flask("init")
    env = host / "migrations" / "env.py"
    text = env.read_text(encoding="utf-8")
    assert text.count("fileConfig(config.config_file_name)") == 1
    env.write_text(
        text.replace(
            "fileConfig(config.config_file_name)",
            "fileConfig(config.config_file_name, disable_existing_loggers=False)",
        ),
        encoding="utf-8",
    )
    flask("migrate", "-m", "orders")

    (revision,) = new_revision_files(host)
    assert operations(revision) == ["op.create_table('host_orders',"]
    assert [
        line.strip() for line in revision.read_text(encoding="utf-8").splitlines() if "granite_assets" in line
    ] == [f"sa.ForeignKeyConstraint(['asset_id'], ['{ASSET_TABLE}.id'], ),"]
    flask("upgrade")
    flask("check")
    assert "host_orders" in database.table_names()


@pytest.mark.sqlite
def test_granite_assets_loggers_survive_the_documented_env(tmp_path: Path) -> None:
    """With the documented fileConfig() flag, a host upgrade leaves granite-assets' loggers enabled."""
    script = (
        "import logging, sys\n"
        "from alembic import command\n"
        "from alembic.config import Config\n"
        "import granite_assets.migrations\n"
        "command.upgrade(Config(sys.argv[1]), 'head')\n"
        "print('disabled:', logging.getLogger('granite_assets.migrations').disabled)\n"
    )
    results: list[str] = []
    for filtered in (True, False):
        host = alembic_host(
            tmp_path / f"host-{filtered}", f"sqlite:///{tmp_path / 'app.db'}", filtered=filtered
        )
        write_models(host, host_models())
        output = run(host, sys.executable, "-c", script, host / "alembic.ini")
        results.extend(line for line in output.splitlines() if line.startswith("disabled:"))
    assert results == ["disabled: False", "disabled: True"]  # documented env.py, then alembic init's own


def test_documented_env_is_alembic_init_s_with_the_documented_changes() -> None:
    """docs/examples/host_env.py is alembic init's env.py with the page's changes, which it highlights."""
    template = (TEMPLATES / "generic" / "env.py").read_text(encoding="utf-8")
    example = (DOCS_EXAMPLES / "host_env.py").read_text(encoding="utf-8")
    assert example == documented_env(template)
    matcher = difflib.SequenceMatcher(a=template.splitlines(), b=example.splitlines(), autojunk=False)
    changed = {
        line + 1
        for tag, _, _, first, last in matcher.get_opcodes()
        if tag != "equal"
        for line in range(first, last)
        if example.splitlines()[line].strip()
    }
    page = (DOCS_EXAMPLES.parent / "host-integration.rst").read_text(encoding="utf-8")
    highlighted = re.search(
        r"literalinclude:: examples/host_env\.py\n(?:   :.*\n)*?   :emphasize-lines: (.*)\n", page
    )
    assert highlighted, "the page no longer highlights the changed lines"
    shown: set[int] = set()
    for part in highlighted.group(1).split(","):
        first, _, last = part.strip().partition("-")
        shown.update(range(int(first), int(last or first) + 1))
    assert shown == changed


@pytest.mark.parametrize(
    ("name", "type_", "parents", "included"),
    [
        (VERSION_TABLE, "table", {"schema_name": None}, False),
        (COMPATIBILITY_TABLE, "table", {"schema_name": None}, False),
        (ASSET_TABLE, "table", {"schema_name": "public"}, False),
        ("id", "column", {"table_name": ASSET_TABLE, "schema_name": None}, False),
        ("ix_granite_assets_asset_name", "index", {"table_name": ASSET_TABLE, "schema_name": None}, False),
        ("ix_host_orders_asset_id", "index", {"table_name": "host_orders", "schema_name": None}, True),
        ("alembic_version", "table", {"schema_name": None}, True),
        ("host_orders", "table", {"schema_name": None}, True),
        ("granite_assets", "table", {"schema_name": None}, True),
        ("asset_id", "column", {"table_name": "host_orders", "schema_name": None}, True),
        ("fk_host_orders_asset_id", "foreign_key_constraint", {"table_name": "host_orders"}, True),
        (None, "unique_constraint", {"table_name": "host_orders"}, True),
        (None, "unique_constraint", {"table_name": ASSET_TABLE}, False),
        ("public", "schema", {}, True),
    ],
)
def test_include_name(name: str | None, type_: str, parents: dict[str, str | None], included: bool) -> None:
    """granite-assets' tables and everything in them are excluded; the host's, and keys to ours, are not."""
    assert include_name(name, type_, parents) is included


def test_the_filter_knows_every_granite_assets_table() -> None:
    """The filter hides the bookkeeping tables and every table named with the models' prefix."""
    assert re.fullmatch(r"[a-z_]+_", TABLE_PREFIX)
    for table in (VERSION_TABLE, COMPATIBILITY_TABLE, f"{TABLE_PREFIX}asset"):
        assert include_name(table, "table", {}) is False
