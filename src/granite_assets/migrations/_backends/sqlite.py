"""SQLite: one file, one migration transaction, its write lock, and its foreign keys.

- The migration lock is the file's write lock, taken by ``BEGIN IMMEDIATE`` on the migrating
  connection (:func:`write_lock`); a whole migration is that one transaction.
- Alembic alters tables by rebuilding them, which with ``PRAGMA foreign_keys`` on would delete
  the rows that refer to them: the pragma is switched off around the migration
  (:func:`foreign_keys_off`), and the keys are checked before the commit.
- The host's lock is ``flock`` on a lock file beside the database file (:func:`file_lock`).
- A URL names a file: a missing one is not created by a read, and an in-memory database, which
  every new connection gets empty, is refused.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

from sqlalchemy import URL, Connection
from sqlalchemy.exc import DBAPIError, OperationalError

from granite_assets.migrations._backends.base import Backend, Connect, DatabaseView
from granite_assets.migrations._driver_errors import Signature
from granite_assets.migrations._errors import (
    DatabaseConnectionError,
    InvalidURLError,
    MigrationError,
    MigrationFailedError,
    MigrationLockTimeoutError,
    UnsupportedConnectionError,
)
from granite_assets.migrations._messages import advice, lock_timeout_name, seconds
from granite_assets.migrations._names import TABLE_PREFIX
from granite_assets.migrations._urls import display_url
from granite_assets.migrations._waiting import wait_for

if TYPE_CHECKING:
    from granite_assets.migrations._history import Revision

# SQLite's busy timeout is a C int of milliseconds: its largest value stands in for "no limit".
_BUSY_MS_MAX: Final = 2**31 - 1
# BEGIN IMMEDIATE waits in SQLite's busy handler for at most this slice, so that the loop around
# it still runs, and Ctrl-C interrupts it, several times a second.
_SLICE: Final = 0.1
# The longest file name most file systems take, in bytes (NAME_MAX).
_FILE_NAME_MAX: Final = 255


def sqlite_file(url: URL) -> str | None:
    """The file a SQLite URL names, as given (``file:`` URIs too); ``None`` for an in-memory database."""
    name = url.database or ""
    if name.startswith("file:"):  # a URI filename (?uri=true): its path, without the query
        name = urllib.parse.unquote(urllib.parse.urlsplit(name).path)
    if name in {"", ":memory:"} or url.query.get("mode") == "memory":
        return None
    return name


def busy_ms(seconds: float) -> int:
    """``seconds`` as a SQLite busy timeout in milliseconds, infinity included."""
    return _BUSY_MS_MAX if seconds * 1000 >= _BUSY_MS_MAX else max(0, int(seconds * 1000))


@contextmanager
def write_lock(
    connection: Connection, db: DatabaseView, lock_timeout: float, *, callers: bool = False
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
    saved_busy_ms = int(connection.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0)
    if not callers:
        connection.rollback()
    raw.isolation_level = None  # no driver transaction is open here, so this commits nothing
    started = time.monotonic()
    try:
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {busy_ms(_SLICE)}")

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
                f"Wait for it to finish, or raise {lock_timeout_name()}; if that process is gone, its lock "
                "went with it."
            )
        left = lock_timeout - (time.monotonic() - started)
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {busy_ms(left)}")
        yield
    finally:
        if not callers and connection.in_transaction():
            connection.rollback()
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {saved_busy_ms}")
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


@contextmanager
def foreign_keys_off(connection: Connection, db: DatabaseView) -> Iterator[bool]:
    """Switch SQLite's foreign keys off for the migration when they are on; say whether they were.

    A table rebuild (Alembic's batch mode) drops the old table, and with foreign keys on, that
    deletes every row referring to it through ``ON DELETE CASCADE``. The pragma can only change
    outside a transaction, so this wraps the write lock's transaction. It is set on the driver's
    own cursor: through SQLAlchemy, a host's "begin" listener would open a transaction first, in
    which SQLite ignores the pragma without a word.
    """
    was_on = _foreign_keys(connection)
    if not was_on:
        yield False
        return
    _foreign_keys(connection, "OFF")
    if _foreign_keys(connection):
        raise MigrationFailedError(
            f"granite-assets could not switch SQLite's foreign keys off on {db.where} (a transaction "
            "was open), and a table rebuild with them on would delete the rows that refer to the "
            "rebuilt table. Nothing was changed.",
            None,
        )
    try:
        yield True
    finally:
        _foreign_keys(connection, "ON")


def _foreign_keys(connection: Connection, switch: str | None = None) -> bool:
    """Read (or switch, then read) PRAGMA foreign_keys outside any transaction, on the driver's cursor."""
    if connection.in_transaction():
        connection.rollback()
    raw: Any = connection.connection.dbapi_connection
    cursor = raw.cursor()
    try:
        if switch is not None:
            cursor.execute(f"PRAGMA foreign_keys = {switch}")
        cursor.execute("PRAGMA foreign_keys")
        return bool(cursor.fetchone()[0])
    finally:
        cursor.close()


def foreign_key_violations(connection: Connection, db: DatabaseView) -> Counter[tuple[str, ...]]:
    """Count the rows that break a foreign key a migration can break, by table, referred table and key.

    Those are the keys of granite-assets' tables and the keys that refer to them: the host's
    other keys are not granite-assets' to check, and one SQLite cannot check at all (a key to a
    column that is not unique: "foreign key mismatch") must not stop every migration.
    """
    rows: list[Any] = []
    for table in _tables_keyed_to_ours(connection):
        try:
            rows += connection.exec_driver_sql(f"PRAGMA foreign_key_check({_quoted(table)})").fetchall()
        except OperationalError as exc:
            if "foreign key mismatch" not in str(exc.orig):
                raise
            raise MigrationFailedError(
                f"SQLite cannot check the foreign keys of the table {table} on {db.where}, which refer to "
                f"granite-assets' tables: {db.explain(exc)} A foreign key must refer to its parent "
                "table's primary key or to columns with a unique index. Nothing was changed: fix that "
                "key, then run the migration again.",
                None,
            ) from None
    return Counter((str(r[0]), str(r[2]), str(r[3])) for r in rows)


def _tables_keyed_to_ours(connection: Connection) -> list[str]:
    """granite-assets' tables, and every table with a foreign key to one of them."""
    names = [
        str(row[0])
        for row in connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        )
    ]
    keyed = []
    for name in names:
        parents = {
            str(row[2]) for row in connection.exec_driver_sql(f"PRAGMA foreign_key_list({_quoted(name)})")
        }
        # SQLite's table names ignore case: REFERENCES GRANITE_ASSETS_ASSET is a key to ours too.
        if any(table.lower().startswith(TABLE_PREFIX) for table in (name, *parents)):
            keyed.append(name)
    return keyed


def _quoted(name: str) -> str:
    """``name`` as an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def refuse_new_violations(connection: Connection, db: DatabaseView, before: Counter[tuple[str, ...]]) -> None:
    """Fail the migration, before its commit, if it left rows breaking foreign keys that did not before."""
    new = foreign_key_violations(connection, db) - before
    if new:
        found = "; ".join(
            f"{n} row(s) of {table} referring to {parent}" for (table, parent, _), n in new.items()
        )
        raise MigrationFailedError(
            f"granite-assets' migration of {db.where} would leave rows that break foreign keys ({found}), "
            "so the whole migration was rolled back (SQLite migrates in one transaction) and the "
            "database is as it was. Run PRAGMA foreign_key_check to see them.",
            None,
        )


def commit(connection: Connection, db: DatabaseView) -> None:
    """Commit SQLite's one migration transaction, saying plainly when that fails."""
    try:
        connection.commit()
    except DBAPIError as exc:
        raise MigrationFailedError(
            f"granite-assets could not commit the migration of {db.where}: "
            f"{db.explain(exc)} The whole migration was rolled back (SQLite "
            "migrates in one transaction): the database is as it was. Fix the cause and run it again.",
            None,
        ) from None


def cannot_wait_in_callers_transaction(db: DatabaseView) -> UnsupportedConnectionError:
    """The error for a caller's deferred transaction that found the write lock held by another connection.

    A transaction that has read cannot wait for the write lock: the holder may need the reader
    gone to commit, so SQLite fails at once rather than deadlock.
    """
    return UnsupportedConnectionError(
        f"Another connection holds the write lock of the SQLite database {db.where}, and your "
        "transaction cannot wait for it: it began with a deferred BEGIN and has read, and SQLite "
        "fails such a transaction at once rather than let it deadlock. Nothing was committed: roll "
        "back your transaction and call again, before it begins (granite-assets then waits for the "
        "lock), or in one begun with BEGIN IMMEDIATE."
    )


def lock_file(db: DatabaseView, name: str) -> str:
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
    # The real file, through any symlink, so that every name of one database shares one lock; a
    # str, not a Path, since that is what os.open takes.
    folder, base = os.path.split(os.path.realpath(database))
    file_name = f"{base}.granite-assets-{name}.lock"
    if len(file_name.encode()) > _FILE_NAME_MAX:
        digest = hashlib.sha256(f"{base}/{name}".encode()).hexdigest()[:32]
        file_name = f"{base[:40]}.granite-assets-{digest}.lock"
    return os.path.join(folder, file_name)  # noqa: PTH118


@contextmanager
def file_lock(db: DatabaseView, name: str, timeout: float) -> Iterator[None]:
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


@dataclass(frozen=True)
class SQLiteBackend(Backend):
    """SQLite, through pysqlite or aiosqlite."""

    transactional_ddl: ClassVar[bool] = True
    migrates_in_one_transaction: ClassVar[bool] = True
    rebuilds_tables: ClassVar[bool] = True
    permission_hint: ClassVar[str] = "Check that this process may write the database file and its folder."
    # SQLite's errors carry no code granite-assets reads: its words say what happened.
    no_such_table: ClassVar[Signature] = Signature(phrasings=(("no such table",),))
    no_such_column: ClassVar[Signature] = Signature(phrasings=(("no such column",),))
    no_database_selected: ClassVar[Signature] = Signature()
    changed_since_snapshot: ClassVar[Signature] = Signature()
    aborted_transaction: ClassVar[Signature] = Signature()
    insufficient_privilege: ClassVar[Signature] = Signature()  # no logins: the file's permissions decide

    @property
    def title(self) -> str:
        """The database's name in messages."""
        return "SQLite"

    def grantee(self, role: str) -> str:
        """Refuse: SQLite has no logins."""
        raise InvalidURLError(
            "SQLite has no database users to grant privileges to: who may read and write granite-assets' "
            "tables is up to the permissions of the database file."
        )

    def check_url(self, url: URL) -> None:
        """Refuse a URL for an in-memory database, which would vanish with the call's engine."""
        name = url.database or ""
        if name in {"", ":memory:"} or name.startswith("file::memory:") or url.query.get("mode") == "memory":
            raise InvalidURLError(
                f"{display_url(url)} is an in-memory SQLite database: every connection granite-assets "
                "opens from a URL gets a new, empty one, which vanishes when the call returns. "
                + advice(
                    "Pass an Engine instead, created with poolclass=sqlalchemy.pool.StaticPool, and use "
                    "the same engine in your application.",
                    "Name a database file instead, such as sqlite:///app.db.",
                )
            )

    def connect_args(self, url: URL, lock_timeout: float) -> dict[str, Any]:
        """A statement waits for the file's lock up to ``lock_timeout``, unless the URL says ``?timeout=``."""
        return {} if "timeout" in url.query else {"timeout": min(lock_timeout, _BUSY_MS_MAX / 1000)}

    def missing_file(self, db: DatabaseView) -> Path | None:
        """The path of the file a URL target names, when no such file exists (else ``None``).

        Opening a missing file creates it: a mistyped path read with ``current_revision`` would
        leave an empty database behind for the next upgrade to migrate. Engines and connections
        are the caller's, and in-memory databases have no file.
        """
        name = sqlite_file(db.url) if db.owned else None
        if name is None:
            return None
        path = Path(name).absolute()
        return None if path.exists() else path

    def connection_error(
        self, db: DatabaseView, reason: str, orig: BaseException | None
    ) -> DatabaseConnectionError:
        """The error for a file that could not be opened."""
        advice = "Check the file name, and that its folder exists and this process may write in it."
        return DatabaseConnectionError(f"Could not open the SQLite database {db.where}: {reason} {advice}")

    def unreadable_database(self, db: DatabaseView, reason: str) -> MigrationError | None:
        """The error for a file that is not a SQLite database."""
        if "not a database" not in reason:
            return None
        return DatabaseConnectionError(
            f"{db.where} is not a SQLite database: {reason} Check the file name in the URL."
        )

    def migration_lock(self, connection: Connection, *, transactional: bool, name: str | None = None) -> None:
        """None: the write lock, taken by :meth:`own_migration` and :meth:`callers_migration`, serves."""
        return

    @contextmanager
    def own_migration(self, connection: Connection, db: DatabaseView, timeout: float) -> Iterator[None]:
        """Migrate in one transaction under the write lock, foreign keys off, checked before the commit."""
        with foreign_keys_off(connection, db) as checking, write_lock(connection, db, timeout):
            before: Counter[tuple[str, ...]] = (
                foreign_key_violations(connection, db) if checking else Counter()
            )
            yield
            if checking:
                refuse_new_violations(connection, db, before)
            commit(connection, db)

    @contextmanager
    def callers_migration(self, connection: Connection, db: DatabaseView, timeout: float) -> Iterator[None]:
        """Migrate in the caller's transaction, taking the write lock if none is open."""
        with write_lock(connection, db, timeout, callers=True):
            yield

    def refuse_callers_transaction(self, connection: Connection, db: DatabaseView) -> None:
        """Refuse a caller's transaction with foreign keys on: the pragma cannot change inside it."""
        if connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
            raise UnsupportedConnectionError(
                f"granite-assets has revisions to apply to {db.where}, but not inside your transaction: "
                "PRAGMA foreign_keys is ON on this connection, and the table rebuilds of SQLite "
                "migrations need it OFF (or they delete the rows that refer to the rebuilt table), which "
                "SQLite only allows outside a transaction. Nothing was changed. Call it before your "
                "transaction begins, or pass the Engine instead (upgrade_to_head(connection.engine)): "
                "granite-assets then switches the pragma off for the migration, checks the foreign keys "
                "before committing, and switches it back on."
            )

    def cannot_wait(self, exc: BaseException, db: DatabaseView) -> UnsupportedConnectionError | None:
        """The error for "database is locked" in a caller's transaction, which cannot wait for the lock."""
        if isinstance(exc, DBAPIError) and "database is locked" in str(exc.orig):
            return cannot_wait_in_callers_transaction(db)
        return None

    def aftermath(
        self, db: DatabaseView, verb: str, *, before: str | None, reached: str | None, failed: Revision | None
    ) -> str:
        """Nothing is left: the migration was one transaction, rolled back whole."""
        if db.connection is not None:
            return super().aftermath(db, verb, before=before, reached=reached, failed=failed)
        return (
            f"The whole {verb} was rolled back (SQLite migrates in one transaction): the database is "
            f"still at revision {before or 'none'}. Fix the cause and run the {verb} again."
        )

    def host_lock_url(self, db: DatabaseView, connect: Connect) -> URL:
        """The URL of ``db``, naming the file it opens when the URL itself does not.

        An engine built with a ``creator`` has a URL without a file (``sqlite://``); the database
        knows which file it has open, and the lock file goes beside that one.
        """
        if db.owned or sqlite_file(db.url) is not None:
            return db.url
        with connect(db) as connection:
            files = {
                str(row[1]): str(row[2] or "") for row in connection.exec_driver_sql("PRAGMA database_list")
            }
        return db.url.set(database=files["main"]) if files.get("main") else db.url

    def host_lock_key(self, db: DatabaseView, name: str) -> tuple[str, ...]:
        """The lock file, whichever URL names the database."""
        return ("sqlite", os.path.realpath(lock_file(db, name)), name)

    @contextmanager
    def host_lock(self, db: DatabaseView, name: str, timeout: float, connect: Connect) -> Iterator[None]:
        """Hold ``flock`` on the lock file: the write lock is for Alembic's connection in the block."""
        with file_lock(db, name, timeout):
            yield
