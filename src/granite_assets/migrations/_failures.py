"""The messages of migration failures: what went wrong, and what the database holds now."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from granite_assets.migrations._errors import DatabaseBehindError, MigrationFailedError, UnknownRevisionError
from granite_assets.migrations._names import COMPATIBILITY_TABLE, VERSION_TABLE
from granite_assets.migrations._passwords import hide_passwords

if TYPE_CHECKING:
    from granite_assets.migrations._database import Database
    from granite_assets.migrations._history import History, Revision


_BOOKKEEPING_TABLES = (VERSION_TABLE, COMPATIBILITY_TABLE)


def in_bookkeeping(exc: Exception) -> bool:
    """Tell whether ``exc`` came from a statement on granite-assets' own records, not from a revision."""
    return names_bookkeeping(str(exc.statement or "") if isinstance(exc, DBAPIError) else "")


def names_bookkeeping(statement: str) -> bool:
    """Tell whether ``statement`` works on granite-assets' own records, not on a revision's tables."""
    return any(table in statement for table in _BOOKKEEPING_TABLES)


def revision_failed(db: Database, failed: Revision | None, exc: Exception, left: str) -> MigrationFailedError:
    """The error for a statement that failed while migrating ``db``."""
    reason = db.explain(exc)
    what = (
        f"granite-assets revision {failed.revision} ({failed.message})"
        if failed
        else "granite-assets' version-table bookkeeping"
    )
    hint = f" {db.backend.permission_hint}" if _is_permission(reason) else ""
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


def behind_error(message: str, *, current: str | None, pending: Iterable[Revision]) -> DatabaseBehindError:
    """The error for a database that lacks ``pending``, the revisions a call needs it to have."""
    return DatabaseBehindError(message, current=current, pending=[r.revision for r in pending])
