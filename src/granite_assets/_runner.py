"""Running the bundled migrations against a target database (needs the ``db`` extra).

The no-op path, a database already at head, reads the version table once and compares it with
the history read from the manifest: no Alembic, no lock. Only when work is pending is the
migration lock taken, the version re-read under it, and Alembic run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, inspect
from sqlalchemy.exc import DBAPIError

from granite_assets import _locking
from granite_assets._errors import (
    DatabaseAheadError,
    DatabaseBehindError,
    InvalidVersionTableError,
    MigrationFailedError,
)
from granite_assets._failures import aftermath, in_bookkeeping, revision_failed, sentence, unknown_revision
from granite_assets._history import VERSION_TABLE, History, Revision, load_history
from granite_assets._target import Database, Target, connect, resolve
from granite_assets._urls import is_async, parse_url

logger = logging.getLogger("granite_assets.migrations")

_SELECT_VERSION = f"SELECT version_num FROM {VERSION_TABLE}"


def stored_revision(connection: Connection, db: Database, *, keep_transaction: bool) -> str | None:
    """The revision recorded in the version table; ``None`` when it is missing or empty.

    The table is read straight away: a missing table costs one failed SELECT, not an extra
    existence query on every call. PostgreSQL aborts a transaction on any failed statement, so
    in a transaction that must survive (the caller's) its existence is checked first.
    """
    postgresql = connection.dialect.name == "postgresql"
    if keep_transaction and postgresql and not inspect(connection).has_table(VERSION_TABLE):
        return None
    try:
        rows = connection.exec_driver_sql(_SELECT_VERSION).fetchall()
    except DBAPIError as exc:
        missing = _missing_table(exc)
        if missing is None and not keep_transaction:  # a driver we cannot read errors of: ask
            connection.rollback()
            missing = not inspect(connection).has_table(VERSION_TABLE)
        if not missing:
            raise MigrationFailedError(
                f"Could not read {VERSION_TABLE} on {db.where}: {sentence(db.scrub(str(exc.orig)))}", None
            ) from None
        if not keep_transaction and connection.in_transaction():
            connection.rollback()
        return None
    if len(rows) > 1:
        found = ", ".join(sorted(str(r[0]) for r in rows))
        raise InvalidVersionTableError(
            f"{VERSION_TABLE} on {db.where} holds {len(rows)} rows ({found}); granite-assets keeps "
            "exactly one. Delete the rows that are not the database's real revision."
        )
    return str(rows[0][0]) if rows else None


_MYSQL_NO_SUCH_TABLE = 1146
# SQLSTATE for "no such table": PostgreSQL's undefined_table, and MySQL's (and ODBC's) 42S02.
_NO_SUCH_TABLE_STATES = {"42P01", "42S02"}


def _missing_table(exc: DBAPIError) -> bool | None:
    """Tell whether ``exc`` says the table does not exist; ``None`` when the driver is unknown."""
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(code, str):
        return code in _NO_SUCH_TABLE_STATES
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0] == _MYSQL_NO_SUCH_TABLE
    if "no such table" in str(orig):
        return True
    return None


def pending(history: History, current: str | None, db: Database) -> tuple[Revision, ...]:
    """The revisions to apply after ``current``; refuses a revision this release lacks."""
    if current is not None and not history.knows(current):
        raise DatabaseAheadError(
            f"The database {db.where} is at granite-assets revision {current}, which this "
            f"release does not ship (its newest is {history.head}). The database is newer than "
            "this granite-assets: upgrade the granite-assets package (after an application "
            "rollback, roll forward, or downgrade the database with the newer release first).",
            revision=current,
        )
    return history.after(current)


def read_revision(db: Database) -> str | None:
    """The revision of ``db``, read on the caller's connection or on one of our own."""
    if db.connection is not None:
        return stored_revision(db.connection, db, keep_transaction=True)
    with connect(db) as connection:
        return stored_revision(connection, db, keep_transaction=False)


def current_revision(target: Target, lock_timeout: float) -> str | None:
    """The database's revision, read from granite-assets' version table only."""
    with resolve(target, lock_timeout) as db:
        return read_revision(db)


def check_up_to_date(directory: Path, target: Target, lock_timeout: float) -> str | None:
    """Return the head revision when the database is at it, else raise."""
    history = load_history(directory)
    with resolve(target, lock_timeout) as db:
        current = read_revision(db)
        todo = pending(history, current, db)
    if todo:
        names = ", ".join(f"{r.revision} ({r.message})" for r in todo)
        raise DatabaseBehindError(
            f"The database {db.where} is at revision {current or 'none'}; "
            f"{len(todo)} granite-assets revision(s) are pending: {names}. "
            "Run granite_assets.migrations.upgrade_to_head() (or `granite-assets db upgrade`).",
            current=current,
            pending=[r.revision for r in todo],
        )
    return current


def upgrade(directory: Path, target: Target, lock_timeout: float) -> str | None:
    """Bring the database to head; return the revision it is at."""
    history = load_history(directory)
    with resolve(target, lock_timeout) as db:
        if db.connection is not None:
            return migrate_on_callers_connection(directory, db, db.connection, lock_timeout, "head")
        return upgrade_database(directory, db, history, lock_timeout)


def upgrade_database(directory: Path, db: Database, history: History, lock_timeout: float) -> str | None:
    """Upgrade a database reached through an engine: the no-op path first, the lock only if needed."""
    with connect(db) as connection:
        use_autocommit(connection, on=True)
        current = stored_revision(connection, db, keep_transaction=False)
        if not pending(history, current, db):
            return current
        return migrate_locked(directory, db, connection, lock_timeout, "head")


def use_autocommit(connection: Connection, *, on: bool) -> None:
    """On PostgreSQL, run our own reads and lock calls outside transactions, or stop doing so.

    There every transaction costs a BEGIN and a ROLLBACK round trip of its own, which would
    double the cost of the no-op path; the setting is only a flag on the driver's connection,
    and the pool restores the connection's level when it is returned. Alembic always runs with
    the normal level, so each revision keeps its own transaction.
    """
    if connection.dialect.name != "postgresql":
        return
    wanted = "AUTOCOMMIT" if on else connection.default_isolation_level
    if (
        connection.get_execution_options().get("isolation_level", connection.default_isolation_level)
        == wanted
    ):
        return
    if connection.in_transaction():
        connection.rollback()
    connection.execution_options(isolation_level=wanted)


def downgrade(directory: Path, target: Target, revision: str, lock_timeout: float) -> str | None:
    """Step the database down to ``revision`` (or ``"base"``) under the migration lock."""
    history = load_history(directory)
    if revision != "base" and not history.knows(revision):
        raise unknown_revision(history, revision)
    with resolve(target, lock_timeout) as db:
        if db.connection is not None:
            return migrate_on_callers_connection(directory, db, db.connection, lock_timeout, revision)
        with connect(db) as connection:
            return migrate_locked(directory, db, connection, lock_timeout, revision)


def migrate_locked(
    directory: Path, db: Database, connection: Connection, lock_timeout: float, destination: str
) -> str | None:
    """Take the migration lock on our own ``connection``, re-read the revision, run what is left.

    The lock is session-level and taken on the connection that migrates: it outlives the
    per-revision commits, is released when done, and dies with the session if the process does.
    """
    if connection.in_transaction():
        connection.rollback()
    if connection.dialect.name == "sqlite":
        with _locking.sqlite_write_lock(connection, db, lock_timeout):
            result = migrate(directory, db, connection, destination, keep_transaction=True)
            connection.commit()
            return result
    use_autocommit(connection, on=True)
    lock = _locking.lock_for(connection, transactional=False)
    with _locking.holding(lock, connection, lock_timeout, db.where):
        try:
            return migrate(directory, db, connection, destination, keep_transaction=False)
        except BaseException:
            if connection.in_transaction():
                connection.rollback()  # so that releasing the lock can run
            raise


def migrate_on_callers_connection(
    directory: Path, db: Database, connection: Connection, lock_timeout: float, destination: str
) -> str | None:
    """Migrate inside the caller's transaction, beginning one if none is open; commit nothing."""
    if connection.dialect.name == "sqlite":
        with _locking.sqlite_write_lock(connection, db, lock_timeout, callers=True):
            return migrate(directory, db, connection, destination, keep_transaction=True)
    if not connection.in_transaction():
        connection.begin()
    lock = _locking.lock_for(connection, transactional=True)
    with _locking.holding(lock, connection, lock_timeout, db.where):
        return migrate(directory, db, connection, destination, keep_transaction=True)


def migrate(
    directory: Path, db: Database, connection: Connection, destination: str, *, keep_transaction: bool
) -> str | None:
    """Run Alembic to ``destination`` unless the database, re-read under the lock, is there."""
    history = load_history(directory)
    current = stored_revision(connection, db, keep_transaction=keep_transaction)
    if destination == "head":
        todo = pending(history, current, db)
        if not todo:
            return current
        run: Callable[..., None] = _alembic_command("upgrade")
        target_revision: str | None = history.head
    else:
        pending(history, current, db)  # refuses a database that is ahead of this release
        keep = _count_through(history, None if destination == "base" else destination)
        todo = tuple(reversed(history.revisions[keep : _count_through(history, current)]))
        if not todo:
            return current
        run = _alembic_command("downgrade")
        target_revision = None if destination == "base" else destination
    if not keep_transaction:
        if connection.in_transaction():
            connection.rollback()  # hand Alembic a connection with no transaction open
        use_autocommit(connection, on=False)  # each revision in a transaction of its own
    config = alembic_config(directory, connection)
    try:
        run(config, destination)
    except Exception as exc:
        done = len(config.attributes.get("granite_assets_steps", []))
        failed = todo[done] if done < len(todo) and not in_bookkeeping(exc) else None
        if done == 0:
            reached = current
        else:
            reached = todo[done - 1].revision if destination == "head" else todo[done - 1].down_revision
        verb = "upgrade" if destination == "head" else "downgrade"
        left = aftermath(db, connection, verb, before=current, reached=reached, failed=failed)
        raise revision_failed(db, failed, exc, left) from exc
    if not keep_transaction:
        if connection.in_transaction():
            connection.commit()
        use_autocommit(connection, on=True)
    return target_revision


def _count_through(history: History, revision: str | None) -> int:
    """How many revisions, from the first, lead up to and include ``revision``."""
    return 0 if revision is None else len(history.revisions) - len(history.after(revision))


def _alembic_command(name: str) -> Callable[..., None]:
    from alembic import command

    fn: Callable[..., None] = getattr(command, name)
    return fn


def alembic_config(directory: Path, connection: Connection | None = None, **attributes: Any) -> Any:
    """An in-memory Alembic configuration for ``directory``; reads no ini, configures no logging."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(directory).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    config.attributes.update(attributes)
    return config


def offline_sql(directory: Path, url_or_dialect: str | URL, revision_range: str, *, downgrade: bool) -> str:
    """The SQL script for ``revision_range`` in the dialect of ``url_or_dialect``."""
    import io

    url = parse_url(
        url_or_dialect
        if isinstance(url_or_dialect, URL) or "://" in url_or_dialect
        else f"{url_or_dialect}://"
    )
    is_async(url)  # refuses an unknown dialect
    history = load_history(directory)
    for revision in revision_range.split(":"):
        if revision not in {"base", "head"} and not history.knows(revision):
            raise unknown_revision(history, revision)
    dialect_only = URL.create(url.drivername)  # no credentials can reach the script
    buffer = io.StringIO()
    config = alembic_config(directory, granite_assets_offline_url=dialect_only.render_as_string())
    config.output_buffer = buffer
    _alembic_command("downgrade" if downgrade else "upgrade")(config, revision_range, sql=True)
    return buffer.getvalue()
