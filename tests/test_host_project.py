"""granite-assets beside a host application that has its own Alembic history."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from conftest import Database
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from granite_assets.migrations import VERSION_TABLE, current_revision, head_revision, upgrade_to_head

HOST_ENV = """
from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()
"""

HOST_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "host0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("host_items", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("host_items")
"""


@pytest.fixture
def host_project(tmp_path: Path) -> Path:
    """A host application's own Alembic environment, with the default ``alembic_version`` table."""
    root = tmp_path / "host_migrations"
    (root / "versions").mkdir(parents=True)
    (root / "env.py").write_text(textwrap.dedent(HOST_ENV))
    (root / "script.py.mako").write_text("")
    (root / "versions" / "host0001_items.py").write_text(textwrap.dedent(HOST_REVISION))
    return root


def host_upgrade(root: Path, database: Database) -> None:
    """Run the host's own ``alembic upgrade head``, the way a host's deploy script would."""
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(root))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def state(database: Database) -> tuple[set[str], list[object], list[object]]:
    """The tables, the host's version rows and granite-assets' version rows."""
    return (
        database.table_names(),
        database.scalar_rows("SELECT version_num FROM alembic_version"),
        database.scalar_rows(f"SELECT version_num FROM {VERSION_TABLE}"),
    )


@pytest.mark.parametrize("granite_assets_first", [True, False], ids=["recommended-order", "host-first"])
def test_both_histories_stay_intact_in_either_order(
    database: Database, host_project: Path, granite_assets_first: bool
) -> None:
    """Host and granite-assets each keep their own version table; reruns change nothing."""

    def granite_assets_upgrade() -> None:
        upgrade_to_head(database.url_string)

    def host_project_upgrade() -> None:
        host_upgrade(host_project, database)

    steps = [granite_assets_upgrade, host_project_upgrade]
    for step in steps if granite_assets_first else reversed(steps):
        step()
    expected = (
        {"alembic_version", VERSION_TABLE, "host_items"},
        ["host0001"],
        [head_revision()],
    )
    assert state(database) == expected
    for step in steps:
        step()
    assert state(database) == expected


def test_host_version_table_is_never_read(database: Database, host_project: Path) -> None:
    """A host revision id in alembic_version is not mistaken for granite-assets' revision."""
    host_upgrade(host_project, database)
    assert current_revision(database.url_string) is None
    assert upgrade_to_head(database.url_string) == head_revision()
    assert database.scalar_rows("SELECT version_num FROM alembic_version") == ["host0001"]
