"""pytest-alembic's built-in checks over every bundled revision, on every backend.

The checks are pytest-alembic's own (single head, upgrade from empty, every step down and back
up, models match the DDL), run through the bundled ``env.py`` exactly as the library runs it:
an in-memory configuration pointing at the bundled folder, the test's connection handed over in
``config.attributes["connection"]``, and granite-assets' own version table. pytest-alembic's
plugin is disabled (its collector breaks on pytest 9), so its runner is built here and its check
functions are called explicitly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import Database
from pytest_alembic import Config, MigrationContext, runner
from pytest_alembic import tests as builtin
from sqlalchemy import Connection, create_engine, inspect
from sqlalchemy.pool import NullPool

from granite_assets.migrations._history import bundled_directory, load_history
from granite_assets.migrations._manifest import manifest_problems
from granite_assets.migrations._names import VERSION_TABLE
from granite_assets.migrations._runner import alembic_config


@pytest.fixture
def connection(database: Database) -> Iterator[Connection]:
    """A connection to this test's fresh database."""
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


@pytest.fixture
def alembic_runner(connection: Connection) -> Iterator[MigrationContext]:
    """pytest-alembic's runner over the bundled environment, migrating through ``connection``.

    This is the library's caller's-connection mode: nothing is committed, so on PostgreSQL a
    whole check runs in one transaction (the per-revision transactions of a migration through a
    URL are covered by test_upgrade.py).
    """
    config = Config(alembic_config=alembic_config(bundled_directory(), connection))
    with runner(config, connection) as context:
        yield context


def test_single_head_revision(alembic_runner: MigrationContext) -> None:
    """The bundled history has exactly one head."""
    builtin.test_single_head_revision(alembic_runner)


def test_upgrade_from_empty_to_head(alembic_runner: MigrationContext, connection: Connection) -> None:
    """An empty database upgrades through every revision to head, recorded in granite-assets' own table."""
    builtin.test_upgrade(alembic_runner)

    assert alembic_runner.current == load_history(bundled_directory()).head
    tables = set(inspect(connection).get_table_names())
    assert VERSION_TABLE in tables
    assert "alembic_version" not in tables


def test_up_down_consistency(alembic_runner: MigrationContext) -> None:
    """Every revision upgrades, downgrades and upgrades again one step at a time (the stairway)."""
    builtin.test_up_down_consistency(alembic_runner)


def test_model_definitions_match_ddl(alembic_runner: MigrationContext) -> None:
    """The revisions, applied from empty, build exactly the schema granite_assets.models describes."""
    builtin.test_model_definitions_match_ddl(alembic_runner)


def test_manifest_matches_revision_files() -> None:
    """revisions.json lists exactly the bundled revision files, in history order."""
    assert manifest_problems(bundled_directory()) == []
