"""The async entry point, awaited inside a running event loop."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from conftest import ASYNC_DRIVERS, BACKENDS, Backend, Database, add_revision, backend_params, fresh_database
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from support import holding_lock

from granite_assets.migrations import (
    VERSION_TABLE,
    AsyncDriverURLError,
    UnsupportedConnectionError,
    _async,
    _runner,
    head_revision,
    to_sync_url,
    upgrade_to_head,
    upgrade_to_head_async,
)

# One driver per server suffices here; each async driver the tests group installs is covered.
ASYNC_BACKENDS = [b for b in BACKENDS if b.driver in {"pysqlite", "psycopg2"}]


@pytest.fixture(params=backend_params(ASYNC_BACKENDS))
def async_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh database on SQLite (aiosqlite) and PostgreSQL (asyncpg)."""
    backend: Backend = request.param
    with fresh_database(backend, tmp_path) as db:
        yield db


T = TypeVar("T")


async def _with_ticker(coro: Awaitable[T]) -> tuple[T, int]:
    """Await ``coro`` while a ticker task runs, and count how often the loop let it tick."""
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        result = await coro
    finally:
        stop.set()
        await task
    return result, ticks


def test_async_engine_inside_a_running_loop(async_database: Database) -> None:
    """An AsyncEngine is upgraded from inside a running loop, which keeps serving other tasks."""
    url = async_database.with_driver(ASYNC_DRIVERS[async_database.backend.name])

    async def main() -> tuple[str | None, int]:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            return await _with_ticker(upgrade_to_head_async(engine))
        finally:
            await engine.dispose()

    revision, ticks = asyncio.run(main())
    assert revision == head_revision()
    assert ticks > 0
    assert async_database.scalar_rows(f"SELECT version_num FROM {VERSION_TABLE}") == [head_revision()]


def test_async_url_and_rerun(async_database: Database) -> None:
    """An async URL gets an engine of its own; a second await changes nothing."""
    url = async_database.with_driver(ASYNC_DRIVERS[async_database.backend.name])

    async def main() -> list[object]:
        return [await upgrade_to_head_async(url), await upgrade_to_head_async(url)]

    assert asyncio.run(main()) == [head_revision(), head_revision()]
    assert async_database.scalar_rows(f"SELECT version_num FROM {VERSION_TABLE}") == [head_revision()]


def test_async_connection_without_a_transaction_is_committed(async_database: Database) -> None:
    """An AsyncConnection with no transaction open is migrated and committed, and handed back with none."""
    url = async_database.with_driver(ASYNC_DRIVERS[async_database.backend.name])

    async def main() -> tuple[object, bool]:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                return await upgrade_to_head_async(connection), connection.in_transaction()
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == (head_revision(), False)
    assert async_database.scalar_rows(f"SELECT version_num FROM {VERSION_TABLE}") == [head_revision()]


def test_async_connection_in_a_transaction_commits_nothing(async_database: Database) -> None:
    """Inside the caller's transaction, as on a sync connection, a rollback discards the upgrade."""
    url = async_database.with_driver(ASYNC_DRIVERS[async_database.backend.name])

    async def main() -> object:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                await connection.begin()
                revision = await upgrade_to_head_async(connection)
                await connection.rollback()
                return revision
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == head_revision()
    assert VERSION_TABLE not in async_database.table_names()


def test_sync_url_is_accepted_by_the_async_entry_point(async_database: Database) -> None:
    """A sync URL given to the async entry point runs in a worker thread, off the loop."""
    assert asyncio.run(upgrade_to_head_async(async_database.url_string)) == head_revision()


def test_async_engine_with_pending_work_reaches_head(
    async_database: Database, environment_copy: Path
) -> None:
    """Pending work on an async engine runs to head through the same lock and checks as sync."""
    add_revision(environment_copy, "0002", "0001", message="second")
    url = async_database.with_driver(ASYNC_DRIVERS[async_database.backend.name])

    async def main() -> object:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            return await _async.upgrade_async(environment_copy, engine, 10)
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == "0002"


@pytest.mark.parametrize(
    ("async_url", "sync_url"),
    [
        ("postgresql+asyncpg://app:s3cret@db/app", "postgresql+psycopg://app:s3cret@db/app"),
        ("postgresql+psycopg_async://app:s3cret@db/app", "postgresql+psycopg://app:s3cret@db/app"),
        ("sqlite+aiosqlite:///app.db", "sqlite+pysqlite:///app.db"),
        ("mysql+aiomysql://app:s3cret@db/app", "mysql+pymysql://app:s3cret@db/app"),
        ("mysql+asyncmy://app:s3cret@db/app", "mysql+pymysql://app:s3cret@db/app"),
        ("postgresql+psycopg2://app:s3cret@db/app", "postgresql+psycopg2://app:s3cret@db/app"),
        ("postgresql+asyncpg://app@db/app?ssl=require", "postgresql+psycopg://app@db/app?sslmode=require"),
        ("postgresql+asyncpg://app@db/app?ssl=true", "postgresql+psycopg://app@db/app?sslmode=require"),
        (
            "postgresql+asyncpg://app@db/app?prepared_statement_cache_size=0&command_timeout=60",
            "postgresql+psycopg://app@db/app",
        ),
        (
            "postgresql+asyncpg://app@db/app?timeout=5&options=-csearch_path%3Dga",
            "postgresql+psycopg://app@db/app?connect_timeout=5&options=-csearch_path%3Dga",
        ),
        (
            "postgresql+asyncpg://app@db/app?ssl=require&sslmode=verify-full&timeout=5&connect_timeout=9",
            "postgresql+psycopg://app@db/app?connect_timeout=9&sslmode=verify-full",
        ),
    ],
)
def test_to_sync_url(async_url: str, sync_url: str) -> None:
    """to_sync_url swaps an async driver for the sync driver of the same database, keeping the rest."""
    assert to_sync_url(async_url) == sync_url


#: How long another session holds the lock, and the longest pause of the loop that still counts as running.
HOLD_SECONDS = 1.5
LIVENESS_GAP = 0.25
#: Every server, each through its async driver (aiosqlite, asyncpg, aiomysql).
LOCK_WAIT_BACKENDS = [b for b in BACKENDS if b.driver in {"pysqlite", "psycopg2", "pymysql"}]


@pytest.mark.parametrize("backend", backend_params(LOCK_WAIT_BACKENDS), indirect=True)
def test_loop_keeps_running_while_the_lock_is_held_elsewhere(
    database: Database, environment_copy: Path
) -> None:
    """While another session holds the migration lock, an awaiting caller's loop keeps serving its tasks.

    The gap between ticks is a liveness check (a blocked loop stops them for the whole wait), not a
    measure of how fast granite-assets is.
    """
    assert _runner.upgrade(environment_copy, database.url_string, 30) == "0001"
    add_revision(environment_copy, "0002", "0001", message="second")
    url = database.with_driver(ASYNC_DRIVERS[database.backend.name])
    held = threading.Event()
    releasing: list[float] = []

    def hold() -> None:
        with holding_lock(database):
            held.set()
            time.sleep(HOLD_SECONDS)
            releasing.append(time.monotonic())

    async def main() -> tuple[str | None, list[float], bool]:
        engine = create_async_engine(url, poolclass=NullPool)
        ticks: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        try:
            await asyncio.sleep(0)  # the ticker's first tick marks the start of the wait
            revision = await _async.upgrade_async(environment_copy, engine, 30)
            waited = bool(releasing)  # the lock was held until just after this was set
        finally:
            stop.set()
            await task
            await engine.dispose()
        return revision, ticks, waited

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        revision, ticks, waited = asyncio.run(main())
    finally:
        holder.join()

    assert revision == "0002"
    assert waited
    # From the first tick to the release of the lock, the loop never stood still for long.
    during = [*(tick for tick in ticks if tick <= releasing[0]), releasing[0]]
    longest = max(later - earlier for earlier, later in itertools.pairwise(during))
    assert longest < LIVENESS_GAP, f"the loop stood still for {longest:.2f} s while the lock was held"


# Runs with psycopg 3 hidden as if it were not installed (a None in sys.modules fails its import).
WITHOUT_PSYCOPG_3 = """
import sys
sys.modules["psycopg"] = None
from granite_assets.migrations import AsyncDriverURLError, to_sync_url, upgrade_to_head
print(to_sync_url(sys.argv[1]))
try:
    upgrade_to_head(sys.argv[1])
except AsyncDriverURLError as exc:
    print(exc.sync_url)
"""


@pytest.mark.parametrize("query", ["ssl=disable", "prepared_statement_cache_size=0"])
def test_to_sync_url_of_a_usual_asyncpg_url_connects(query: str, tmp_path: Path) -> None:
    """asyncpg's own URL options (ssl=, the statement cache) become libpq's, or go: the sync URL connects."""
    with fresh_database(Backend("postgresql", "psycopg2"), tmp_path) as database:
        async_url = f"{database.with_driver('asyncpg').render_as_string(hide_password=False)}?{query}"
        assert upgrade_to_head(to_sync_url(async_url)) == head_revision()


def test_to_sync_url_picks_psycopg2_without_psycopg_3() -> None:
    """Without psycopg 3 installed, an asyncpg URL maps to psycopg2, in to_sync_url and in the refusal."""
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PSYCOPG_3, "postgresql+asyncpg://app:s3cret@db/app"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines() == [
        "postgresql+psycopg2://app:s3cret@db/app",
        "postgresql+psycopg2://app:***@db/app",
    ]


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg_async"])
def test_async_url_to_the_sync_call_names_the_sync_url(driver: str) -> None:
    """The sync call refuses an async URL, naming the sync URL (password hidden) and the async entry point."""
    with pytest.raises(AsyncDriverURLError) as caught:
        upgrade_to_head(f"postgresql+{driver}://app:s3cret@db.example/app")
    message = str(caught.value)
    assert "postgresql+psycopg://app:***@db.example/app" in message
    assert caught.value.sync_url == "postgresql+psycopg://app:***@db.example/app"
    assert "upgrade_to_head_async" in message
    assert "s3cret" not in message


def test_aiosqlite_url_to_the_sync_call_is_refused(tmp_path: Path) -> None:
    """An aiosqlite URL gets the same clear refusal, naming sqlite+pysqlite."""
    with pytest.raises(AsyncDriverURLError, match=r"sqlite\+pysqlite"):
        upgrade_to_head(f"sqlite+aiosqlite:///{tmp_path}/app.db")
    assert not (tmp_path / "app.db").exists()


# Runs with greenlet hidden as if it were not installed (SQLAlchemy 2.1 no longer requires it).
WITHOUT_GREENLET = """
import asyncio, json, sys
sys.modules["greenlet"] = None
from granite_assets.migrations import MigrationError, upgrade_to_head_async
async def main():
    report = {}
    try:
        await upgrade_to_head_async(sys.argv[1])
    except Exception as exc:
        report["async url"] = [type(exc).__name__, isinstance(exc, MigrationError), str(exc)]
    report["sync url"] = await upgrade_to_head_async(sys.argv[2])  # runs in a thread: no greenlet needed
    print(json.dumps(report))
asyncio.run(main())
"""


def test_async_entry_point_without_greenlet_says_how_to_install_it(async_database: Database) -> None:
    """Without greenlet an async URL gets MissingDependencyError saying so; a sync URL still works."""
    async_url = async_database.with_driver(ASYNC_DRIVERS[async_database.backend.name])
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_GREENLET,
            async_url.render_as_string(hide_password=False),
            async_database.url_string,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(done.stdout)
    kind, is_migration_error, message = report["async url"]
    assert (kind, is_migration_error) == ("MissingDependencyError", True)
    assert "pip install greenlet" in message
    assert report["sync url"] == head_revision()


@pytest.mark.parametrize(
    "backend", backend_params([b for b in BACKENDS if b.driver == "psycopg2"]), indirect=True
)
def test_async_engine_with_schema_translate_map_is_refused(database: Database) -> None:
    """An AsyncEngine that moves tables without a schema is refused as a sync one is, before any write."""
    database.execute("CREATE SCHEMA tenant")

    async def main() -> None:
        engine = create_async_engine(database.with_driver("asyncpg"), poolclass=NullPool)
        try:
            with pytest.raises(UnsupportedConnectionError, match="schema_translate_map"):
                await upgrade_to_head_async(engine.execution_options(schema_translate_map={None: "tenant"}))
        finally:
            await engine.dispose()

    asyncio.run(main())
    assert VERSION_TABLE not in database.table_names()


def test_aiosqlite_callers_written_transaction_is_not_committed_by_the_call(
    tmp_path: Path, environment_copy: Path
) -> None:
    """An aiosqlite AsyncConnection whose transaction has written: the migration joins it and commits
    nothing, so the caller's rollback discards the caller's row with the migration."""
    add_revision(environment_copy, "0002", "0001", message="second")
    with fresh_database(Backend("sqlite", "pysqlite"), tmp_path) as database:
        database.execute("CREATE TABLE host_orders (id INTEGER)")

        async def main() -> object:
            engine = create_async_engine(database.with_driver("aiosqlite"), poolclass=NullPool)
            try:
                async with engine.connect() as connection:
                    await connection.execute(text("INSERT INTO host_orders VALUES (1)"))
                    revision = await _async.upgrade_async(environment_copy, connection, 30)
                    await connection.rollback()
                    return revision
            finally:
                await engine.dispose()

        assert asyncio.run(main()) == "0002"
        assert database.scalar_rows("SELECT count(*) FROM host_orders") == [0]
        assert VERSION_TABLE not in database.table_names()
