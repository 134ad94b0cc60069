"""Apply granite-assets' bundled database migrations to a host application's database.

granite-assets ships its Alembic revisions inside the package and records the revision a
database is at in its own table, ``granite_assets_alembic_version``. The host's
``alembic_version`` and its own revisions are never read or written.

This module imports without the ``db`` extra; its functions then raise
:class:`MissingDependencyError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from granite_assets.migrations import _timeouts
from granite_assets.migrations._errors import (
    INSTALL_HINT,
    AsyncDriverURLError,
    DatabaseAheadError,
    DatabaseBehindError,
    DatabaseConnectionError,
    DDLLockTimeoutError,
    InsufficientPrivilegeError,
    InvalidURLError,
    InvalidVersionTableError,
    MigrationError,
    MigrationFailedError,
    MigrationLockTimeoutError,
    MissingDependencyError,
    UnknownRevisionError,
    UnsupportedConnectionError,
)
from granite_assets.migrations._history import Revision, bundled_directory, load_history
from granite_assets.migrations._host_filter import include_name
from granite_assets.migrations._names import VERSION_TABLE as _VERSION_TABLE
from granite_assets.migrations._progress import MigrationProgress, ProgressCallback
from granite_assets.migrations._timeouts import DDLLimits

if TYPE_CHECKING:
    from sqlalchemy import URL, Connection, Engine
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = [
    "DEFAULT_DDL_LOCK_TIMEOUT",
    "DEFAULT_DDL_RETRIES",
    "DEFAULT_LOCK_TIMEOUT",
    "VERSION_TABLE",
    "AsyncDriverURLError",
    "DDLLockTimeoutError",
    "DatabaseAheadError",
    "DatabaseBehindError",
    "DatabaseConnectionError",
    "InsufficientPrivilegeError",
    "InvalidURLError",
    "InvalidVersionTableError",
    "MigrationError",
    "MigrationFailedError",
    "MigrationLockTimeoutError",
    "MigrationProgress",
    "MissingDependencyError",
    "ProgressCallback",
    "Revision",
    "UnknownRevisionError",
    "UnsupportedConnectionError",
    "check_up_to_date",
    "current_revision",
    "downgrade",
    "downgrade_sql",
    "grants_sql",
    "head_revision",
    "include_name",
    "migration_lock",
    "require_revision",
    "revisions",
    "stamp",
    "to_sync_url",
    "upgrade_sql",
    "upgrade_to",
    "upgrade_to_head",
    "upgrade_to_head_async",
]

#: Seconds to wait, by default, for another process's migration to finish.
DEFAULT_LOCK_TIMEOUT: Final = 300.0

#: Seconds each statement of a revision may wait, by default, for a table lock another session
#: holds: the longest a host's queries on that table queue behind it (see :ref:`live-database`).
DEFAULT_DDL_LOCK_TIMEOUT: Final = _timeouts.DEFAULT_DDL_LOCK_TIMEOUT

#: How many more times, by default, a revision that timed out on a table lock is tried.
DEFAULT_DDL_RETRIES: Final = _timeouts.DEFAULT_DDL_RETRIES

#: The table where granite-assets records the revision a database is at.
VERSION_TABLE: Final = _VERSION_TABLE


@contextmanager
def _db_extra() -> Iterator[None]:
    """Turn a missing alembic or SQLAlchemy into an error that says how to install them."""
    try:
        yield
    except ImportError as exc:
        if isinstance(exc, MissingDependencyError) or exc.name not in {"sqlalchemy", "alembic", "greenlet"}:
            raise
        raise MissingDependencyError(
            f"granite-assets' database features need {exc.name}, which is not installed. "
            f"Install the db extra: {INSTALL_HINT}"
        ) from None


def upgrade_to_head(
    target: str | URL | Engine | Connection,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ddl_lock_timeout: float = DEFAULT_DDL_LOCK_TIMEOUT,
    ddl_retries: int = DEFAULT_DDL_RETRIES,
    statement_timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> str | None:
    """Apply every bundled revision the database lacks, and return the revision it is now at.

    On a database granite-assets has never touched, this creates
    ``granite_assets_alembic_version`` and stamps it. On a database already at head it reads that
    table once and returns: it is cheap and safe to call on every deployment and every start-up,
    from many processes at once, since concurrent callers wait for one migration lock.

    Args:
        target: A synchronous SQLAlchemy URL (string or :class:`~sqlalchemy.engine.URL`), an
            :class:`~sqlalchemy.engine.Engine` (used, never disposed), or a
            :class:`~sqlalchemy.engine.Connection`. A connection with no transaction open (or in
            AUTOCOMMIT) is migrated as its engine is, each revision committed, and handed back
            as it came. In a transaction of the caller's on PostgreSQL or SQLite, pending
            revisions run inside it and nothing is committed: commit to keep the changes; the
            migration lock is held until that transaction ends. On MariaDB and MySQL, where DDL
            commits on its own, a transaction with revisions pending is refused (see
            :doc:`migrations`).
        lock_timeout: Seconds to wait for a migration running in another process (or another
            thread of this one); ``math.inf`` waits without limit.
        ddl_lock_timeout: Seconds each statement of a revision may wait for a table lock that
            another session holds (a long query, a transaction left open): the longest your
            application's queries on that table can queue behind it. A revision that times out
            is rolled back and tried again; ``math.inf`` waits without limit. A revision that
            declares it needs longer gets its own while it runs. See :ref:`live-database`.
        ddl_retries: How many more times such a revision is tried, after a growing pause.
        statement_timeout: Seconds each statement may run (PostgreSQL, MariaDB), or longer for a
            revision that declares it needs longer; ``None`` leaves the session's own setting.
        on_progress: Called with a :class:`MigrationProgress` when each revision starts, finishes
            (with its time) or fails, in the thread that migrates; never on a database at head.
            "finished" comes once the revision is committed (on SQLite, and in a transaction of
            the caller's, once it is applied in the transaction, committed at the end). A
            revision retried after a table-lock timeout reports "failed", then "started" again.
            An exception the callback raises on "started" or "finished" stops the run between
            two revisions and is raised as it is, the revisions before it committed (on SQLite,
            none: the run is one transaction); one raised on "failed" is logged, and the
            migration's error raised. See :ref:`progress`.

    Returns:
        The revision the database is at: the head of the bundled history, or a newer revision
        whose record says it is backward compatible.

    Raises:
        InvalidURLError: The URL is malformed, names an unknown dialect or an in-memory SQLite
            database, or (MariaDB, MySQL) names no database.
        AsyncDriverURLError: The URL names an async driver; see :func:`to_sync_url` and
            :func:`upgrade_to_head_async`.
        MissingDependencyError: The ``db`` extra or the URL's driver is not installed.
        DatabaseConnectionError: The server cannot be reached or refuses the login.
        DatabaseAheadError: The database holds a revision this release does not ship, and does
            not record that every newer revision is backward compatible. When it does, the call
            changes nothing, logs a warning, and returns the database's revision.
        UnsupportedConnectionError: A ``Connection`` that cannot hold the migration was given
            while revisions are pending (see :doc:`migrations`); nothing was changed.
        InvalidVersionTableError: The version table holds more than one row or an empty
            revision, or is another tool's.
        MigrationLockTimeoutError: Another process held the lock for ``lock_timeout`` seconds.
        DDLLockTimeoutError: A revision waited longer than ``ddl_lock_timeout`` (or its own,
            longer, one) for a table lock on every try; the error names the sessions that held it.
        MigrationFailedError: A revision (or the version-table bookkeeping) failed.
        ValueError: A timeout or ``ddl_retries`` is not one described above.
    """
    limits = DDLLimits.checked(ddl_lock_timeout, ddl_retries, statement_timeout)
    with _db_extra():
        from granite_assets.migrations import _runner

        return _runner.upgrade(bundled_directory(), target, lock_timeout, limits, on_progress=on_progress)


def upgrade_to(
    target: str | URL | Engine | Connection,
    revision: str,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ddl_lock_timeout: float = DEFAULT_DDL_LOCK_TIMEOUT,
    ddl_retries: int = DEFAULT_DDL_RETRIES,
    statement_timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> str | None:
    """Apply the bundled revisions up to ``revision`` and no further; return the revision reached.

    The way to roll a fleet forward one revision at a time: each release's code is deployed
    against a schema one step newer. It takes the same lock, keeps the same compatibility record
    and raises the same errors as :func:`upgrade_to_head`; on a database at ``revision`` it reads
    one row and returns.

    Args:
        target: As for :func:`upgrade_to_head`.
        revision: A revision id this release ships (``"head"`` is :func:`upgrade_to_head`).
        lock_timeout: As for :func:`upgrade_to_head`.
        ddl_lock_timeout: As for :func:`upgrade_to_head`.
        ddl_retries: As for :func:`upgrade_to_head`.
        statement_timeout: As for :func:`upgrade_to_head`.
        on_progress: As for :func:`upgrade_to_head`.

    Returns:
        The revision the database is at: ``revision``.

    Raises:
        UnknownRevisionError: ``revision`` is not one this release ships; nothing was read.
        DatabaseBehindError: The database is already above ``revision``, which only
            :func:`downgrade` goes down to; nothing was changed (``pending`` is empty).
        MigrationError: As :func:`upgrade_to_head` does.

    .. versionadded:: 0.2.0
    """
    limits = DDLLimits.checked(ddl_lock_timeout, ddl_retries, statement_timeout)
    with _db_extra():
        from granite_assets.migrations import _runner

        return _runner.upgrade_to(
            bundled_directory(), target, revision, lock_timeout, limits, on_progress=on_progress
        )


def stamp(
    target: str | URL | Engine | Connection, revision: str, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
) -> str | None:
    """Record ``revision`` as the one the database is at, without running any revision.

    For adopting a database whose tables were created some other way, or recording a revision
    applied by hand (after a failure on MariaDB, say). It runs under the migration lock, in one
    transaction, and keeps the compatibility record consistent: stamping up records the
    revisions in between as applied, stamping down forgets those above. It checks nothing
    against the schema: the tables must already be as ``revision`` leaves them.

    Args:
        target: As for :func:`upgrade_to_head`; in a transaction of the caller's, nothing is
            committed.
        revision: A revision id this release ships, or ``"base"`` to empty the version table.
        lock_timeout: Seconds to wait for a migration running in another process.

    Returns:
        The revision the database was at before (``None`` for none); the change is logged at
        ``INFO`` level.

    Raises:
        UnknownRevisionError: ``revision`` is not one this release ships; nothing was read.
        MigrationError: For a bad URL, an unreachable database, a lock held too long, or a
            statement that failed, as :func:`upgrade_to_head`.

    .. versionadded:: 0.2.0
    """
    with _db_extra():
        from granite_assets.migrations import _runner

        return _runner.stamp(bundled_directory(), target, revision, lock_timeout)


async def upgrade_to_head_async(
    target: str | URL | AsyncEngine | AsyncConnection,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ddl_lock_timeout: float = DEFAULT_DDL_LOCK_TIMEOUT,
    ddl_retries: int = DEFAULT_DDL_RETRIES,
    statement_timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> str | None:
    """Do what :func:`upgrade_to_head` does, for hosts on async drivers.

    Safe to await inside a running event loop, such as a FastAPI lifespan: it drives the
    migration through SQLAlchemy's ``run_sync`` bridge and never calls ``asyncio.run()``.

    Args:
        target: An :class:`~sqlalchemy.ext.asyncio.AsyncEngine` (used, never disposed), an
            :class:`~sqlalchemy.ext.asyncio.AsyncConnection` (treated as a sync connection is:
            committed unless it has a transaction open), or a URL. An async URL gets an engine
            of its own, disposed after; a sync URL runs :func:`upgrade_to_head` in a worker
            thread.
        lock_timeout: Seconds to wait for a migration running in another process.
        ddl_lock_timeout: As for :func:`upgrade_to_head`.
        ddl_retries: As for :func:`upgrade_to_head`.
        statement_timeout: As for :func:`upgrade_to_head`.
        on_progress: As for :func:`upgrade_to_head`; called synchronously (inside SQLAlchemy's
            greenlet bridge, or a worker thread for a sync URL), so it must not await.

    Returns:
        The revision the database is at.

    Raises:
        MigrationError: As :func:`upgrade_to_head` does.
    """
    limits = DDLLimits.checked(ddl_lock_timeout, ddl_retries, statement_timeout)
    with _db_extra():
        from granite_assets.migrations import _async

        return await _async.upgrade_async(
            bundled_directory(), target, lock_timeout, limits, on_progress=on_progress
        )


def current_revision(target: str | URL | Engine | Connection) -> str | None:
    """Return the revision the database is at, or ``None`` if granite-assets never touched it.

    Reads ``granite_assets_alembic_version`` only, never the host's ``alembic_version``.

    Raises:
        InvalidVersionTableError: The version table holds more than one row or an empty
            revision, or is another tool's.
        MigrationError: For a bad URL or an unreachable database, as :func:`upgrade_to_head`.
    """
    with _db_extra():
        from granite_assets.migrations import _runner

        return _runner.current_revision(target, DEFAULT_LOCK_TIMEOUT)


def head_revision() -> str | None:
    """Return the newest revision this release ships, without touching any database."""
    return load_history(bundled_directory()).head


def revisions() -> tuple[Revision, ...]:
    """Return the revisions this release ships, oldest first."""
    return load_history(bundled_directory()).revisions


def check_up_to_date(target: str | URL | Engine | Connection) -> str | None:
    """Return the database's revision when it is at head; raise otherwise.

    Meant for a start-up guard in processes that must not run against a database whose
    migrations are pending (or that a newer release has migrated).

    Raises:
        DatabaseBehindError: Revisions are pending; the error lists them.
        DatabaseAheadError: The database holds a revision this release does not ship, and does
            not record that every newer revision is backward compatible (when it does, its
            revision is returned).
        MigrationError: For a bad URL or an unreachable database, as :func:`upgrade_to_head`.
    """
    with _db_extra():
        from granite_assets.migrations import _runner

        return _runner.check_up_to_date(bundled_directory(), target, DEFAULT_LOCK_TIMEOUT)


def downgrade(
    target: str | URL | Engine | Connection,
    revision: str,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ddl_lock_timeout: float = DEFAULT_DDL_LOCK_TIMEOUT,
    ddl_retries: int = DEFAULT_DDL_RETRIES,
    statement_timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> str | None:
    """Revert revisions until the database is at ``revision``, under the migration lock.

    Args:
        target: As for :func:`upgrade_to_head`.
        revision: A revision id this release ships, or ``"base"`` to revert every revision
            (the version table stays, empty).
        lock_timeout: Seconds to wait for a migration running in another process.
        ddl_lock_timeout: As for :func:`upgrade_to_head`.
        ddl_retries: As for :func:`upgrade_to_head`.
        statement_timeout: As for :func:`upgrade_to_head`.
        on_progress: As for :func:`upgrade_to_head`, with events whose ``direction`` is
            ``"downgrade"``.

    Returns:
        The revision the database is now at (``None`` for base).

    Raises:
        UnknownRevisionError: ``revision`` is not one this release ships.
        MigrationError: As :func:`upgrade_to_head` does.
    """
    limits = DDLLimits.checked(ddl_lock_timeout, ddl_retries, statement_timeout)
    with _db_extra():
        from granite_assets.migrations import _runner

        return _runner.downgrade(
            bundled_directory(), target, revision, lock_timeout, limits, on_progress=on_progress
        )


def upgrade_sql(url_or_dialect: str | URL, from_revision: str | None = None, revision: str = "head") -> str:
    """Return the SQL that upgrades a database from ``from_revision`` (or empty) to ``revision``.

    For database administrators who review SQL before it runs. Nothing connects to a database;
    only the URL's dialect is used, so ``"postgresql"`` or ``"mysql"`` is enough. The script
    creates and updates ``granite_assets_alembic_version`` and never mentions ``alembic_version``.
    It is empty when ``from_revision`` is ``revision`` already.

    Raises:
        InvalidURLError: ``url_or_dialect`` names no dialect SQLAlchemy knows.
        UnknownRevisionError: A revision named is not one this release ships.
        DatabaseBehindError: ``revision`` is below ``from_revision``: that is a downgrade.

    .. versionchanged:: 0.2.0
       ``revision``, to stop before head.
    """
    with _db_extra():
        from granite_assets.migrations import _runner

        return _runner.offline_sql(
            bundled_directory(), url_or_dialect, from_revision, revision, downgrade=False
        )


def downgrade_sql(url_or_dialect: str | URL, from_revision: str, revision: str) -> str:
    """Return the SQL that reverts a database from ``from_revision`` down to ``revision``.

    Offline SQL cannot read the database, so the starting revision must be named.

    Raises:
        InvalidURLError: ``url_or_dialect`` names no dialect SQLAlchemy knows.
        UnknownRevisionError: A revision named is not one this release ships.
    """
    with _db_extra():
        from granite_assets.migrations import _runner

        return _runner.offline_sql(
            bundled_directory(), url_or_dialect, from_revision, revision, downgrade=True
        )


def grants_sql(
    target: str | URL | Engine | Connection,
    role: str,
    *,
    owner: str | None = None,
    read_only: bool = False,
) -> str:
    """Return the SQL that gives a runtime login what it needs on granite-assets' tables, and no more.

    For deployments that migrate with one database user and run the application with another,
    which may not create or alter tables (see :ref:`two-users`). The role gets ``SELECT`` on
    granite-assets' own records (its version table), and ``SELECT``, ``INSERT``, ``UPDATE`` and
    ``DELETE`` on its other tables (``SELECT`` only with ``read_only``); it may then run
    :func:`check_up_to_date`, :func:`current_revision`, :func:`require_revision` and a
    :func:`upgrade_to_head` that finds nothing to do, and use the tables. The statements are
    returned, never run: run them as a superuser, or as the owner of the tables.

    - PostgreSQL: ``USAGE`` on the schema, a ``GRANT`` on each table, and ``ALTER DEFAULT
      PRIVILEGES`` for the tables the migration user creates later. Default privileges cannot be
      limited to names that start with ``granite_assets_``: they cover every table the migration
      user creates in that schema, and a comment in the script says so.
    - MariaDB and MySQL: a ``GRANT`` on each table. They have no default privileges, and grant
      nothing on a table that does not exist yet: run this again after an upgrade that adds one.

    Args:
        target: A database URL, ``Engine`` or ``Connection``, whose granite-assets tables are
            listed with ``SELECT`` statements alone (run it as the migration user, who may see
            them all); or a dialect's name (``"postgresql"``, ``"mysql"``), for the tables this
            release creates, without connecting.
        role: The login the application runs as, as the server names it: a role on PostgreSQL
            (quoted where it needs to be), ``NAME`` or ``NAME@HOST`` on MariaDB and MySQL.
        owner: PostgreSQL only: the migration user, whose future tables the default privileges
            cover. By default, the owner of granite-assets' version table, else the URL's login;
            given a dialect's name, the role that runs the statements.
        read_only: Grant ``SELECT`` only, on every table.

    Returns:
        The statements, one to a line (a long one over two), with ``--`` comments that say what
        they cover.

    Raises:
        ValueError: ``role`` is empty, ``PUBLIC``, longer than PostgreSQL allows, or the owner of
            the tables itself; or ``owner`` was given for MariaDB or MySQL.
        InvalidURLError: The database is SQLite, which has no logins, or one granite-assets
            writes no grants for.
        MigrationError: For a bad URL or an unreachable database, as :func:`upgrade_to_head`.
    """
    with _db_extra():
        from granite_assets.migrations import _grants

        return _grants.grants_sql(
            bundled_directory(),
            target,
            role,
            owner=owner,
            read_only=read_only,
            lock_timeout=DEFAULT_LOCK_TIMEOUT,
        )


def to_sync_url(url: str | URL) -> str:
    """Return ``url`` with its async driver swapped for a synchronous one.

    ``postgresql+asyncpg`` becomes ``postgresql+psycopg`` when psycopg 3 is installed and
    ``postgresql+psycopg2`` otherwise, ``postgresql+psycopg_async`` becomes
    ``postgresql+psycopg``, ``sqlite+aiosqlite`` becomes ``sqlite+pysqlite``, and
    ``mysql+aiomysql`` and ``mysql+asyncmy`` become ``mysql+pymysql``. From asyncpg, its URL
    options become libpq's (``ssl=require`` becomes ``sslmode=require``, ``timeout``
    becomes ``connect_timeout``), and those only asyncpg has (``prepared_statement_cache_size``,
    ``command_timeout``, ...) are dropped. A sync URL comes back unchanged. The password is
    kept, since the result is meant for :func:`upgrade_to_head`.
    """
    with _db_extra():
        from granite_assets.migrations import _urls

        return _urls.to_sync_url(url)


@contextmanager
def migration_lock(
    target: str | URL | Engine, *, name: str, timeout: float = DEFAULT_LOCK_TIMEOUT
) -> Iterator[None]:
    """Hold a cross-process lock of the host's own while the block runs its own Alembic upgrade.

    granite-assets serialises its own upgrade; this serialises the host's, so that replicas
    deploying at once run the host's revisions once, one process at a time::

        upgrade_to_head(url)
        with migration_lock(url, name="myapp"):
            command.upgrade(alembic_config, "head")

    The lock is held on a connection of its own (the host's ``env.py`` opens its own inside the
    block, unchanged), released when the block ends, and it dies with the process that holds it:

    - PostgreSQL: a session advisory lock with two keys, ``(1752134516, crc32(name))`` as signed
      32-bit integers, on a connection in AUTOCOMMIT. It needs a session of its own all along, so
      not PgBouncer in transaction pooling mode.
    - MariaDB and MySQL: ``GET_LOCK('granite_assets_host.<name>.<database>')`` (hashed past 64
      characters).
    - SQLite: ``fcntl.flock`` on a lock file beside the database file,
      ``<database file>.granite-assets-<name>.lock``, which is left in place. It serialises the
      processes of one machine; it is not available on Windows, and is not reliable for a database
      on a network share (which SQLite advises against anyway).

    None of these can be mistaken for granite-assets' own migration lock. Nesting the block for
    the same name and database (in the same thread, or in work the block hands to
    ``asyncio.to_thread`` or to a task it starts) takes nothing more: the inner block runs under the
    outer one's lock, which is released when the outer block ends. Another thread or process
    waits, a process forked inside the block included.

    Args:
        target: A synchronous SQLAlchemy URL (string or :class:`~sqlalchemy.engine.URL`) or an
            :class:`~sqlalchemy.engine.Engine`, of which one connection is borrowed for the block.
            A URL gets an engine of its own, disposed of after.
        name: The lock's name, such as the application's name: 1 to 64 letters, digits, ``_``,
            ``-`` and ``.``, beginning with a letter or a digit. Every process that migrates the
            same database must use the same name.
        timeout: Seconds to wait for another process holding the lock; ``math.inf`` waits
            without limit. The wait polls, so Ctrl-C interrupts it at once.

    Raises:
        ValueError: ``name`` or ``timeout`` is not one described above.
        TypeError: ``target`` is a Connection (pass ``connection.engine``) or something else.
        MigrationLockTimeoutError: Another process held the lock for ``timeout`` seconds; the
            message names the lock and says how to find its holder.
        MigrationError: For a bad URL or an unreachable database, as :func:`upgrade_to_head`.
    """
    with _db_extra():
        from granite_assets.migrations import _host_lock

    with _host_lock.migration_lock(target, name, timeout):
        yield


def require_revision(connection: Connection, revision: str) -> str | None:
    """Make sure granite-assets' tables are at ``revision`` or later before a host revision uses them.

    Call it first in a host revision that needs granite-assets' tables, such as one that adds a
    foreign key to one of them::

        def upgrade() -> None:
            require_revision(op.get_bind(), "0002")
            op.create_table(...)

    It only reads granite-assets' version table, inside the host's transaction, and leaves that
    transaction usable on every backend. A database at a revision this release does not ship
    (migrated by a newer release, whose history holds this one's) meets every requirement.

    Args:
        connection: The connection the host's migration runs on, ``op.get_bind()``. In offline
            mode (``alembic upgrade --sql``) there is no database to read: nothing is checked, a
            warning says so, and ``None`` is returned.
        revision: The granite-assets revision the host's migration needs, a fixed id this
            release ships (not ``"head"``, whose meaning changes with every release).

    Returns:
        The revision the database is at.

    Raises:
        DatabaseBehindError: The database is behind ``revision``, or granite-assets never migrated
            it; the message says to run ``granite-assets db upgrade`` (or :func:`upgrade_to_head`)
            first. Raised from a revision, it makes the host's upgrade fail before that revision's
            changes are committed, on the backends whose DDL is transactional.
        UnknownRevisionError: ``revision`` is not one this release ships.
        InvalidVersionTableError: The version table holds more than one row or an empty
            revision, or is another tool's.
    """
    with _db_extra():
        from granite_assets.migrations import _require

        return _require.require_revision(bundled_directory(), connection, revision)
