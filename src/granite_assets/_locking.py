"""The migration lock, held by the database itself so that it dies with the holder's session.

- PostgreSQL: a session advisory lock, polled with ``pg_try_advisory_lock`` on the connection
  granite-assets opens to migrate (a transaction-level one, ``pg_try_advisory_xact_lock``, on a
  caller's connection). Being session-level, it outlives the per-revision commits.
- MySQL and MariaDB: ``GET_LOCK`` with its result checked, then ``RELEASE_LOCK``.
- SQLite: the file's write lock, taken by ``BEGIN IMMEDIATE`` on the migrating connection
  (:func:`sqlite_write_lock`).

Every wait is a loop of short tries, so that Ctrl-C interrupts it at once, an async caller's
event loop keeps running (see :func:`with_sleep`), and the log says once that it waits and then
only now and again how long it has waited.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from granite_assets._errors import MigrationLockTimeoutError
from granite_assets._timeouts import seconds

if TYPE_CHECKING:
    from granite_assets._target import Database

logger = logging.getLogger("granite_assets.migrations")

#: The PostgreSQL advisory lock key: "gran" in ASCII, below 2**31 so ``pg_locks.objid`` shows it.
POSTGRESQL_LOCK_KEY = 0x6772616E
#: The first key of the two-key advisory locks named by hosts ("host"); a single-key lock such as
#: granite-assets' own never equals a two-key one, so the two cannot collide.
POSTGRESQL_HOST_NAMESPACE = 0x686F7374
_MYSQL_LOCK_PREFIX = "granite_assets_migrations."
_MYSQL_HOST_LOCK_PREFIX = "granite_assets_host."
_MYSQL_LOCK_NAME_MAX = 64

#: Seconds between two "still waiting" log lines while a lock is held elsewhere.
LOG_EVERY = 30.0
# Tries back off from the first pause to the longest; MySQL's GET_LOCK and SQLite's busy handler
# wait on their side for at most a slice, so that the loop still runs at least once a second.
_PAUSE_FIRST, _PAUSE_MOST = 0.05, 1.0
_SERVER_SLICE = 1.0
_SQLITE_SLICE = 0.1
# SQLite's busy timeout is a C int of milliseconds.
_SQLITE_MAX_MS = 2**31 - 1

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


def waits_cooperatively() -> bool:
    """Tell whether waits must yield to an event loop rather than block the thread."""
    return _sleep.get() is not time.sleep


def pause(seconds: float) -> None:
    """Wait ``seconds`` the way the caller waits: blocking a thread, or yielding to its event loop."""
    _sleep.get()(seconds)


def wait_for(
    try_once: Callable[[float], bool],
    *,
    timeout: float,
    waiting_for: str,
    hint: str,
    pauses: bool = True,
) -> bool:
    """Call ``try_once`` until it succeeds or ``timeout`` seconds have passed; tell whether it did.

    ``try_once(budget)`` may itself wait up to ``budget`` seconds on the server's side. With
    ``pauses``, the loop sleeps between tries, backing off up to a second. The first failed try
    is logged once; later ones only every :data:`LOG_EVERY` seconds, with the time waited.
    """
    started = time.monotonic()
    deadline = started + timeout
    pause_for = _PAUSE_FIRST
    logged_at: float | None = None
    budget = 0.0  # the first try does not wait, so that a wait is logged as soon as it begins
    while True:
        if try_once(budget):
            return True
        budget = max(0.0, min(deadline - time.monotonic(), _SERVER_SLICE))
        now = time.monotonic()
        if now >= deadline:
            return False
        if logged_at is None:
            logger.info("Waiting for %s (%s).", waiting_for, hint)
            logged_at = now
        elif now - logged_at >= LOG_EVERY:
            logger.info(
                "Still waiting for %s after %.0f of %s seconds (%s).",
                waiting_for,
                now - started,
                f"{timeout:g}",
                hint,
            )
            logged_at = now
        if pauses:
            pause(min(pause_for, deadline - now))
            pause_for = min(pause_for * 2, _PAUSE_MOST)
        else:
            pause(0)  # lets an async caller's event loop run between tries


@dataclass(frozen=True)
class DatabaseLock:
    """How to take and release a migration lock on one kind of database server.

    Attributes:
        backend: ``"postgresql"`` or ``"mysql"``.
        database: The name of the database the lock protects.
        transactional: Take PostgreSQL's transaction-level lock, which ends with the transaction.
        name: ``None`` for granite-assets' own lock; a host's name for a lock of the host's own.
    """

    backend: str
    database: str | None
    transactional: bool = False
    name: str | None = None

    @property
    def mysql_name(self) -> str:
        """``GET_LOCK`` names are server-wide, so the database name is part of it (64 chars max)."""
        if self.name is None:
            prefix, full = _MYSQL_LOCK_PREFIX, _MYSQL_LOCK_PREFIX + (self.database or "")
        else:
            prefix = _MYSQL_HOST_LOCK_PREFIX
            full = f"{prefix}{self.name}.{self.database or ''}"
        if len(full) > _MYSQL_LOCK_NAME_MAX:
            full = prefix + hashlib.sha256(full.encode()).hexdigest()[:32]
        return full

    @property
    def postgresql_keys(self) -> str:
        """The argument list of the advisory-lock functions for this lock."""
        if self.name is None:
            return str(POSTGRESQL_LOCK_KEY)
        return f"{POSTGRESQL_HOST_NAMESPACE}, {_int4(zlib.crc32(self.name.encode()))}"

    @property
    def title(self) -> str:
        """What the lock is, for messages: whose it is and the server's name for it."""
        whose = (
            "the granite-assets migration lock" if self.name is None else f"the migration lock {self.name!r}"
        )
        if self.backend == "postgresql":
            return f"{whose} (PostgreSQL advisory lock {self.postgresql_keys.replace(', ', ',')})"
        return f"{whose} (MySQL named lock {self.mysql_name!r})"

    def holder_hint(self) -> str:
        """How to find the session that holds the lock."""
        if self.backend == "postgresql":
            if self.name is None:
                match = f"classid = 0 AND objid = {POSTGRESQL_LOCK_KEY} AND objsubid = 1"
            else:
                classid, objid = (int(key) for key in self.postgresql_keys.split(", "))
                match = f"classid = {classid} AND objid = {_uint4(objid)} AND objsubid = 2"
            return (
                "find its holder with SELECT pid, application_name, client_addr FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid IN (SELECT pid FROM pg_locks WHERE "
                f"locktype = 'advisory' AND {match} AND granted)"
            )
        return f"find its holder with SELECT IS_USED_LOCK('{self.mysql_name}') and SHOW PROCESSLIST"

    def try_acquire(self, connection: Connection, wait: float) -> bool:
        """Try once to take the lock, waiting at most ``wait`` seconds where the server can."""
        if self.backend == "postgresql":
            # The keys are constants: plain driver SQL skips SQLAlchemy's statement compilation.
            fn = "pg_try_advisory_xact_lock" if self.transactional else "pg_try_advisory_lock"
            return bool(connection.exec_driver_sql(f"SELECT {fn}({self.postgresql_keys})").scalar())
        # GET_LOCK waits on the server; 1 means held, 0 timed out, NULL an error.
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :wait)"),
            {"name": self.mysql_name, "wait": math.ceil(wait)},
        )
        return got.scalar() == 1

    def release(self, connection: Connection) -> None:
        """Release the lock; a transaction-level lock goes with the caller's transaction."""
        if self.backend == "postgresql":
            if not self.transactional:
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({self.postgresql_keys})")
        else:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": self.mysql_name})


def _int4(value: int) -> int:
    """An unsigned 32-bit value as the signed int4 PostgreSQL's advisory functions take."""
    return value - 2**32 if value >= 2**31 else value


def _uint4(value: int) -> int:
    """A signed int4 as the unsigned oid ``pg_locks`` shows it as."""
    return value + 2**32 if value < 0 else value


def lock_for(connection: Connection, *, transactional: bool, name: str | None = None) -> DatabaseLock | None:
    """The lock to use on ``connection``'s database; ``None`` for SQLite, which needs none here.

    Other dialects have no lock: a warning says concurrent upgrades are then unsafe.
    """
    backend = connection.dialect.name
    if backend == "sqlite":
        return None
    if backend in {"postgresql", "mysql", "mariadb"}:
        if backend == "postgresql":  # advisory locks belong to the connection's database already
            return DatabaseLock("postgresql", connection.engine.url.database, transactional, name)
        # GET_LOCK names are server-wide: name the database the session is in, which the URL may
        # not (connect_args, a creator), so that every migrator of one database shares one lock.
        database = connection.exec_driver_sql("SELECT DATABASE()").scalar()
        return DatabaseLock("mysql", None if database is None else str(database), transactional, name)
    logger.warning(
        "granite-assets has no migration lock for %s: do not run upgrades from several "
        "processes at once on this database.",
        backend,
    )
    return None


def acquire(
    lock: DatabaseLock,
    connection: Connection,
    timeout: float,
    where: str,
    *,
    timeout_name: str = "lock_timeout",
) -> None:
    """Take ``lock`` on ``connection`` within ``timeout`` seconds, or raise the timeout error.

    ``timeout_name`` is what the caller calls the timeout, for the error's advice to raise it.
    """
    got = wait_for(
        lambda budget: lock.try_acquire(connection, budget),
        timeout=timeout,
        waiting_for=f"{lock.title} on {where}",
        hint=lock.holder_hint(),
        pauses=lock.backend == "postgresql",  # GET_LOCK waits on the server
    )
    if not got:
        raise MigrationLockTimeoutError(
            "Another session (another process, or a thread of this one) has held "
            f"{lock.title} on {where} for more than {seconds(timeout)}; "
            f"{lock.holder_hint()}. Wait for it to finish, or raise {timeout_name}; "
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


def sqlite_busy_ms(seconds: float) -> int:
    """``seconds`` as a SQLite busy timeout in milliseconds, infinity included."""
    return _SQLITE_MAX_MS if seconds * 1000 >= _SQLITE_MAX_MS else max(0, int(seconds * 1000))


@contextmanager
def sqlite_write_lock(
    connection: Connection, db: Database, lock_timeout: float, *, callers: bool = False
) -> Iterator[None]:
    """Hold SQLite's write lock: ``BEGIN IMMEDIATE`` serialises concurrent migrators on the file.

    The driver is put in autocommit mode so that our ``BEGIN IMMEDIATE`` is the transaction's
    only BEGIN (pysqlite would otherwise run DDL outside any transaction), and is restored after.
    ``BEGIN IMMEDIATE`` is tried with a short busy timeout, again and again, rather than once with
    a long one: SQLite's busy handler cannot be interrupted, and Ctrl-C must be. Once the lock is
    held, the busy timeout is what is left of ``lock_timeout``, for the commit's wait for readers;
    the connection's own busy timeout (a URL's ``?timeout=``, say) is restored after. On a
    caller's connection that already has a transaction open, that transaction is used as is.
    """
    raw: Any = connection.connection.dbapi_connection
    if callers and in_driver_transaction(raw, unknown=True):  # never commit what may be the caller's
        yield
        return
    if not callers and connection.in_transaction():
        connection.rollback()
    saved_level = raw.isolation_level
    busy_ms = int(connection.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0)
    if not callers:
        connection.rollback()
    raw.isolation_level = None  # no driver transaction is open here, so this commits nothing
    started = time.monotonic()
    try:
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {sqlite_busy_ms(_SQLITE_SLICE)}")

        def begin_immediate(_budget: float) -> bool:
            if not connection.in_transaction():
                connection.begin()  # SQLAlchemy's marker, and whatever a "begin" listener sends
            if not callers and in_driver_transaction(raw, unknown=False):
                # A host's "begin" listener (SQLAlchemy's pysqlite recipe) sent a plain BEGIN, which
                # holds nothing yet: it makes way for ours, which must take the write lock now.
                connection.exec_driver_sql("ROLLBACK")
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            except OperationalError as exc:
                if "locked" not in str(exc.orig):
                    raise
                if not callers:
                    connection.rollback()
                return False
            return True

        held = wait_for(
            begin_immediate,
            timeout=lock_timeout,
            waiting_for=f"the write lock of the SQLite database {db.where}",
            hint=f"find its holder with: fuser -v {db.url.database}",
            pauses=False,  # each try already waited in SQLite's busy handler
        )
        if not held:
            raise MigrationLockTimeoutError(
                "Another session (another process, or a thread of this one) has held "
                f"the write lock of the SQLite database {db.where} "
                f"for more than {seconds(lock_timeout)} (find it with: fuser -v {db.url.database}). "
                "Wait for it to finish, or raise lock_timeout; if that process is gone, its lock "
                "went with it."
            )
        left = lock_timeout - (time.monotonic() - started)
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {sqlite_busy_ms(left)}")
        yield
    finally:
        if not callers and connection.in_transaction():
            connection.rollback()
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {busy_ms}")
        if not callers:
            connection.rollback()
        raw.isolation_level = saved_level


def in_driver_transaction(raw: Any, *, unknown: bool) -> bool:
    """Tell whether a SQLite driver connection has a transaction open; ``unknown`` when it cannot say.

    pysqlite says so itself; SQLAlchemy's aiosqlite adapter keeps aiosqlite's connection, which
    does, one level down.
    """
    for candidate in (raw, getattr(raw, "_connection", None)):
        state = getattr(candidate, "in_transaction", None)
        if isinstance(state, bool):
            return state
    return unknown
