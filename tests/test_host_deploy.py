"""Replicas of a host that deploy at once: the docs' deploy script runs the host's revisions once.

Sixteen processes run ``docs/examples/migrate.py`` (granite-assets' upgrade, then the host's own
``alembic upgrade head`` under :func:`~granite_assets.migrations.migration_lock`) against one fresh
database at the same moment, for several rounds. The host's revision takes a moment and inserts a
row, so that two runs of it at once cannot go unseen.

The same replicas without the lock are the control: there the host's revision runs in several
processes at once, and some of them fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import Database, fresh_database
from deploy_worker import WITHOUT_LOCK
from host_support import alembic_host, host_models, write_models
from support import Workers

from granite_assets.migrations import VERSION_TABLE, head_revision

REPLICAS = 16
ROUNDS = 3
LOCK_TIMEOUT = 120.0
WORKER = Path(__file__).with_name("deploy_worker.py")

# One worker runs the module (tests/conftest.py), so its sixteen replicas start once.
pytestmark = [pytest.mark.slow, pytest.mark.heavy]

HOST_REVISION = '''"""host: a table, and one row written by the one process that ran this body"""

import os
import time

import sqlalchemy as sa
from alembic import op

revision = "host0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "host_deploy",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pid", sa.Integer, nullable=False),
    )
    time.sleep(0.3)  # a revision that takes a moment, as real ones do
    op.execute(f"INSERT INTO host_deploy (pid) VALUES ({os.getpid()})")


def downgrade() -> None:
    op.drop_table("host_deploy")
'''


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    """Sixteen idle replicas of one host (``alembic init``, env.py as the docs say, one revision).

    They serve every test of the module: the deploy script takes the database URL as an argument,
    and the host's files are the same whatever the database.
    """
    folder = tmp_path_factory.mktemp("deploy")
    root = alembic_host(folder / "host", "sqlite:///unused.db")
    write_models(root, host_models())
    (root / "migrations" / "versions" / "host0001_deploy.py").write_text(HOST_REVISION, encoding="utf-8")
    with Workers(
        REPLICAS, root, LOCK_TIMEOUT, folder / "workers", env={"PYTHONPATH": str(root)}, worker=WORKER
    ) as workers:
        yield workers


def deploy_rounds(database: Database, replicas: Workers, tmp_path: Path, *, locked: bool) -> list[str]:
    """Run the deploy script in every replica at once, round after round; describe what went wrong."""
    problems: list[str] = []
    with ExitStack() as stack:
        rounds = [database] + [
            stack.enter_context(fresh_database(database.backend, tmp_path)) for _ in range(ROUNDS - 1)
        ]
        for number, db in enumerate(rounds, start=1):
            replicas.start(db.url_string if locked else f"{db.url_string} {WITHOUT_LOCK}")
            failures = [r for r in replicas.results() if r != {"revision": "host"}]
            if failures:
                problems.append(f"round {number}: {len(failures)} of {REPLICAS} failed: {failures[0]}")
            rows = db.scalar_rows("SELECT pid FROM host_deploy") if "host_deploy" in db.table_names() else []
            if len(rows) != 1:
                problems.append(f"round {number}: the host revision's body ran {len(rows)} times")
            versions = db.scalar_rows("SELECT version_num FROM alembic_version")
            if versions != ["host0001"]:
                problems.append(f"round {number}: alembic_version holds {versions}")
            if db.scalar_rows(f"SELECT version_num FROM {VERSION_TABLE}") != [head_revision()]:
                problems.append(f"round {number}: granite-assets is not at head")
    return problems


def test_replicas_running_the_deploy_script_at_once_apply_the_host_revision_once(
    database: Database, replicas: Workers, tmp_path: Path
) -> None:
    """Sixteen replicas deploying a fresh database at once all succeed; the host's body runs once."""
    assert deploy_rounds(database, replicas, tmp_path, locked=True) == []


def test_without_the_lock_replicas_run_the_host_revision_at_once(
    database: Database, replicas: Workers, tmp_path: Path
) -> None:
    """The control: the same replicas without migration_lock fail, so the test above can tell."""
    problems = deploy_rounds(database, replicas, tmp_path, locked=False)
    print("\n".join(problems))
    assert problems
