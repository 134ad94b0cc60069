"""The exceptions granite-assets raises; importable without the ``db`` extra."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The db extra's own packages, with its lower bounds (a test keeps them equal to pyproject.toml's):
# this works however granite-assets was installed, while "granite-assets[db]" from the package
# index finds an unrelated project of the same name until this one is published there.
INSTALL_HINT = 'pip install "alembic>=1.13.0" "sqlalchemy>=2.0.30"'


#: Where users import the exceptions from, and so the module their tracebacks should name.
PUBLIC_MODULE = "granite_assets.migrations"


class MigrationError(Exception):
    """Base class of every error raised while managing granite-assets' tables.

    Every message names the database by its URL with the password hidden.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__ == __name__:  # this module's exceptions, not a subclass of a user's
            cls.__module__ = PUBLIC_MODULE

    def __reduce__(self) -> tuple[Any, ...]:
        # Unpickle without calling __init__, whose arguments differ from one subclass to the next
        # (the default would call cls(*args) and miss e.g. DatabaseAheadError's revision).
        return (_restore, (type(self), self.args, self.__dict__))


MigrationError.__module__ = PUBLIC_MODULE


def _restore(cls: type[MigrationError], args: tuple[Any, ...], state: dict[str, Any]) -> MigrationError:
    """Rebuild a pickled exception: its arguments and attributes, without running ``__init__``."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class MissingDependencyError(MigrationError, ImportError):
    """A package the database features need is not installed.

    Raised when the ``db`` extra (alembic, SQLAlchemy) or the URL's database driver is missing.
    It is also an :class:`ImportError`, so ``except ImportError`` catches it.
    """


class InvalidURLError(MigrationError, ValueError):
    """The database URL is malformed, names an unknown dialect, or cannot be used here.

    It is also a :class:`ValueError`.
    """


class AsyncDriverURLError(InvalidURLError):
    """An async-driver URL was passed to a synchronous function.

    Attributes:
        sync_url: The equivalent URL with a synchronous driver, password hidden.
    """

    def __init__(self, message: str, sync_url: str) -> None:
        super().__init__(message)
        self.sync_url = sync_url


class DatabaseConnectionError(MigrationError):
    """The database server could not be reached, or refused the login."""


class InvalidVersionTableError(MigrationError):
    """``granite_assets_alembic_version`` holds something granite-assets never writes.

    For example several rows, when granite-assets keeps exactly one.
    """


class DatabaseAheadError(MigrationError):
    """The database holds a revision this release of granite-assets does not ship, and this call cannot go on.

    This happens after an application rollback, or during a rolling update: a newer
    granite-assets upgraded the database. Upgrades and start-up checks go on when the database
    records that every newer revision is backward compatible; otherwise, and for every downgrade,
    this is raised. Roll forward, or downgrade the database with the newer release first.

    Attributes:
        revision: The revision found in the database, which this release does not ship.
        reason: ``"incompatible"`` when a newer revision is not backward compatible (``blocking``
            names the first), ``"unrecorded"`` when the database does not record whether the
            newer revisions are (a release without that record migrated it), or
            ``"compatible"`` when they all are but the call was a downgrade, which only the
            newer release can run.
        blocking: The first newer revision that is not backward compatible, when known.
    """

    def __init__(
        self, message: str, revision: str, reason: str = "unrecorded", blocking: str | None = None
    ) -> None:
        super().__init__(message)
        self.revision = revision
        self.reason = reason
        self.blocking = blocking


class DatabaseBehindError(MigrationError):
    """The database lacks revisions this release ships: run :func:`upgrade_to_head`.

    Attributes:
        current: The database's revision, or ``None`` when nothing was ever applied.
        pending: The revisions still to apply, oldest first.
    """

    def __init__(self, message: str, current: str | None, pending: Sequence[str]) -> None:
        super().__init__(message)
        self.current = current
        self.pending = tuple(pending)


class UnsupportedConnectionError(MigrationError):
    """A caller's connection cannot hold the migration safely in the state it is in; nothing was changed.

    Raised, only when revisions are pending, for a connection in a transaction on MariaDB or
    MySQL (DDL commits on its own there), on SQLite with ``PRAGMA foreign_keys`` on (table rebuilds
    need it off, which SQLite only allows outside a transaction), and on PostgreSQL at REPEATABLE
    READ or SERIALIZABLE when another process migrated the database after the transaction began;
    and, whatever is pending, on MariaDB and MySQL when granite-assets' tables were created or
    changed after the transaction began, which such a transaction cannot read.
    Pass the Engine instead, or roll back and call again in a new transaction.
    """


class MigrationLockTimeoutError(MigrationError):
    """Another process held the migration lock for longer than ``lock_timeout`` seconds."""


class MigrationFailedError(MigrationError):
    """A statement failed while migrating, for example inside a revision.

    Attributes:
        revision: The revision that failed, or ``None`` when the failure was in the
            version-table bookkeeping (for example, no permission to create tables).
    """

    def __init__(self, message: str, revision: str | None) -> None:
        super().__init__(message)
        self.revision = revision


class DDLLockTimeoutError(MigrationFailedError):
    """A revision waited longer than ``ddl_lock_timeout`` for a table lock, on every try.

    The bound is the call's, or the revision's own when it declares a longer one; the message
    gives the one it had.

    Other sessions held locks on granite-assets' tables (a long query, a transaction left open).
    Each wait was bounded, so the host's own queries on those tables never queued behind the
    revision for longer than that.

    Attributes:
        revision: The revision that could not get its lock.
        blockers: The sessions that held locks on granite-assets' tables, described (process
            id, state, age, the first line of their query), as far as the database tells.
        attempts: How many times the revision was tried.
        applied: The statements of the revision that are in the database nevertheless: on
            MariaDB and MySQL, whose DDL commits statement by statement, those that ran before the
            one that timed out (then the revision was not retried). Empty elsewhere.
    """

    def __init__(
        self,
        message: str,
        revision: str | None,
        blockers: Sequence[str] = (),
        attempts: int = 1,
        applied: Sequence[str] = (),
    ) -> None:
        super().__init__(message, revision)
        self.blockers = tuple(blockers)
        self.attempts = attempts
        self.applied = tuple(applied)


class InsufficientPrivilegeError(MigrationFailedError):
    """The database login may not do what the call needs: change the schema, or read granite-assets' tables.

    Deployments often migrate with one database user and run the application with another, which
    may read and write rows but not create or alter tables. Such a login can check the schema
    (:func:`check_up_to_date`, :func:`current_revision`) and run an upgrade that finds nothing to
    do; an upgrade with revisions pending is refused by the database, and this says so, with what
    the refusal left behind. Run the upgrade as the migration user instead.

    Raised too when the login may not read granite-assets' version table (or, on PostgreSQL, use
    the schema it is in): ``granite-assets db grants`` prints what to grant.

    Attributes:
        revision: The revision that was refused, or ``None`` when the refusal came from the
            version-table bookkeeping or a read.
        login: The database user whose privileges the server checked, as the server names it
            (``app`` on PostgreSQL, ``app@%`` on MariaDB), when known.
        statement: The first line of the statement the database refused, when known.
    """

    def __init__(
        self,
        message: str,
        revision: str | None = None,
        login: str | None = None,
        statement: str | None = None,
    ) -> None:
        super().__init__(message, revision)
        self.login = login
        self.statement = statement


class UnknownRevisionError(MigrationError, ValueError):
    """A revision named by the caller is not one this release ships."""
