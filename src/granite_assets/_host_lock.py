"""The lock a host holds around its own Alembic upgrade (:func:`granite_assets.migrations.migration_lock`).

granite-assets' own upgrade is serialised by its own lock; the host's upgrade, run by Alembic on
a connection of the host's ``env.py``, is not. This lock is named by the host and held on a
connection of its own while the host's upgrade runs inside the block:

- PostgreSQL: a session advisory lock with two keys (a namespace and the CRC-32 of the name),
  which never equals granite-assets' own single-key lock, on a connection in AUTOCOMMIT so that no
  transaction stays open beside the host's.
- MySQL and MariaDB: ``GET_LOCK`` on a name of its own (see :class:`~granite_assets._locking.DatabaseLock`).
- SQLite: ``flock`` on a lock file beside the database file. The database's own write lock cannot
  serve: Alembic's connection inside the block needs it, and would wait for its own process.

The server locks' sessions idle all through the block, so they are exempted from the server's
idle-session timeout. Each is released when the block ends, and dies with its holder: the server
ends a killed process's session, and the kernel drops a killed process's ``flock``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Final

from sqlalchemy import URL, Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from granite_assets._errors import InvalidURLError, MigrationError, MigrationLockTimeoutError
from granite_assets._locking import DatabaseLock, acquire, lock_for, wait_for
from granite_assets._target import Database, connect, resolve, sqlite_file
from granite_assets._timeouts import check_lock_timeout, seconds

logger = logging.getLogger("granite_assets.migrations")

#: A lock name: a letter or digit, then up to 63 letters, digits, ``_``, ``-`` and ``.``. It
#: becomes part of a MySQL lock name and of a file name, so nothing else is allowed.
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: MySQL's largest ``wait_timeout`` (a year, in seconds); it has no "never".
_MYSQL_LONGEST_WAIT_TIMEOUT: Final = 31_536_000
# The longest file name most file systems take, in bytes (NAME_MAX).
_FILE_NAME_MAX: Final = 255


@dataclass
class _Hold:
    """One held lock; ``active`` turns false when the block that took it ends.

    ``pid`` is the process that holds it: a child forked in the block inherits this record, but
    is another process, which must wait for the lock like any other.
    """

    pid: int = field(default_factory=os.getpid)
    active: bool = True

    def covers_this_process(self) -> bool:
        """Tell whether a block of this process, nested in the one that took the lock, runs under it."""
        return self.active and self.pid == os.getpid()


# The locks held by the block the caller is in, by (where, name). A ContextVar rather than a
# thread-local, so that work the block hands on (asyncio.to_thread, a task it starts) counts as
# nested too, and does not wait for the lock its own caller holds.
_held: ContextVar[Mapping[tuple[str, ...], _Hold]] = ContextVar(
    "granite_assets_host_locks", default=MappingProxyType({})
)


def check_name(name: object) -> str:
    """Return ``name`` when it can name a lock; raise :exc:`ValueError` saying what is allowed."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"The migration lock's name must be 1 to 64 characters: letters, digits, '_', '-' and '.', "
            f"beginning with a letter or a digit, such as your application's name; not {name!r}."
        )
    return name


@contextmanager
def migration_lock(target: str | URL | Engine, name: str, timeout: float) -> Iterator[None]:
    """Hold the host's lock ``name`` on ``target``'s database for the duration of the block."""
    name = check_name(name)
    try:
        timeout = check_lock_timeout(timeout)
    except ValueError as exc:  # the same rule, under this function's name for it
        raise ValueError(str(exc).replace("lock_timeout", "migration_lock()'s timeout", 1)) from None
    if isinstance(target, Connection):
        raise TypeError(
            "migration_lock() needs a URL or an Engine, not a Connection: it holds the lock on a "
            "connection of its own, kept open and outside any transaction while Alembic migrates on "
            "another, and a lock on your connection would end with its transaction (or, on SQLite, "
            "block Alembic's connection). Pass connection.engine."
        )
    if not isinstance(target, str | URL | Engine):
        raise TypeError(
            f"migration_lock() needs a database URL or an Engine, not {type(target).__name__}; "
            "for an AsyncEngine, pass its URL made synchronous with to_sync_url()."
        )
    with resolve(target, timeout) as resolved:
        db = _named_by_its_file(resolved)
        key = _key(db, name)
        held = _held.get()
        outer = held.get(key)
        if outer is not None and outer.covers_this_process():
            logger.debug("The migration lock %r on %s is held by an enclosing block already.", name, db.where)
            yield
            return
        hold_it = _file_lock if db.url.get_backend_name() == "sqlite" else _server_lock
        with hold_it(db, name, timeout):
            hold = _Hold()
            token = _held.set({**held, key: hold})
            try:
                yield
            finally:
                hold.active = False
                _held.reset(token)


def _key(db: Database, name: str) -> tuple[str, ...]:
    """What identifies one lock in this process, whichever URL, driver or user names the database."""
    url = db.url
    if url.get_backend_name() == "sqlite":
        return ("sqlite", os.path.realpath(lock_file(db, name)), name)
    return (url.get_backend_name(), str(url.host), str(url.port), str(url.database), name)


# -- PostgreSQL, MySQL and MariaDB -----------------------------------------------------------


@contextmanager
def _server_lock(db: Database, name: str, timeout: float) -> Iterator[None]:
    """Hold the server's lock ``name`` on a connection of our own, in AUTOCOMMIT."""
    with connect(db) as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        lock = lock_for(connection, transactional=False, name=name)
        if lock is None:  # a dialect without a lock: lock_for warned
            yield
            return
        with _exempt_from_idle_timeout(connection):
            acquire(lock, connection, timeout, db.where, timeout_name="migration_lock()'s timeout")
            try:
                yield
            finally:
                _release(lock, connection, db)


@contextmanager
def _exempt_from_idle_timeout(connection: Connection) -> Iterator[None]:
    """Keep the server from ending the lock's session for idling, which it does all through the block.

    A server that ends idle sessions (PostgreSQL's ``idle_session_timeout``, MySQL's
    ``wait_timeout``) would end the lock with it, and let another replica in while the host's
    upgrade still runs. Both settings are the session's own to change; the session's own value
    is put back after, since the connection may be the host's, going back to its pool.
    """
    dialect = connection.dialect
    if dialect.name == "postgresql":
        if (dialect.server_version_info or (0,)) < (14,):  # the setting came with PostgreSQL 14
            yield
            return
        setting = "idle_session_timeout"
        saved = connection.exec_driver_sql(f"SHOW {setting}").scalar()
        connection.exec_driver_sql(f"SET {setting} = 0")
        restore = text(f"SELECT set_config('{setting}', :value, false)")
    else:
        saved = connection.exec_driver_sql("SELECT @@session.wait_timeout").scalar()
        connection.exec_driver_sql(f"SET SESSION wait_timeout = {_MYSQL_LONGEST_WAIT_TIMEOUT}")
        restore = text("SET SESSION wait_timeout = :value")
    try:
        yield
    finally:
        if not connection.invalidated:
            connection.execute(restore, {"value": saved})


def _release(lock: DatabaseLock, connection: Connection, db: Database) -> None:
    """Release ``lock``; if the server cannot be told, end the session, which ends the lock too."""
    try:
        lock.release(connection)
    except DBAPIError as exc:
        # The connection broke during the block, taking the lock with it; never hand a session
        # that might still hold it back to the caller's pool.
        connection.invalidate()
        logger.warning(
            "Could not release %s on %s (%s); its connection was closed, which releases it.",
            lock.title,
            db.where,
            db.scrub(" ".join(str(exc.orig).split())),
        )


# -- SQLite ----------------------------------------------------------------------------------


def _named_by_its_file(db: Database) -> Database:
    """``db``, its URL naming the SQLite file it opens when the URL itself does not.

    An engine built with a ``creator`` has a URL without a file (``sqlite://``); the database
    knows which file it has open, and the lock file goes beside that one.
    """
    if db.url.get_backend_name() != "sqlite" or db.owned or sqlite_file(db.url) is not None:
        return db
    with connect(db) as connection:
        files = {str(row[1]): str(row[2] or "") for row in connection.exec_driver_sql("PRAGMA database_list")}
    return replace(db, url=db.url.set(database=files["main"])) if files.get("main") else db


def lock_file(db: Database, name: str) -> str:
    """The lock file of ``name`` for a SQLite database: beside its file, named after both.

    A name too long for the file system (255 bytes) keeps the start of the database's file
    name and replaces the rest with a digest of the whole, the same in every process.
    """
    database = sqlite_file(db.url)
    if database is None:
        raise InvalidURLError(
            f"{db.where} is an in-memory SQLite database: no other process can migrate it, and "
            "there is no file to put migration_lock()'s lock file beside. Run the upgrade without it."
        )
    # A str, not a Path: it is what os.open takes.
    folder, base = os.path.split(os.path.abspath(database))  # noqa: PTH100
    file_name = f"{base}.granite-assets-{name}.lock"
    if len(file_name.encode()) > _FILE_NAME_MAX:
        digest = hashlib.sha256(f"{base}/{name}".encode()).hexdigest()[:32]
        file_name = f"{base[:40]}.granite-assets-{digest}.lock"
    return os.path.join(folder, file_name)  # noqa: PTH118


@contextmanager
def _file_lock(db: Database, name: str, timeout: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the lock file of ``name``, polled so that Ctrl-C interrupts it."""
    try:
        import fcntl
    except ImportError:  # Windows
        raise MigrationError(
            "migration_lock() on SQLite locks a file with fcntl.flock, which this platform lacks; "
            "run the host's upgrade from one process at a time."
        ) from None
    path = lock_file(db, name)
    try:
        # Read-only is enough for flock, and works when another user created the file.
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError as exc:
        raise MigrationError(
            f"Could not open the lock file {path} of the migration lock {name!r} for {db.where}: "
            f"{exc.strerror}. Check that this process may create files in the database's folder."
        ) from None

    def try_once(_budget: float) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    hint = f"find its holder with: fuser -v {path}"
    try:
        got = wait_for(
            try_once,
            timeout=timeout,
            waiting_for=f"the migration lock {name!r} (lock file {path}) on {db.where}",
            hint=hint,
        )
        if not got:
            raise MigrationLockTimeoutError(
                "Another session (another process, or a thread of this one) has held "
                f"the migration lock {name!r} (lock file {path}) on {db.where} "
                f"for more than {seconds(timeout)}; {hint}. Wait for it to finish, or raise "
                "migration_lock()'s timeout; if that process is gone, its lock went with it."
            )
        owner = os.getpid()
        try:
            yield
        finally:
            # Unlock before closing: a child forked in the block shares the open file, and
            # closing our descriptor alone would leave the lock with the child. A child that
            # leaves the block itself must not unlock its parent's lock.
            if os.getpid() == owner:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        # The file stays: deleting it would let a process that opened it before the deletion
        # lock a file that the next one no longer sees.
        os.close(fd)
