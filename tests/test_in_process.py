"""Several migrations in one process: threads, asyncio.gather, and a run nested in the host's own."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from conftest import ASYNC_DRIVERS, BACKENDS, Backend, Database, add_revision, backend_params, fresh_database
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool, StaticPool
from support import HOST_REVISION, version_rows

from granite_assets import migrations
from granite_assets.migrations import MigrationError, _async, _runner

TENANTS = 4
REVISIONS = ("0002", "0003", "0004", "0005")
ASYNC_BACKENDS = [b for b in BACKENDS if b.driver in {"pysqlite", "psycopg2", "pymysql"}]


@pytest.fixture
def tenants(backend: Backend, tmp_path: Path) -> Iterator[list[Database]]:
    """Fresh databases of one backend, one per tenant of a multi-tenant host."""
    with ExitStack() as stack:
        yield [stack.enter_context(fresh_database(backend, tmp_path)) for _ in range(TENANTS)]


@pytest.fixture
def slow_revisions(environment_copy: Path) -> Path:
    """Revisions 0002-0005, each creating a table and pausing, so that runs overlap in time."""
    parent = "0001"
    for revision in REVISIONS:
        add_revision(
            environment_copy,
            revision,
            parent,
            "import time\ntime.sleep(0.05)\n"
            f'op.create_table("granite_assets_t{revision}", sa.Column("id", sa.Integer, primary_key=True))',
            f'op.drop_table("granite_assets_t{revision}")',
            message=f"table {revision}",
        )
        parent = revision
    return environment_copy


def expected_tables() -> set[str]:
    return {"granite_assets_alembic_version"} | {f"granite_assets_t{r}" for r in REVISIONS}


def test_threads_migrating_different_databases_each_get_their_own(
    tenants: list[Database], slow_revisions: Path
) -> None:
    """Four threads upgrading four fresh databases at once: every call succeeds on its own database."""
    barrier = threading.Barrier(TENANTS)

    def upgrade(database: Database) -> str | None:
        barrier.wait()
        return _runner.upgrade(slow_revisions, database.url_string, 60)

    with ThreadPoolExecutor(TENANTS) as pool:
        results = list(pool.map(upgrade, tenants))
    assert results == ["0005"] * TENANTS
    for database in tenants:
        assert database.table_names() == expected_tables()
        assert version_rows(database) == ["0005"]


@pytest.mark.parametrize("backend", backend_params(ASYNC_BACKENDS), indirect=True)
def test_gathered_async_upgrades_each_migrate_their_own_database(
    tenants: list[Database], slow_revisions: Path
) -> None:
    """asyncio.gather over several async engines: each database gets its tables, none gets another's."""

    async def main() -> list[str | None]:
        driver = ASYNC_DRIVERS[tenants[0].backend.name]
        engines = [create_async_engine(db.with_driver(driver), poolclass=NullPool) for db in tenants]
        try:
            return list(await asyncio.gather(*(_async.upgrade_async(slow_revisions, e, 60) for e in engines)))
        finally:
            for engine in engines:
                await engine.dispose()

    assert asyncio.run(main()) == ["0005"] * TENANTS
    for database in tenants:
        assert database.table_names() == expected_tables()
        assert version_rows(database) == ["0005"]


HOST_ENV = """
from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from granite_assets.migrations import _runner

config = context.config
engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=NullPool)
# The host upgrades granite-assets first, from its own env.py, before configuring its own run.
config.attributes["granite_assets_revision"] = _runner.upgrade(
    config.attributes["granite_assets_environment"], engine, 60
)
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
engine.dispose()
"""


def test_upgrade_nested_in_the_hosts_env_py_leaves_the_hosts_run_intact(
    database: Database, slow_revisions: Path, tmp_path: Path
) -> None:
    """A host env.py that runs granite-assets' pending revisions first still runs its own afterwards."""
    root = tmp_path / "host"
    (root / "versions").mkdir(parents=True)
    (root / "env.py").write_text(textwrap.dedent(HOST_ENV))
    (root / "versions" / "host1_orders.py").write_text(textwrap.dedent(HOST_REVISION))
    config = Config()
    config.set_main_option("script_location", str(root))
    config.set_main_option("sqlalchemy.url", database.url_string.replace("%", "%%"))
    config.attributes["granite_assets_environment"] = slow_revisions
    command.upgrade(config, "head")
    assert config.attributes["granite_assets_revision"] == "0005"
    assert database.table_names() == expected_tables() | {"alembic_version", "host_orders"}
    assert database.scalar_rows("SELECT version_num FROM alembic_version") == ["host1"]
    assert version_rows(database) == ["0005"]


def test_nested_run_puts_back_the_hosts_alembic_proxies(database: Database, slow_revisions: Path) -> None:
    """Inside a host's Alembic context, a granite-assets run leaves alembic.context and op as they were."""
    import alembic.context
    import alembic.op

    engine = create_engine(database.url, poolclass=NullPool)
    host_config = Config()
    host_config.set_main_option("script_location", str(slow_revisions))  # any script folder will do
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory

    try:
        with EnvironmentContext(host_config, ScriptDirectory.from_config(host_config)) as host:
            before = (vars(alembic.context).get("_proxy"), vars(alembic.op).get("_proxy"))
            assert before[0] is host
            assert _runner.upgrade(slow_revisions, engine, 60) == "0005"
            assert (vars(alembic.context).get("_proxy"), vars(alembic.op).get("_proxy")) == before
            assert alembic.context.config is host_config
    finally:
        engine.dispose()


def test_upgrade_from_inside_a_granite_assets_revision_fails_at_once(
    database: Database, environment_copy: Path, tmp_path: Path
) -> None:
    """A revision that calls granite-assets again gets a clear error, not a wait for itself."""
    other = f"sqlite:///{tmp_path / 'other.db'}"
    add_revision(
        environment_copy,
        "0002",
        "0001",
        "from pathlib import Path\nfrom granite_assets.migrations import _runner\n"
        f"_runner.upgrade(Path({str(environment_copy)!r}), {other!r}, 300)",
        message="calls back",
    )
    with pytest.raises(MigrationError, match="from inside one of its own migrations"):
        _runner.upgrade(environment_copy, database.url_string, 300)


@pytest.mark.parametrize("through", ["op.get_bind().engine", "op.get_bind()"])
def test_a_revision_upgrading_its_own_database_again_is_refused_at_once_and_said_once(
    database: Database, environment_copy: Path, through: str
) -> None:
    """Through the bind's engine or the bind itself, a nested upgrade of the same database is refused
    before any lock (which its own outer call holds), in one sentence, on every backend."""
    add_revision(
        environment_copy,
        "0002",
        "0001",
        "from pathlib import Path\nfrom granite_assets.migrations import _runner\n"
        f"_runner.upgrade(Path({str(environment_copy)!r}), {through}, 30)",
        message="nested",
    )
    engine = create_engine(database.url, poolclass=NullPool)
    started = time.monotonic()
    try:
        with pytest.raises(MigrationError) as caught:
            _runner.upgrade(environment_copy, engine, 30)
    finally:
        engine.dispose()
    assert time.monotonic() - started < 10  # not the 30 s lock_timeout
    message = str(caught.value)
    assert "from inside one of its own migrations" in message
    assert message.count("failed on") == 1
    assert "not inside your transaction" not in message


@pytest.mark.parametrize(
    "backend", backend_params([b for b in BACKENDS if b.name == "sqlite"]), indirect=True
)
@pytest.mark.usefixtures("backend")
def test_in_memory_database_through_a_static_pool_engine() -> None:
    """The in-memory SQLite database the URL refusal points to: a StaticPool Engine, migrated and kept."""
    engine = create_engine("sqlite://", poolclass=StaticPool)
    try:
        assert migrations.upgrade_to_head(engine) == migrations.head_revision()
        assert migrations.current_revision(engine) == migrations.head_revision()
        with engine.connect() as connection:  # a connection in AUTOCOMMIT, sharing the one database
            connection.execution_options(isolation_level="AUTOCOMMIT")
            assert migrations.upgrade_to_head(connection) == migrations.head_revision()
    finally:
        engine.dispose()


# A thread migrates (its revision waits for the pipe); the main thread forks meanwhile, and the
# child, which has no such thread, upgrades another database at once. Exit 0: it did.
FORK_WHILE_A_THREAD_MIGRATES = """
import os, sys, threading
from pathlib import Path
from granite_assets.migrations import MigrationError, _runner, upgrade_to_head
environment, url, other = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
started = threading.Event()
import builtins
builtins.granite_assets_test_started = started
thread = threading.Thread(target=_runner.upgrade, args=(environment, url, 60))
thread.start()
started.wait(60)
child = os.fork()
if child == 0:
    try:
        upgrade_to_head(other, lock_timeout=5)  # the release's own revisions: none of them waits
    except MigrationError as exc:
        print(exc, file=sys.stderr, flush=True)
        os._exit(1)
    os._exit(0)
_, status = os.waitpid(child, 0)
builtins.granite_assets_test_release.set()
thread.join()
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(), indirect=True)
def test_a_child_forked_while_a_thread_migrates_can_migrate(
    database: Database, environment_copy: Path, tmp_path: Path
) -> None:
    """Pre-fork servers fork after start-up: the child's own upgrade never waits for a thread it lacks."""
    add_revision(
        environment_copy,
        "0002",
        "0001",
        "import builtins, threading\n"
        "builtins.granite_assets_test_release = threading.Event()\n"
        "builtins.granite_assets_test_started.set()\n"
        "builtins.granite_assets_test_release.wait(60)",
        message="waits",
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            FORK_WHILE_A_THREAD_MIGRATES,
            str(environment_copy),
            database.url_string,
            f"sqlite:///{tmp_path / 'child.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert version_rows(database) == ["0002"]
