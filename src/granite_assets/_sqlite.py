"""SQLite's foreign keys during a migration, and its one migration transaction's commit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from granite_assets._errors import MigrationFailedError, UnsupportedConnectionError
from granite_assets._target import Database


@contextmanager
def sqlite_foreign_keys_off(connection: Connection, db: Database) -> Iterator[bool]:
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


def foreign_key_violations(connection: Connection) -> Counter[tuple[str, ...]]:
    """Count the rows that break a foreign key, by table, referred table and key."""
    rows = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    return Counter((str(r[0]), str(r[2]), str(r[3])) for r in rows)


def refuse_new_violations(connection: Connection, db: Database, before: Counter[tuple[str, ...]]) -> None:
    """Fail the migration, before its commit, if it left rows breaking foreign keys that did not before."""
    new = foreign_key_violations(connection) - before
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


def commit_sqlite(connection: Connection, db: Database) -> None:
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


def is_busy(exc: BaseException) -> bool:
    """Tell whether ``exc`` is SQLite's "database is locked": another connection holds the write lock."""
    return isinstance(exc, DBAPIError) and "database is locked" in str(exc.orig)


def cannot_wait_in_callers_transaction(db: Database) -> UnsupportedConnectionError:
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
