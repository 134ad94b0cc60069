"""The messages of migration failures: what went wrong, and what the database holds now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from granite_assets._errors import MigrationFailedError, UnknownRevisionError
from granite_assets._history import VERSION_TABLE, History, Revision
from granite_assets._passwords import hide_passwords

if TYPE_CHECKING:
    from granite_assets._target import Database


_BOOKKEEPING_TABLES = (VERSION_TABLE, "granite_assets_compatibility")


def in_bookkeeping(exc: Exception) -> bool:
    """Tell whether ``exc`` came from a statement on granite-assets' own records, not from a revision."""
    statement = str(exc.statement or "") if isinstance(exc, DBAPIError) else ""
    return any(table in statement for table in _BOOKKEEPING_TABLES)


def aftermath(
    db: Database,
    connection: Connection,
    verb: str,
    *,
    before: str | None,
    reached: str | None,
    failed: Revision | None,
) -> str:
    """Say what a failed call left behind: that depends on how the backend treats DDL."""
    backend = connection.dialect.name
    if db.connection is not None and backend not in {"mysql", "mariadb"}:
        return f"Nothing was committed: roll back your transaction, fix the cause and run the {verb} again."
    if backend == "sqlite":
        return (
            f"The whole {verb} was rolled back (SQLite migrates in one transaction): the database is "
            f"still at revision {before or 'none'}. Fix the cause and run the {verb} again."
        )
    where = f"The database is at revision {reached or 'none'}, the last one that completed"
    if backend == "postgresql":
        return f"{where}; the failed step was rolled back. Fix the cause and run the {verb} again."
    if failed is None:  # a version-table statement: it either happened or did not
        return f"{where}. Fix the cause and run the {verb} again."
    dbms = "MySQL and MariaDB" if backend in {"mysql", "mariadb"} else backend
    return (
        f"{where}. {dbms} cannot roll back DDL: whatever revision {failed.revision} changed before it "
        f"failed is still there; undo it by hand before you run the {verb} again."
    )


def revision_failed(db: Database, failed: Revision | None, exc: Exception, left: str) -> MigrationFailedError:
    """The error for a statement that failed while migrating ``db``."""
    reason = db.explain(exc)
    what = (
        f"granite-assets revision {failed.revision} ({failed.message})"
        if failed
        else "granite-assets' version-table bookkeeping"
    )
    hint = ""
    if _is_permission(reason):
        hint = (
            " Check that this process may write the database file and its folder."
            if db.url.get_backend_name() == "sqlite"
            else " Check that the database user may create and alter tables."
        )
    return MigrationFailedError(
        f"{what} failed on {db.where}: {reason}{hint} {left}",
        revision=failed.revision if failed else None,
    )


def _is_permission(reason: str) -> bool:
    lowered = reason.lower()
    denials = ("permission denied", "command denied", "access denied", "readonly database")
    return any(denial in lowered for denial in denials)


def unknown_revision(history: History, revision: str) -> UnknownRevisionError:
    """The error for a revision the caller named that this release does not ship."""
    return UnknownRevisionError(
        f"Revision {hide_passwords(repr(revision))} is not one granite-assets ships; "
        f"choose one of: base, {', '.join(r.revision for r in history.revisions)}."
    )
