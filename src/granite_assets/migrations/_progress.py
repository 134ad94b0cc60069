"""What a running migration reports about each revision: to the caller's callback and to the log.

Plain Python, importable without SQLAlchemy or Alembic: the public module re-exports
:class:`MigrationProgress`, and the command line builds its output on it. A :class:`Tracker` is
made only once there is work to do, so a database already at head pays nothing for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from granite_assets.migrations._names import logger

Direction: TypeAlias = Literal["upgrade", "downgrade"]
Status: TypeAlias = Literal["started", "finished", "failed"]

#: The ``extra`` fields of the INFO record logged for each applied or reverted revision, each
#: one a :class:`MigrationProgress` attribute of the same name after the prefix.
LOG_FIELDS: Final = (
    "granite_assets_revision",
    "granite_assets_message",
    "granite_assets_direction",
    "granite_assets_step",
    "granite_assets_steps",
    "granite_assets_elapsed",
)


@dataclass(frozen=True)
class MigrationProgress:
    """One revision of a migration starting, finishing or failing, as ``on_progress`` receives it.

    .. versionadded:: 0.2.0
    """

    #: The revision id, such as ``"0002"``.
    revision: str
    #: The revision's message, its one-line description.
    message: str
    #: ``"upgrade"`` when the revision is being applied, ``"downgrade"`` when it is being reverted.
    direction: Direction
    #: Its place in the run, from 1 to :attr:`steps`.
    step: int
    #: How many revisions the run applies (or reverts) in all.
    steps: int
    #: ``"started"``, ``"finished"`` or ``"failed"``.
    status: Status
    #: Seconds since the revision started, for ``"finished"`` and ``"failed"``; ``None`` for ``"started"``.
    elapsed: float | None = None


#: The type of the ``on_progress`` callback.
ProgressCallback: TypeAlias = Callable[[MigrationProgress], object]


class ProgressCallbackError(Exception):
    """Carries an exception the caller's ``on_progress`` raised, to be raised unchanged once cleaned up."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class Tracker:
    """Times each revision of one call, reports it to the callback, and logs each one done.

    One tracker serves every try of a call: a revision retried after a table-lock timeout keeps its
    step number, and reports ``"failed"`` and then ``"started"`` again.
    """

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.direction: Direction = "upgrade"
        self.order: dict[str, tuple[int, str]] = {}
        self.running: tuple[str, float] | None = None

    def plan(self, revisions: Sequence[tuple[str, str]], *, upgrade: bool) -> None:
        """Take the run's revisions, ``(id, message)``, in order; a retry running fewer keeps the numbers."""
        self.direction = "upgrade" if upgrade else "downgrade"
        if not all(revision in self.order for revision, _ in revisions):
            self.order = {revision: (n, message) for n, (revision, message) in enumerate(revisions, 1)}

    def started(self, revision: str) -> None:
        """Report that ``revision`` is about to run; an exception of the callback's stops the run first."""
        self._report(revision, "started", None)
        self.running = (revision, time.perf_counter())

    def finished(self) -> None:
        """Log and report that the running revision is done (committed, where each revision commits)."""
        if self.running is None:
            return
        revision, began = self.running
        self.running = None
        elapsed = time.perf_counter() - began
        step, message = self.order[revision]
        verb = "Applied" if self.direction == "upgrade" else "Reverted"
        values = (revision, message, self.direction, step, len(self.order), elapsed)
        logger.info(
            "%s revision %s (%s) in %.2f s",
            verb,
            revision,
            message,
            elapsed,
            extra=dict(zip(LOG_FIELDS, values, strict=True)),
        )
        self._report(revision, "finished", elapsed)

    def failed(self) -> None:
        """Report that the running revision failed; the callback's own exception is logged, not raised.

        The migration's error is the one that matters then, and it is on its way up already.
        """
        if self.running is None:
            return
        revision, began = self.running
        self.running = None
        try:
            self._report(revision, "failed", time.perf_counter() - began)
        except ProgressCallbackError as exc:
            logger.error(
                "The on_progress callback raised on failed revision %s.", revision, exc_info=exc.error
            )

    def _report(self, revision: str, status: Status, elapsed: float | None) -> None:
        if self.callback is None:
            return
        step, message = self.order.get(revision, (len(self.order) + 1, ""))
        event = MigrationProgress(revision, message, self.direction, step, len(self.order), status, elapsed)
        try:
            self.callback(event)
        except Exception as exc:
            raise ProgressCallbackError(exc) from exc
