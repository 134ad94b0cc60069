"""A host revision's requirement on granite-assets' revision (see ``migrations.require_revision``).

It runs inside the host's own Alembic migration, on the host's connection and in its transaction,
so it only reads, and reads in a way that leaves that transaction usable on every backend.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy.engine.mock import MockConnection

from granite_assets.migrations._database import Database
from granite_assets.migrations._errors import UnknownRevisionError
from granite_assets.migrations._failures import behind_error
from granite_assets.migrations._history import load_history
from granite_assets.migrations._names import logger
from granite_assets.migrations._version_table import stored_revision


def require_revision(directory: Path, connection: Connection | MockConnection, revision: str) -> str | None:
    """Return the database's granite-assets revision when it is ``revision`` or later; raise otherwise."""
    history = load_history(directory)
    if not isinstance(revision, str) or not history.knows(revision):
        raise UnknownRevisionError(
            f"require_revision() was given {revision!r}, which is not a revision granite-assets ships; "
            f"name one of: {', '.join(r.revision for r in history.revisions)} (a fixed id, so that "
            "the requirement means the same with every later release)."
        )
    if isinstance(connection, MockConnection):
        logger.warning(
            "Offline mode (--sql): require_revision(%r) cannot read the database, so it checks "
            "nothing. Apply granite-assets' SQL (`granite-assets db upgrade --sql`) before this script.",
            revision,
        )
        return None
    if not isinstance(connection, Connection):
        raise TypeError(
            f"require_revision() needs the SQLAlchemy Connection the migration runs on (op.get_bind() "
            f"in a revision), not {type(connection).__name__}."
        )
    db = Database(connection.engine.url, connection.engine, connection)
    current = stored_revision(connection, db, keep_transaction=True)
    if current is not None and (not history.knows(current) or history.reaches(current, revision)):
        # A revision this release does not ship was written by a newer one, whose history holds
        # every revision of this one: the requirement is met.
        return current
    needed = history.get(revision)
    where = (
        f"is at granite-assets revision {current}"
        if current is not None
        else "has no granite-assets revision (granite-assets never migrated it)"
    )
    raise behind_error(
        f"This migration needs granite-assets revision {revision} ({needed.message}) or later, but the "
        f"database {db.where} {where}. Run `granite-assets db upgrade` (or "
        "granite_assets.migrations.upgrade_to_head()) first, then run this migration again.",
        current=current,
        pending=history.after(current),
    )
