"""Reading the revision a database is at from granite-assets' version table, and only from it."""

from __future__ import annotations

from sqlalchemy import Connection, inspect
from sqlalchemy.exc import DBAPIError

from granite_assets.migrations._database import Database
from granite_assets.migrations._errors import (
    InvalidVersionTableError,
    MigrationFailedError,
    UnsupportedConnectionError,
)
from granite_assets.migrations._failures import refused_privilege, unreadable_version_table
from granite_assets.migrations._names import VERSION_TABLE

_SELECT_VERSION = f"SELECT version_num FROM {VERSION_TABLE}"


def stored_revision(connection: Connection, db: Database, *, keep_transaction: bool) -> str | None:
    """The revision recorded in the version table; ``None`` when it is missing or empty.

    The table is read straight away: a missing table costs one failed SELECT, not an extra
    existence query on every call. PostgreSQL aborts a transaction on any failed statement, so
    in a transaction that must survive (the caller's) its existence is checked first.
    """
    try:
        if keep_transaction and db.backend.failed_statement_aborts_transaction and not has_table(connection):
            _missing(connection, db)
            return None
        rows = connection.exec_driver_sql(_SELECT_VERSION).fetchall()
    except DBAPIError as exc:
        _unless_missing(connection, db, exc, keep_transaction=keep_transaction)
        _missing(connection, db)
        return None
    if len(rows) > 1:
        found = ", ".join(sorted(str(r[0]) for r in rows))
        raise InvalidVersionTableError(
            f"{VERSION_TABLE} on {db.where} holds {len(rows)} rows ({found}); granite-assets keeps "
            "exactly one. Delete the rows that are not the database's real revision."
        )
    if not rows:
        return None
    revision = rows[0][0]
    if revision is None or not str(revision).strip():
        raise InvalidVersionTableError(
            f"{VERSION_TABLE} on {db.where} holds an empty revision; granite-assets keeps the id of "
            "the revision the database is at. Check the database's tables against `granite-assets "
            "db history`, then put the right id in, or delete the row if none of its tables exist."
        )
    return str(revision)


def has_table(connection: Connection, name: str = VERSION_TABLE) -> bool:
    """Tell whether ``name`` exists, without a statement that could fail."""
    return bool(inspect(connection).has_table(name))


def _missing(connection: Connection, db: Database) -> None:
    """Accept that the version table is missing, unless the login only cannot see the schema it is in."""
    refusal = db.backend.unusable_schema(connection, db)
    if refusal is not None:
        raise refusal


def _unless_missing(connection: Connection, db: Database, exc: DBAPIError, *, keep_transaction: bool) -> None:
    """Return quietly when a failed read means the table is missing (no revision); raise otherwise."""
    reason = db.explain(exc)
    own = not keep_transaction
    backend = db.backend
    unreadable = backend.unreadable_database(db, reason)
    if unreadable is not None:
        raise unreadable from None
    if keep_transaction and backend.aborted_transaction.matches(exc.orig):
        raise MigrationFailedError(
            f"Could not read {VERSION_TABLE} on {db.where}: an earlier statement aborted the transaction "
            f"of the connection you passed ({reason}) Nothing was changed: roll it back, then call again.",
            None,
        ) from None
    if keep_transaction and backend.changed_since_snapshot.matches(exc.orig):
        raise UnsupportedConnectionError(
            f"granite-assets' tables on {db.where} were created or changed after your transaction "
            f"began (another process, or another connection of yours, migrated the database), and "
            f"{backend.title} will not show them to a transaction that began before. Nothing was changed: "
            "roll back your transaction and call again in a new one (or pass the Engine)."
        ) from None
    if backend.no_database_selected.matches(exc.orig):
        raise backend.no_database_named(db.where) from None
    missing = backend.no_such_table.matches(exc.orig)
    if missing is None and own:  # a driver whose errors we cannot read: ask
        connection.rollback()
        missing = not has_table(connection)
    if missing:
        if own and connection.in_transaction():
            connection.rollback()
        return
    if backend.no_such_column.matches(exc.orig):
        raise InvalidVersionTableError(
            f"{VERSION_TABLE} on {db.where} is not granite-assets' version table: "
            f"{_layout(connection, db, own=own, reason=reason)} "
            "granite-assets keeps one column, version_num. "
            "If another tool made this table, rename that tool's table or drop this one."
        ) from None
    if refused_privilege(db, exc):
        raise unreadable_version_table(db, connection if own else None, reason) from None
    raise MigrationFailedError(f"Could not read {VERSION_TABLE} on {db.where}: {reason}", None) from None


def _layout(connection: Connection, db: Database, *, own: bool, reason: str) -> str:
    """Say what the version table holds instead, as far as the connection can still ask."""
    if own or not db.backend.failed_statement_aborts_transaction:  # else the transaction is aborted now
        if own:
            connection.rollback()
        columns = [str(c["name"]) for c in inspect(connection).get_columns(VERSION_TABLE)]
        return f"its columns are {', '.join(columns)}."
    return reason
