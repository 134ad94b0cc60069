"""What an older release may know about revisions newer than its own: the compatibility record.

A revision file declares ``backward_compatible = True`` when every release that worked with the
database before it keeps working after it (a new table, a new nullable column). The release that applies
revisions records, in :data:`COMPATIBILITY_TABLE`, one row per revision the database holds: its
id, its parent and that flag. The rows change in the same transaction as the version row, one
revision at a time, and are rebuilt under the migration lock whenever they disagree with it.

The table is made by the first release that ships a backward-compatible revision: until then
no revision is, and a database without the table reads as "not recorded", which older releases
treat as incompatible, as they should. So a release without such revisions adds no table.

An older release that finds the database at a revision it does not ship follows the rows from
that revision back to its own head: when every revision on the way is backward compatible, the
schema still serves it (the newest revision that is not, which the rows give, is at or before
its head). A database without rows for the newer revisions, or whose history leaves this
release's elsewhere, is treated as incompatible.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Boolean, Column, Connection, MetaData, Row, String, Table, delete, insert, select
from sqlalchemy.exc import DBAPIError

from granite_assets.migrations._backends import backend_for
from granite_assets.migrations._history import History, Revision
from granite_assets.migrations._isolation import in_autocommit
from granite_assets.migrations._messages import one_line
from granite_assets.migrations._names import COMPATIBILITY_TABLE, logger
from granite_assets.migrations._version_table import has_table

_table = Table(
    COMPATIBILITY_TABLE,
    MetaData(),
    Column("revision", String(32), primary_key=True),
    Column("down_revision", String(32), nullable=True),
    Column("backward_compatible", Boolean(create_constraint=False), nullable=False),
)


@dataclass(frozen=True)
class Ahead:
    """What the record says of a database at a revision this release does not ship.

    Attributes:
        revision: The database's revision.
        newer: The revisions after this release's head, up to ``revision``, oldest first; empty
            when the record does not say.
        reason: ``None`` when every newer revision is backward compatible; ``"incompatible"``
            when one is not (``blocking`` names the first); ``"unrecorded"`` when the database
            does not say what the newer revisions are.
        blocking: The first newer revision that is not backward compatible.
        compatible: Whether each of ``newer`` is backward compatible, in the same order.
    """

    revision: str
    newer: tuple[str, ...]
    reason: Literal["incompatible", "unrecorded"] | None
    blocking: str | None = None
    compatible: tuple[bool, ...] = ()


def ensure(connection: Connection, history: History, current: str | None) -> bool:
    """Make the record's rows match the revisions up to ``current``; tell whether it is kept.

    The table is created when this release ships a backward-compatible revision. Runs under the
    migration lock, before any revision; in the connection's transaction when one is open, else
    in one of its own.
    """
    if not any(r.backward_compatible for r in history.revisions) and not _visible(connection):
        return False
    if connection.in_transaction():
        _ensure(connection, history, current)
    else:
        with connection.begin():
            _ensure(connection, history, current)
    return True


def _visible(connection: Connection) -> bool:
    """Tell whether the record's table exists, as far as this login may see.

    MariaDB refuses to describe a table the login has no privilege on, whether or not it
    exists; such a login (the application's, say) cannot keep the record, and its migration is
    refused at its first change, whose statement then says more than this look would.
    """
    try:
        return has_table(connection, COMPATIBILITY_TABLE)
    except DBAPIError as exc:
        if backend_for(connection.dialect.name).insufficient_privilege.matches(exc.orig):
            return False
        raise


def _ensure(connection: Connection, history: History, current: str | None) -> None:
    _table.create(connection, checkfirst=True)
    if current is not None and not history.knows(current):
        return  # a newer release's rows: not ours to rewrite
    wanted = {r.revision: _row(r) for r in history.up_to(current)}
    found = {row["revision"]: dict(row) for row in connection.execute(select(_table)).mappings()}
    if found != wanted:
        connection.execute(delete(_table))
        if wanted:
            connection.execute(insert(_table), list(wanted.values()))


def record_step(connection: Connection, revision: Revision, *, applied: bool) -> None:
    """Record that ``revision`` was applied (or reverted), in the step's transaction."""
    connection.execute(delete(_table).where(_table.c.revision == revision.revision))
    if applied:
        connection.execute(insert(_table), [_row(revision)])


def examine(connection: Connection, history: History, current: str) -> Ahead:
    """Read the record of a database at ``current``, a revision this release does not ship."""
    rows = _read(connection)
    if rows is None:
        return Ahead(current, (), "unrecorded")
    newer: list[str] = []
    step: str | None = current
    while step is not None and not history.knows(step):
        row = rows.get(step)
        if row is None or step in newer:  # missing, or a loop in damaged rows
            return Ahead(current, (), "unrecorded")
        newer.append(step)
        step = row.down_revision
    if step != history.head:  # the database's history leaves this release's before its head
        return Ahead(current, (), "unrecorded")
    newer.reverse()
    blocking = next((rev for rev in newer if not rows[rev].backward_compatible), None)
    flags = tuple(bool(rows[rev].backward_compatible) for rev in newer)
    return Ahead(current, tuple(newer), "incompatible" if blocking else None, blocking, flags)


def _read(connection: Connection) -> dict[str, Row[Any]] | None:
    """The record's rows by revision; ``None`` when there is no record, or this login may not read it.

    A role granted SELECT on granite-assets' tables before a newer release created this one
    cannot read it: the database then says nothing this release can trust, as if unrecorded.
    """
    try:
        with _savepoint_where_a_failure_aborts(connection):
            if not has_table(connection, COMPATIBILITY_TABLE):
                return None
            return {row.revision: row for row in connection.execute(select(_table))}
    except DBAPIError as exc:
        lines = str(exc.orig).strip().splitlines()
        reason = one_line(lines[0], sentences=False) if lines else type(exc.orig).__name__
        logger.warning(
            "Could not read %s (%s), so the revisions newer than this release are treated as not "
            "backward compatible. Grant this database user SELECT on %s.",
            COMPATIBILITY_TABLE,
            reason,
            COMPATIBILITY_TABLE,
        )
        return None


@contextmanager
def _savepoint_where_a_failure_aborts(connection: Connection) -> Iterator[None]:
    """Keep a failed read from aborting a transaction (the caller's, say) where it would (PostgreSQL)."""
    outside_transaction = not connection.in_transaction() or in_autocommit(connection)
    if not backend_for(connection.dialect.name).failed_statement_aborts_transaction or outside_transaction:
        yield
        return
    with connection.begin_nested():
        yield


def _row(revision: Revision) -> dict[str, object]:
    return {
        "revision": revision.revision,
        "down_revision": revision.down_revision,
        "backward_compatible": revision.backward_compatible,
    }
