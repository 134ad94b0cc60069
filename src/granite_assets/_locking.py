"""The migration lock, held by the database itself so that it dies with the holder's session.

- PostgreSQL: a session advisory lock, polled with ``pg_try_advisory_lock`` on the connection
  granite-assets opens to migrate (a transaction-level one, ``pg_try_advisory_xact_lock``, on a
  caller's connection). Being session-level, it outlives the per-revision commits.
- MySQL and MariaDB: ``GET_LOCK`` with its result checked, then ``RELEASE_LOCK``.
- SQLite: the file's write lock, taken by ``BEGIN IMMEDIATE`` on the migrating connection
  (:func:`sqlite_write_lock`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from granite_assets._errors import MigrationLockTimeoutError

if TYPE_CHECKING:
    from granite_assets._target import Database

logger = logging.getLogger("granite_assets.migrations")

#: The PostgreSQL advisory lock key: "gran" in ASCII, below 2**31 so ``pg_locks.objid`` shows it.
POSTGRESQL_LOCK_KEY = 0x6772616E
_MYSQL_LOCK_PREFIX = "granite_assets_migrations."
_MYSQL_LOCK_NAME_MAX = 64
_POLL_FIRST, _POLL_MAX = 0.05, 1.0

# How to wait between polls: time.sleep, or a sleep that yields to the event loop when the
# upgrade runs inside an async caller (see granite_assets._async).
_sleep: ContextVar[Callable[[float], None]] = ContextVar("granite_assets_sleep", default=time.sleep)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def with_sleep(
    sleep: Callable[[float], None], fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs
) -> _R:
    """Call ``fn`` with ``sleep`` as the way to wait between lock polls."""
    token = _sleep.set(sleep)
    try:
        return fn(*args, **kwargs)
    finally:
        _sleep.reset(token)


@dataclass(frozen=True)
class DatabaseLock:
    """How to take and release the migration lock on one kind of database."""

    backend: str
    database: str | None
    transactional: bool = False

    @property
    def mysql_name(self) -> str:
        """``GET_LOCK`` names are server-wide, so the database name is part of it (64 chars max)."""
        name = _MYSQL_LOCK_PREFIX + (self.database or "")
        if len(name) > _MYSQL_LOCK_NAME_MAX:
            name = _MYSQL_LOCK_PREFIX + hashlib.sha256(name.encode()).hexdigest()[:32]
        return name

    def describe(self) -> str:
        """Say which lock this is and how to find the session that holds it."""
        if self.backend == "postgresql":
            return (
                f"PostgreSQL advisory lock {POSTGRESQL_LOCK_KEY}; find its holder with "
                "SELECT pid, application_name, client_addr FROM pg_stat_activity WHERE "
                "datname = current_database() AND pid IN (SELECT pid FROM pg_locks WHERE "
                f"locktype = 'advisory' AND objid = {POSTGRESQL_LOCK_KEY} AND granted)"
            )
        return (
            f"MySQL named lock {self.mysql_name!r}; find its holder with "
            f"SELECT IS_USED_LOCK('{self.mysql_name}') and SHOW PROCESSLIST"
        )

    def try_acquire(self, connection: Connection, wait: float) -> bool:
        """Try once to take the lock, waiting at most ``wait`` seconds where the server can."""
        if self.backend == "postgresql":
            # The key is a constant: plain driver SQL skips SQLAlchemy's statement compilation.
            fn = "pg_try_advisory_xact_lock" if self.transactional else "pg_try_advisory_lock"
            return bool(connection.exec_driver_sql(f"SELECT {fn}({POSTGRESQL_LOCK_KEY})").scalar())
        # GET_LOCK waits on the server; 1 means held, 0 timed out, NULL an error.
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :wait)"),
            {"name": self.mysql_name, "wait": max(0, math.ceil(wait))},
        )
        return got.scalar() == 1

    def release(self, connection: Connection) -> None:
        """Release the lock; a transaction-level lock goes with the caller's transaction."""
        if self.backend == "postgresql":
            if not self.transactional:
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({POSTGRESQL_LOCK_KEY})")
        else:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": self.mysql_name})


def lock_for(connection: Connection, *, transactional: bool) -> DatabaseLock | None:
    """The lock to use on ``connection``'s database; ``None`` for SQLite, which needs none here.

    Other dialects have no lock: a warning says concurrent upgrades are then unsafe.
    """
    backend = connection.dialect.name
    if backend == "sqlite":
        return None
    if backend in {"postgresql", "mysql", "mariadb"}:
        if backend == "postgresql":  # advisory locks belong to the connection's database already
            return DatabaseLock("postgresql", connection.engine.url.database, transactional)
        # GET_LOCK names are server-wide: name the database the session is in, which the URL may
        # not (connect_args, a creator), so that every migrator of one database shares one lock.
        database = connection.exec_driver_sql("SELECT DATABASE()").scalar()
        return DatabaseLock("mysql", None if database is None else str(database), transactional)
    logger.warning(
        "granite-assets has no migration lock for %s: do not run upgrades from several "
        "processes at once on this database.",
        backend,
    )
    return None


def acquire(lock: DatabaseLock, connection: Connection, timeout: float, where: str) -> None:
    """Take ``lock`` on ``connection`` within ``timeout`` seconds.

    PostgreSQL's lock is polled, backing off up to a second between tries; MySQL's ``GET_LOCK``
    waits on the server.
    """
    if lock.try_acquire(connection, 0):
        return
    deadline = time.monotonic() + timeout
    pause = _POLL_FIRST
    while (remaining := deadline - time.monotonic()) > 0:
        logger.info("Waiting for the granite-assets migration lock on %s", where)
        if lock.backend == "postgresql":
            _sleep.get()(min(pause, remaining))
            pause = min(pause * 2, _POLL_MAX)
        if lock.try_acquire(connection, deadline - time.monotonic()):
            return
    raise lock_timeout_error(lock, timeout, where)


def lock_timeout_error(lock: DatabaseLock, timeout: float, where: str) -> MigrationLockTimeoutError:
    """The error for a lock still held by someone else after ``timeout`` seconds."""
    return MigrationLockTimeoutError(
        f"Another process has held the granite-assets migration lock on {where} for more than "
        f"{timeout:g} seconds ({lock.describe()}). Wait for it to finish, or raise lock_timeout; "
        "if that process is gone, its lock went with its session."
    )


@contextmanager
def holding(lock: DatabaseLock | None, connection: Connection, timeout: float, where: str) -> Iterator[None]:
    """Hold ``lock`` (if any) on ``connection`` for the duration of the block."""
    if lock is None:
        yield
        return
    acquire(lock, connection, timeout, where)
    try:
        yield
    finally:
        lock.release(connection)


@contextmanager
def sqlite_write_lock(
    connection: Connection, db: Database, lock_timeout: float, *, callers: bool = False
) -> Iterator[None]:
    """Hold SQLite's write lock: ``BEGIN IMMEDIATE`` serialises concurrent migrators on the file.

    The driver is put in autocommit mode so that our ``BEGIN IMMEDIATE`` is the transaction's
    only BEGIN (pysqlite would otherwise run DDL outside any transaction), and is restored after.
    On a caller's connection that already has a transaction open, that transaction is used as is.
    """
    raw: Any = connection.connection.dbapi_connection
    if callers and getattr(raw, "in_transaction", False):
        yield
        return
    if not callers and connection.in_transaction():
        connection.rollback()
    saved_level = raw.isolation_level
    # Our own engines already wait lock_timeout for the write lock; a caller's gets it for now.
    busy_ms = None if db.owned else int(connection.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0)
    raw.isolation_level = None  # no driver transaction is open here, so this commits nothing
    try:
        if busy_ms is not None:
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(lock_timeout * 1000)}")
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except OperationalError as exc:
            if "locked" not in str(exc.orig):
                raise
            raise MigrationLockTimeoutError(
                f"Another process has held the write lock of the SQLite database {db.where} "
                f"for more than {lock_timeout:g} seconds (find it with: fuser -v {db.url.database}). "
                "Wait for it to finish, or raise lock_timeout; if that process is gone, its lock "
                "went with it."
            ) from None
        yield
    finally:
        if not callers and connection.in_transaction():
            connection.rollback()
        if busy_ms is not None:
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {busy_ms}")
            if not callers:
                connection.rollback()
        raw.isolation_level = saved_level
