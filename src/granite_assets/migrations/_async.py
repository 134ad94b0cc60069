"""The async entry point: the sync implementation driven through SQLAlchemy's greenlet bridge.

``AsyncConnection.run_sync`` works the same way; calling the bridge directly saves opening a
connection just to get a sync one. Nothing here calls ``asyncio.run``, so it is safe to await
inside a running event loop (a FastAPI lifespan, say).
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL
from sqlalchemy.util import greenlet_spawn

from granite_assets.migrations import _runner
from granite_assets.migrations._database import Database
from granite_assets.migrations._errors import MissingDependencyError
from granite_assets.migrations._history import load_history
from granite_assets.migrations._progress import ProgressCallback
from granite_assets.migrations._target import check_url, create_owned_engine, refuse_schema_translation
from granite_assets.migrations._timeouts import DEFAULT_LIMITS, DDLLimits, check_lock_timeout
from granite_assets.migrations._urls import is_async, parse_url
from granite_assets.migrations._waiting import with_sleep

if TYPE_CHECKING:  # imported for real once greenlet is known to be there
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

try:  # SQLAlchemy 2.1 renamed await_only to await_
    from sqlalchemy.util import await_ as _await
except ImportError:  # pragma: no cover - SQLAlchemy 2.0
    from sqlalchemy.util import await_only as _await


def _cooperative_sleep(seconds: float) -> None:
    """Sleep inside the greenlet bridge by yielding to the event loop, not blocking it."""
    _await(asyncio.sleep(seconds))


async def upgrade_async(
    directory: Path,
    target: AsyncEngine | AsyncConnection | str | URL,
    lock_timeout: float,
    limits: DDLLimits = DEFAULT_LIMITS,
    *,
    on_progress: ProgressCallback | None = None,
) -> str | None:
    """Upgrade through an async engine or connection, or an async (or sync) URL."""
    lock_timeout = check_lock_timeout(lock_timeout)
    url = parse_url(target) if isinstance(target, str | URL) else None
    if url is not None and not is_async(url):
        # A sync URL: run the sync implementation in a worker thread to keep the loop free.
        return await asyncio.to_thread(
            _runner.upgrade, directory, url, lock_timeout, limits, on_progress=on_progress
        )
    require_greenlet()
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

    if isinstance(target, AsyncConnection):
        return await target.run_sync(
            lambda c: with_sleep(
                _cooperative_sleep,
                _runner.upgrade,
                directory,
                c,
                lock_timeout,
                limits,
                on_progress=on_progress,
            )
        )
    if isinstance(target, AsyncEngine):
        return await _upgrade_engine(
            directory, target, target.url, lock_timeout, limits, on_progress=on_progress, owned=False
        )
    url = parse_url(target)  # not a URL: parse_url says what it expected
    check_url(url)
    engine = create_owned_engine(url, lock_timeout, create_async_engine)
    try:
        return await _upgrade_engine(
            directory, engine, url, lock_timeout, limits, on_progress=on_progress, owned=True
        )
    finally:
        await engine.dispose()


def require_greenlet() -> None:
    """Make sure greenlet, which SQLAlchemy's async engines run on, is installed.

    SQLAlchemy 2.1 no longer installs it; 2.0 imports its asyncio extension without it and fails
    later, with a ValueError. A sync URL, run in a thread, needs no greenlet.
    """
    try:
        importlib.import_module("greenlet")
    except ImportError:
        raise MissingDependencyError(
            "granite-assets' async entry point drives SQLAlchemy's async engines, which need greenlet, "
            'and it is not installed: pip install greenlet (or "sqlalchemy[asyncio]"). A synchronous '
            "URL needs no greenlet: to_sync_url() converts an async one."
        ) from None


async def _upgrade_engine(
    directory: Path,
    engine: AsyncEngine,
    url: URL,
    lock_timeout: float,
    limits: DDLLimits,
    *,
    on_progress: ProgressCallback | None,
    owned: bool,
) -> str | None:
    refuse_schema_translation(engine.sync_engine)
    db = Database(url, engine.sync_engine, owned=owned)
    history = load_history(directory)
    result: Any = await greenlet_spawn(
        with_sleep,
        _cooperative_sleep,
        _runner.upgrade_database,
        directory,
        db,
        history,
        lock_timeout,
        limits,
        on_progress=on_progress,
    )
    return result  # type: ignore[no-any-return]
