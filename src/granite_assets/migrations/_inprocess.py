"""One Alembic run at a time in this process, and the host's own Alembic run left as it was.

Alembic keeps its ``context`` and ``op`` proxies in module globals: two runs at once in one
process (threads of a multi-tenant host, ``asyncio.gather``) overwrite each other's, so a call
fails or one database receives another's tables. And a run nested in the host's own (a host
``env.py`` that upgrades granite-assets first) removes the host's proxies when it ends.

So the Alembic part of every migration holds a process-wide lock, taken after the database's
migration lock (so no thread waits for a database lock while holding it), and puts back the
proxies it found when it ends. Reading the version table, the no-op path, needs neither.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from granite_assets.migrations._errors import MigrationError, MigrationLockTimeoutError
from granite_assets.migrations._messages import lock_timeout_name, seconds
from granite_assets.migrations._waiting import wait_for, waits_cooperatively


class _Guard:
    """The process's Alembic lock, and the thread that holds it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holder: int | None = None

    def after_fork_in_child(self) -> None:
        """Free the lock in a forked child when a thread the child lacks held it.

        Pre-fork servers (gunicorn's preload_app, Celery's prefork pool) fork after start-up
        work: a thread that was migrating in the parent does not exist in the child, which would
        otherwise wait ``lock_timeout`` for it. A thread that forked while migrating itself goes
        on in the child, and releases the lock as usual.
        """
        if self.holder is not None and self.holder != threading.get_ident():
            self.lock = threading.Lock()
            self.holder = None


_guard = _Guard()
os.register_at_fork(after_in_child=_guard.after_fork_in_child)
# Set while this thread (or task) runs granite-assets' Alembic: a call from inside that run, such
# as a revision upgrading granite-assets again, would wait for itself until lock_timeout.
_running: ContextVar[bool] = ContextVar("granite_assets_running", default=False)


def _take(budget: float) -> bool:
    if waits_cooperatively() or budget <= 0:
        # Inside an async caller's event loop: never block it; wait_for yields between tries.
        taken = _guard.lock.acquire(blocking=False)
    else:
        taken = _guard.lock.acquire(timeout=budget)  # a plain thread may block, a slice at a time
    if taken:
        _guard.holder = threading.get_ident()
    return taken


def refuse_nested(where: str) -> None:
    """Refuse a migration asked for from inside one of ours, before it waits for a lock its caller holds."""
    if _running.get():
        raise MigrationError(
            f"granite-assets was asked to migrate {where} from inside one of its own migrations "
            "(a revision, or a callback it runs); that would wait for itself. Call it before or after."
        )


@contextmanager
def alembic_run(timeout: float, where: str) -> Iterator[None]:
    """Hold the process's Alembic lock, and restore the Alembic proxies found on entry, on exit."""
    refuse_nested(where)
    if not wait_for(
        _take,
        timeout=timeout,
        waiting_for=f"another granite-assets migration in this process to finish before migrating {where}",
        hint="Alembic runs one migration at a time per process",
        pauses=waits_cooperatively(),
    ):
        raise MigrationLockTimeoutError(
            f"Another granite-assets migration in this process (another thread or task) ran for more "
            f"than {seconds(timeout)}, so {where} was not migrated. Wait for it to finish, or raise "
            f"{lock_timeout_name()}."
        )
    token = _running.set(True)
    try:
        with restoring_alembic_proxies():
            yield
    finally:
        _running.reset(token)
        _guard.holder = None
        _guard.lock.release()


@contextmanager
def restoring_alembic_proxies() -> Iterator[None]:
    """Put back the ``alembic.context`` and ``alembic.op`` proxies that were installed on entry."""
    import alembic.context
    import alembic.op

    found: list[Any] = [vars(module).get("_proxy") for module in (alembic.context, alembic.op)]
    try:
        yield
    finally:
        for proxy in found:
            if proxy is not None:
                proxy._install_proxy()  # noqa: SLF001 - Alembic's only way to reinstate a proxy
