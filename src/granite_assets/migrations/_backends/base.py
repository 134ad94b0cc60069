"""The default behaviour of a database backend, and what the server locks have in common.

A dialect without a module of its own gets :class:`Backend` as it is: DDL that is not
transactional, no migration lock (a warning says concurrent upgrades are then unsafe), and
the error codes of every backend granite-assets knows, read by code where the driver gives one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from sqlalchemy import URL, Connection
from sqlalchemy.exc import DBAPIError

from granite_assets.migrations._driver_errors import Signature
from granite_assets.migrations._errors import (
    DatabaseConnectionError,
    InsufficientPrivilegeError,
    InvalidURLError,
    MigrationError,
    MigrationLockTimeoutError,
    UnsupportedConnectionError,
)
from granite_assets.migrations._forking import in_use
from granite_assets.migrations._messages import lock_timeout_name, one_line, seconds
from granite_assets.migrations._names import logger
from granite_assets.migrations._privileges import Layout
from granite_assets.migrations._waiting import wait_for

if TYPE_CHECKING:
    from granite_assets.migrations._history import Revision

#: Seconds to wait for a server to accept a connection before giving up.
CONNECT_TIMEOUT = 10


class DatabaseView(Protocol):
    """What a backend reads of the database it works on (a ``_database.Database``)."""

    @property
    def url(self) -> URL:
        """The database's URL."""

    @property
    def connection(self) -> Connection | None:
        """The caller's own connection, if it gave one."""

    @property
    def owned(self) -> bool:
        """Whether the engine is granite-assets' own, made from a URL."""

    @property
    def where(self) -> str:
        """The URL with its password hidden, for messages."""

    def scrub(self, text: str) -> str:
        """Hide this database's secrets in ``text``."""

    def explain(self, what: BaseException | str) -> str:
        """An error's words on one line, secrets hidden."""


#: Opens a connection of granite-assets' own to a database, with errors that say what to do.
Connect = Callable[[Any], AbstractContextManager[Connection]]


class ServerLock:
    """A lock held by a database server for one session, which dies with that session."""

    #: Whether waiting pauses between tries; a lock whose try waits on the server needs none.
    pauses: ClassVar[bool] = True

    @property
    def title(self) -> str:
        """What the lock is, for messages: whose it is and the server's name for it."""
        raise NotImplementedError

    def holder_hint(self) -> str:
        """How to find the session that holds the lock."""
        raise NotImplementedError

    def try_acquire(self, connection: Connection, wait: float) -> bool:
        """Try once to take the lock, waiting at most ``wait`` seconds where the server can."""
        raise NotImplementedError

    def release(self, connection: Connection) -> None:
        """Release the lock; a transaction-level lock goes with the transaction."""
        raise NotImplementedError


def whose(name: str | None) -> str:
    """Whose lock it is, for its title: granite-assets' own, or the host's named one."""
    return "the granite-assets migration lock" if name is None else f"the migration lock {name!r}"


def acquire(
    lock: ServerLock,
    connection: Connection,
    timeout: float,
    where: str,
    *,
    timeout_name: str | None = None,
) -> None:
    """Take ``lock`` on ``connection`` within ``timeout`` seconds, or raise the timeout error.

    ``timeout_name`` is what the caller calls the timeout, for the error's advice to raise it
    (by default, the lock timeout's name where the reader is).
    """
    got = wait_for(
        lambda budget: lock.try_acquire(connection, budget),
        timeout=timeout,
        waiting_for=f"{lock.title} on {where}",
        hint=lock.holder_hint(),
        pauses=lock.pauses,
    )
    if not got:
        raise MigrationLockTimeoutError(
            "Another session (another process, or a thread of this one) has held "
            f"{lock.title} on {where} for more than {seconds(timeout)}; "
            f"{lock.holder_hint()}. Wait for it to finish, or raise {timeout_name or lock_timeout_name()}; "
            "if that process is gone, its lock went with its session."
        )


@contextmanager
def holding(lock: ServerLock | None, connection: Connection, timeout: float, where: str) -> Iterator[None]:
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
def migrating_under(
    lock: ServerLock | None, connection: Connection, db: DatabaseView, timeout: float
) -> Iterator[None]:
    """Hold ``lock`` on granite-assets' own connection while the block migrates, then release it."""
    with holding(lock, connection, timeout, db.where):
        try:
            yield
        except BaseException:
            if connection.in_transaction():
                connection.rollback()  # so that releasing the lock can run
            raise


@dataclass(frozen=True)
class Backend:
    """What granite-assets does differently on one kind of database; this class is the default.

    Attributes:
        name: The SQLAlchemy dialect's name.
    """

    name: str

    #: Whether a failed statement's DDL is rolled back with its transaction.
    transactional_ddl: ClassVar[bool] = False
    #: Whether the server commits every DDL statement on its own, a caller's transaction with it.
    ddl_commits_itself: ClassVar[bool] = False
    #: Whether a whole migration runs in one transaction, committed at the end, rather than one
    #: transaction per revision.
    migrates_in_one_transaction: ClassVar[bool] = False
    #: Whether granite-assets' own reads run in AUTOCOMMIT, where a transaction costs round trips.
    reads_in_autocommit: ClassVar[bool] = False
    #: Whether a failed statement aborts the transaction it ran in, so that a read which may fail
    #: in a transaction that must survive has to look before it leaps.
    failed_statement_aborts_transaction: ClassVar[bool] = False
    #: Whether Alembic alters tables by rebuilding them (its batch mode).
    rebuilds_tables: ClassVar[bool] = False
    #: Advice for a failure that the database refused as not permitted.
    permission_hint: ClassVar[str] = "Check that the database user may create and alter tables."
    #: Each driver's name for "give up connecting after this many seconds"; a driver missing
    #: here is given none, rather than an argument it would refuse.
    connect_timeout_arguments: ClassVar[Mapping[str, str]] = {}

    # How the server signals the failures granite-assets tells apart (see _driver_errors): by
    # default, what any of the backends below says.
    no_such_table: ClassVar[Signature] = Signature(
        frozenset({"42P01", "42S02"}), frozenset({1146}), (("no such table",),)
    )
    no_such_column: ClassVar[Signature] = Signature(
        frozenset({"42703", "42S22"}), frozenset({1054}), (("no such column",),)
    )
    no_database_selected: ClassVar[Signature] = Signature(
        codes=frozenset({1046}), phrasings=(("No database selected",),)
    )
    aborted_transaction: ClassVar[Signature] = Signature(sqlstates=frozenset({"25P02"}))
    #: A statement that waited longer than the lock timeout granite-assets set for it.
    lock_wait_timed_out: ClassVar[Signature] = Signature(frozenset({"55P03"}), frozenset({1205}))
    #: A table created or altered after the caller's transaction took its snapshot.
    changed_since_snapshot: ClassVar[Signature] = Signature(codes=frozenset({1412}))
    no_database: ClassVar[Signature] = Signature(
        frozenset({"3D000"}), frozenset({1049}), (("database", "does not exist"),)
    )
    bad_login: ClassVar[Signature] = Signature(
        frozenset({"28P01", "28000"}),
        frozenset({1045}),
        (("password authentication failed",), ("not permitted to log in",), ("role", "does not exist")),
    )
    no_access: ClassVar[Signature] = Signature(
        frozenset({"42501"}), frozenset({1044}), (("permission denied for database",),)
    )
    #: A statement the login has no privilege for: PostgreSQL's insufficient_privilege, MySQL's
    #: table, column, database and specific-privilege "access denied" errors.
    insufficient_privilege: ClassVar[Signature] = Signature(
        frozenset({"42501"}), frozenset({1044, 1142, 1143, 1227})
    )
    #: Whether the server refuses a statement on a table the login has no privilege on before it
    #: says whether the table exists, so that a refused read may also mean a missing table.
    refuses_unseen_tables: ClassVar[bool] = False
    #: What a login needs to migrate, for the advice of an upgrade the database refused.
    migrator_privileges: ClassVar[str] = "the right to create and alter tables"

    @property
    def title(self) -> str:
        """The database's name in messages."""
        return self.name

    # -- URLs and connections ------------------------------------------------------------------

    def check_url(self, url: URL) -> None:
        """Refuse a URL that cannot be migrated from, before anything connects."""

    def connect_args(self, url: URL, lock_timeout: float) -> dict[str, Any]:
        """The driver's ``connect()`` arguments that bound the waits of a URL target's engine."""
        key = self.connect_timeout_arguments.get(url.get_driver_name())
        return {key: CONNECT_TIMEOUT} if key is not None and key not in url.query else {}

    def missing_file(self, db: DatabaseView) -> Path | None:
        """The path of a database file that a URL names and that does not exist; ``None`` for servers."""
        return None

    def connection_error(
        self, db: DatabaseView, reason: str, orig: BaseException | None
    ) -> DatabaseConnectionError:
        """The error for a connection the server refused or could not be made, with advice that fits."""
        if self.no_database.matches(orig, reason):
            advice = (
                f"The database {db.url.database!r} does not exist on that server: create it "
                f"(CREATE DATABASE {db.url.database}) or correct the URL."
            )
        elif self.no_access.matches(orig, reason):
            advice = (
                f"The user may not use the database {db.url.database!r}, or it does not exist: check the "
                "name in the URL, and create the database or grant the user access to it."
            )
        elif self.bad_login.matches(orig, reason):
            advice = "Check the user name and password, and that this user may connect to that database."
        else:
            advice = (
                "Check that the server is running and reachable from here, and that the user name "
                "and password are right."
            )
        return DatabaseConnectionError(f"Could not connect to {db.where}: {reason} {advice}")

    def no_database_named(self, where: str) -> InvalidURLError:
        """The error for a URL (or session) that names no database, where the server needs one."""
        return InvalidURLError(
            f"{where} names no database, so granite-assets has none to keep its tables in on that server. "
            "Add the database's name to the URL (mysql+pymysql://user@host/name)."
        )

    def unreadable_database(self, db: DatabaseView, reason: str) -> MigrationError | None:
        """The error for a database that is not one at all (a file of another kind), else ``None``."""
        return None

    # -- Privileges ----------------------------------------------------------------------------

    def login_name(self, connection: Connection) -> str | None:
        """The database user whose privileges the server checks on ``connection``, as it names it."""
        return None

    def unusable_schema(self, connection: Connection, db: DatabaseView) -> InsufficientPrivilegeError | None:
        """The error for a login that may use no schema to find tables in, else ``None``.

        Asked when granite-assets' version table is not found: where the server hides the tables
        of a schema the login may not use, "missing" would otherwise be the answer.
        """
        return None

    # -- Grants for a runtime login (granite-assets db grants) ---------------------------------

    #: Whether the server grants privileges on tables before they exist (PostgreSQL's
    #: ``ALTER DEFAULT PRIVILEGES``), so that the migration user's next tables are covered.
    default_privileges: ClassVar[bool] = False

    def grantee(self, role: str) -> str:
        """``role`` as a GRANT names it; raise where there is no such login, or the name cannot be one."""
        raise self._no_grants()

    def runtime_layout(self, connection: Connection, db: DatabaseView, owner: str | None) -> Layout:
        """Where granite-assets' tables are in the database of ``connection``, read with SELECTs only."""
        raise self._no_grants()

    def runtime_grants(self, role: str, layout: Layout, *, read_only: bool) -> list[str]:
        """The statements, with comments, that give the runtime login ``role`` what it needs."""
        raise self._no_grants()

    def _no_grants(self) -> InvalidURLError:
        return InvalidURLError(
            f"granite-assets writes the grants of a runtime login for PostgreSQL, MariaDB and MySQL, "
            f"not for {self.title}."
        )

    # -- The migration lock --------------------------------------------------------------------

    def migration_lock(
        self, connection: Connection, *, transactional: bool, name: str | None = None
    ) -> ServerLock | None:
        """The lock that serialises migrators of ``connection``'s database; ``None`` where there is none."""
        logger.warning(
            "granite-assets has no migration lock for %s: do not run upgrades from several "
            "processes at once on this database.",
            self.name,
        )
        return None

    @contextmanager
    def own_migration(self, connection: Connection, db: DatabaseView, timeout: float) -> Iterator[None]:
        """Hold the migration lock on granite-assets' own connection while the block migrates.

        The lock is session-level: it outlives the per-revision commits, is released when done,
        and dies with the session if the process does.
        """
        with migrating_under(self.migration_lock(connection, transactional=False), connection, db, timeout):
            yield

    @contextmanager
    def callers_migration(self, connection: Connection, db: DatabaseView, timeout: float) -> Iterator[None]:
        """Hold the migration lock in the caller's transaction (begun if none is open) for the block."""
        if not connection.in_transaction():
            connection.begin()
        lock = self.migration_lock(connection, transactional=True)
        with holding(lock, connection, timeout, db.where):
            yield

    # -- A caller's transaction ----------------------------------------------------------------

    def refuse_callers_transaction(self, connection: Connection, db: DatabaseView) -> None:
        """Refuse a caller's transaction that cannot hold the migration safely; nothing is changed yet."""

    def sees_a_snapshot(self, connection: Connection) -> bool:
        """Tell whether the caller's transaction sees the database as it was when it began."""
        return False

    def cannot_wait(self, exc: BaseException, db: DatabaseView) -> UnsupportedConnectionError | None:
        """The error for a caller's transaction that failed because it could not wait for a lock."""
        return None

    # -- Bounded waits for table locks ---------------------------------------------------------

    @contextmanager
    def ddl_limits(
        self,
        connection: Connection,
        lock_timeout: float,
        statement_timeout: float | None,
        *,
        in_transaction: bool,
    ) -> Iterator[None]:
        """Bound, for the block, how long each statement waits for a table lock (and runs).

        ``in_transaction`` says the settings must end with the caller's transaction. The session's
        own values are put back after. By default nothing is bounded: the database has no such
        setting granite-assets knows (SQLite's busy timeout bounds its waits already).
        """
        yield

    def lock_wait_bound(self, seconds: float) -> float:
        """How long a statement really waits for a lock when asked to wait ``seconds``."""
        return seconds

    def blockers(self, connection: Connection) -> tuple[str, ...]:
        """The other sessions holding locks on granite-assets' tables, described for an operator."""
        return ()

    def end_session_hint(self, blockers: tuple[str, ...]) -> str:
        """How to end the blocking sessions, for the advice of a lock timeout."""
        return "end those sessions or wait for them to finish"

    # -- After a failure -----------------------------------------------------------------------

    def aftermath(
        self, db: DatabaseView, verb: str, *, before: str | None, reached: str | None, failed: Revision | None
    ) -> str:
        """Say what a failed call left behind: that depends on how the backend treats DDL."""
        if db.connection is not None and not self.ddl_commits_itself:
            return (
                f"Nothing was committed: roll back your transaction, fix the cause and run the {verb} again."
            )
        where = f"The database is at revision {reached or 'none'}, the last one that completed"
        if self.transactional_ddl:
            return f"{where}; the failed step was rolled back. Fix the cause and run the {verb} again."
        if failed is None:  # a version-table statement: it either happened or did not
            return f"{where}. Fix the cause and run the {verb} again."
        return (
            f"{where}. {self.title} cannot roll back DDL: whatever revision {failed.revision} changed before "
            f"it failed is still there; undo it by hand before you run the {verb} again."
        )

    # -- The host's lock (migration_lock()) ----------------------------------------------------

    def host_lock_url(self, db: DatabaseView, connect: Connect) -> URL:
        """The URL that names ``db`` for the host's lock: two engines on one database share it.

        An engine built with a ``creator`` has a URL that names no server or database
        (``postgresql://``); the session says which it is connected to.
        """
        if db.url.database:
            return db.url
        with connect(db) as connection:
            host, port, database = self.session_address(connection)
        return db.url.set(host=host or db.url.host, port=port or db.url.port, database=database)

    def session_address(self, connection: Connection) -> tuple[str | None, int | None, str | None]:
        """The server (host, port) and database a session is connected to, as far as it says."""
        return None, None, None

    def host_lock_key(self, db: DatabaseView, name: str) -> tuple[str, ...]:
        """What identifies the host's lock ``name`` in this process, whichever URL names the database."""
        url = db.url
        return (url.get_backend_name(), str(url.host), str(url.port), str(url.database), name)

    @contextmanager
    def host_lock(self, db: DatabaseView, name: str, timeout: float, connect: Connect) -> Iterator[None]:
        """Hold the server's lock ``name`` on a connection of our own, in AUTOCOMMIT."""
        owner = os.getpid()
        with connect(db) as connection, in_use(connection):
            connection.execution_options(isolation_level="AUTOCOMMIT")
            lock = self.migration_lock(connection, transactional=False, name=name)
            if lock is None:  # a dialect without a lock: migration_lock() warned
                yield
                return
            with self.idling_allowed(connection):
                acquire(lock, connection, timeout, db.where, timeout_name="migration_lock()'s timeout")
                try:
                    yield
                finally:
                    if os.getpid() == owner:
                        _release(lock, connection, db)
                    else:  # a child forked in the block: the session, and its lock, are the parent's
                        connection.invalidate()

    @contextmanager
    def idling_allowed(self, connection: Connection) -> Iterator[None]:
        """Keep the server from ending a lock's session for idling, which it does all through the block.

        A server that ends idle sessions would end the lock with it, and let another replica in
        while the host's upgrade still runs. The session's own setting is put back after, since
        the connection may be the host's, going back to its pool.
        """
        yield


def _release(lock: ServerLock, connection: Connection, db: DatabaseView) -> None:
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
            db.scrub(one_line(str(exc.orig), sentences=False)),
        )
