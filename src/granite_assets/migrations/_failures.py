"""The messages of migration failures: what went wrong, and what the database holds now."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from granite_assets.migrations._errors import (
    DatabaseBehindError,
    InsufficientPrivilegeError,
    MigrationFailedError,
    UnknownRevisionError,
)
from granite_assets.migrations._messages import advice, driver_text, first_line, grants_command
from granite_assets.migrations._names import COMPATIBILITY_TABLE, VERSION_TABLE
from granite_assets.migrations._passwords import hide_passwords

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from granite_assets.migrations._database import Database
    from granite_assets.migrations._history import History, Revision


_BOOKKEEPING_TABLES = (VERSION_TABLE, COMPATIBILITY_TABLE)
_READS_AND_SETTINGS = frozenset({"SELECT", "SET", "SHOW"})


def in_bookkeeping(exc: Exception) -> bool:
    """Tell whether ``exc`` came from a statement on granite-assets' own records, not from a revision."""
    return names_bookkeeping(str(exc.statement or "") if isinstance(exc, DBAPIError) else "")


def names_bookkeeping(statement: str) -> bool:
    """Tell whether ``statement`` works on granite-assets' own records, not on a revision's tables."""
    return any(table in statement for table in _BOOKKEEPING_TABLES)


def changes_nothing(statement: str) -> bool:
    """Tell whether ``statement`` leaves nothing in the database: a read, or a session setting.

    A revision that declares its own limits reads and sets them in its step, before its first DDL.
    """
    words = statement.split(None, 1)
    return not words or words[0].upper() in _READS_AND_SETTINGS


def revision_failed(
    db: Database,
    failed: Revision | None,
    exc: Exception,
    left: str,
    *,
    connection: Connection | None = None,
    verb: str = "upgrade",
    what: str | None = None,
) -> MigrationFailedError:
    """The error for a statement that failed while migrating ``db`` on ``connection``.

    ``what`` names what failed when no revision did (by default, the version-table bookkeeping).
    """
    reason = db.explain(exc)
    if failed:
        what = f"granite-assets revision {failed.revision} ({failed.message})"
    elif what is None:
        what = "granite-assets' version-table bookkeeping"
    if refused_privilege(db, exc):
        # The statement is named apart, so the server's first line says enough (libpq's next ones
        # repeat the statement).
        said = db.explain(first_line(driver_text(exc.orig) if isinstance(exc, DBAPIError) else str(exc), 500))
        return _may_not_migrate(
            db, failed, exc, what=what, reason=said, left=left, connection=connection, verb=verb
        )
    hint = f" {db.backend.permission_hint}" if _is_permission(reason) else ""
    return MigrationFailedError(
        f"{what} failed on {db.where}: {reason}{hint} {left}",
        revision=failed.revision if failed else None,
    )


def refused_privilege(db: Database, exc: BaseException) -> bool:
    """Tell whether the database refused a statement because the login lacks a privilege for it."""
    return isinstance(exc, DBAPIError) and bool(db.backend.insufficient_privilege.matches(exc.orig))


def login_of(db: Database, connection: Connection | None) -> str | None:
    """The login whose privileges the server checked: asked on a connection of ours, else the URL's user.

    A caller's transaction may be aborted by the refusal, and is left alone.
    """
    if connection is not None and db.connection is None:
        try:
            name = db.backend.login_name(connection)
        except Exception:  # noqa: BLE001 - naming the login is a courtesy; the refusal is the error
            name = None
        if name:
            return name
    return db.url.username or None


def _may_not_migrate(
    db: Database,
    failed: Revision | None,
    exc: Exception,
    *,
    what: str,
    reason: str,
    left: str,
    connection: Connection | None,
    verb: str,
) -> InsufficientPrivilegeError:
    """The error for a migration the database refused because the login may not change the schema."""
    login = login_of(db, connection)
    who = f"the login {login}" if login else "this login"
    statement = first_line(db.scrub(str(getattr(exc, "statement", None) or "")), 100) or None
    refused = f"{db.backend.title} refused `{statement}`, saying" if statement else f"{db.backend.title} said"
    check = advice("check_up_to_date()", "`granite-assets db check`")
    return InsufficientPrivilegeError(
        f"{what} failed on {db.where}: {who} may not change the schema. {refused}: {reason} {left} "
        f"Run the {verb} as the migration user, the owner of granite-assets' tables (`granite-assets db "
        f"{verb}` in the deploy job, with that user's URL), and have the application's processes only "
        f"check the schema ({check}); or, if {who} is meant to migrate, grant it "
        f"{db.backend.migrator_privileges}.",
        revision=failed.revision if failed else None,
        login=login,
        statement=statement,
    )


def unreadable_version_table(
    db: Database, connection: Connection | None, reason: str
) -> InsufficientPrivilegeError:
    """The error for a login the database does not let read granite-assets' version table."""
    login = login_of(db, connection)
    who = f"The login {login}" if login else "This login"
    unseen = (
        " If granite-assets never migrated this database, the table may not exist yet: a login without "
        "privileges on it cannot tell. Then run `granite-assets db upgrade` as the migration user first."
        if db.backend.refuses_unseen_tables
        else ""
    )
    return InsufficientPrivilegeError(
        f"{who} may not read {VERSION_TABLE} on {db.where}: {reason}{unseen} Grant it what the application "
        f"needs on granite-assets' tables: `{grants_command(login)}` prints the statements, to run as the "
        "migration user or an administrator.",
        login=login,
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
