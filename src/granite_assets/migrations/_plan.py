"""Deciding what a call does: the revisions to run, in order, and where the database ends up.

A database at a revision this release does not ship is "ahead": it is left alone when the
compatibility record says every newer revision is backward compatible, and refused otherwise.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from pathlib import Path

from sqlalchemy import Connection

from granite_assets.migrations import _compatibility
from granite_assets.migrations._database import Database
from granite_assets.migrations._errors import DatabaseAheadError
from granite_assets.migrations._failures import behind_error
from granite_assets.migrations._history import History, Revision
from granite_assets.migrations._names import logger
from granite_assets.migrations._progress import ProgressCallback
from granite_assets.migrations._timeouts import DEFAULT_LIMITS, DDLLimits


@dataclass(frozen=True)
class Job:
    """One call's work: which environment, to which revision, waiting how long for the lock."""

    directory: Path
    history: History
    destination: str  # "head", "base" or a revision id
    lock_timeout: float
    limits: DDLLimits = DEFAULT_LIMITS
    _: KW_ONLY  # the options below, by name only: two booleans and a callback are easy to swap
    upward: bool = False  # up to ``destination``, never past it; else down to it (unless it is "head")
    on_progress: ProgressCallback | None = None


@dataclass(frozen=True)
class Plan:
    """The revisions a call runs, in the order it runs them, and where the database ends up."""

    steps: tuple[Revision, ...]
    destination: str | None
    upgrade: bool


def pending(
    history: History, current: str | None, db: Database, connection: Connection
) -> tuple[Revision, ...]:
    """The revisions to apply after ``current``.

    A database at a revision this release does not ship is left alone when its record says
    every newer revision is backward compatible (a warning names them); otherwise it is refused.
    """
    if current is None or history.knows(current):
        return history.after(current)
    ahead = _compatibility.examine(connection, history, current)
    if ahead.reason is not None:
        raise ahead_error(history, ahead, db)
    logger.warning(
        "The database %s is at granite-assets revision %s, newer than this release's %s; the newer "
        "revisions (%s) are backward compatible, so this release works with it unchanged.",
        db.where,
        current,
        history.head,
        ", ".join(ahead.newer),
    )
    return ()


def ahead_error(
    history: History, ahead: _compatibility.Ahead, db: Database, *, downgrading: bool = False
) -> DatabaseAheadError:
    """The error for a database whose newer revisions this release cannot work with (or revert)."""
    where = (
        f"The database {db.where} is at granite-assets revision {ahead.revision}, which this release "
        f"does not ship (its newest is {history.head})"
    )
    # Reverting the blocking revision is enough: the compatible ones before it serve this release,
    # and reverting them too would drop their columns and the data written to them.
    keep = _parent_of_blocking(ahead) or history.head
    ways_out = (
        "roll forward to a release that ships it, or first downgrade the database to "
        f"{keep} with the newer release: `granite-assets db downgrade {keep}`"
    )
    if downgrading:
        message = (
            f"{where}: only a release that ships {ahead.revision} holds the downgrade() that reverts "
            f"it. Nothing was changed. Downgrade with the newer release (`granite-assets db downgrade "
            f"{history.head}` run with it installed), then with this one if you need to go further."
        )
    elif ahead.reason == "incompatible":
        message = (
            f"{where}, and the newer revision {ahead.blocking} is not backward compatible: this "
            f"release's code may not work with the schema. Upgrade the granite-assets package: {ways_out}."
        )
    else:
        message = (
            f"{where}, and nothing this release can read says the newer revisions are backward "
            "compatible (a release that keeps no such record migrated it, or the record is "
            "missing, unreadable or does not lead back to this release's revisions), so they are "
            "treated as if they were not. The database is newer than this granite-assets: "
            f"upgrade the granite-assets package; that is, {ways_out}."
        )
    return DatabaseAheadError(
        message, revision=ahead.revision, reason=ahead.reason or "compatible", blocking=ahead.blocking
    )


def _parent_of_blocking(ahead: _compatibility.Ahead) -> str | None:
    """The newer revision just before the first incompatible one; ``None`` when that is the first."""
    if ahead.blocking is None or ahead.blocking not in ahead.newer:
        return None
    index = ahead.newer.index(ahead.blocking)
    return ahead.newer[index - 1] if index else None


def plan(
    history: History,
    current: str | None,
    destination: str,
    db: Database,
    connection: Connection,
    *,
    upward: bool = False,
) -> Plan:
    """What it takes to bring a database at ``current`` to ``destination`` (``head``, ``base`` or an id).

    ``upward`` says the call only goes up: to ``destination`` and no further.
    """
    if destination == "head":
        steps = pending(history, current, db, connection)
        return Plan(steps, history.head if steps else current, upgrade=True)
    if upward:
        return upgrade_plan(history, current, destination, db, connection)
    if current is not None and not history.knows(current):
        raise ahead_error(history, _compatibility.examine(connection, history, current), db, downgrading=True)
    return downgrade_plan(history, current, destination, db)


def downgrade_plan(history: History, current: str | None, destination: str, db: Database) -> Plan:
    """The steps down from ``current``, a revision this release ships (or none), to ``destination``."""
    target = None if destination == "base" else destination
    keep, have = history.count_through(target), history.count_through(current)
    if keep > have:
        raise behind_error(
            f"The database {db.where} is at revision {current or 'none'}"
            f"{'' if current else ' (granite-assets never migrated it)'}, below {destination}: "
            "there is nothing to downgrade. To move it up, run `granite-assets db upgrade`.",
            current=current,
            pending=history.revisions[have:keep],
        )
    steps = tuple(reversed(history.revisions[keep:have]))
    return Plan(steps, target if steps else current, upgrade=False)


def upgrade_plan(
    history: History, current: str | None, destination: str, db: Database, connection: Connection
) -> Plan:
    """The steps up from ``current`` to ``destination``; a database already past it is refused.

    Going down is a downgrade's work, which destroys data: an upgrade never does it on its way.
    """
    target = None if destination == "base" else destination
    if current is not None and not history.knows(current):
        ahead = _compatibility.examine(connection, history, current)
        if ahead.reason is not None:
            raise ahead_error(history, ahead, db)
        have = len(history.revisions) + 1  # past every revision this release ships
    else:
        have = history.count_through(current)
    keep = history.count_through(target)
    if keep < have:
        raise behind_error(
            f"The database {db.where} is at revision {current}, above {destination}: there is nothing to "
            f"upgrade. To go down to {destination}, use downgrade: "
            f"`granite-assets db downgrade {destination}`.",
            current=current,
            pending=(),
        )
    steps = history.revisions[have:keep]
    return Plan(steps, target if steps else current, upgrade=True)
