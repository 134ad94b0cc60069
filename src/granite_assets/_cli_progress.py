r"""How ``granite-assets db upgrade`` and ``downgrade`` show a migration's progress on standard error.

First the plan, then each revision as it starts and as it ends, with its time, then the total:

.. code-block:: text

    Applying 2 revisions: 0002 (add x), 0003 (add y)
    [1/2] Applying revision 0002 (add x) ...
    [1/2] Applied revision 0002 (add x) in 0.31 s
    [2/2] Applying revision 0003 (add y) ...
    [2/2] Applied revision 0003 (add y) in 2.05 s
    Applied 2 revisions in 2.40 s

On a terminal the running revision is one line whose elapsed time a thread redraws (``\r``)
every half second, replaced by its result line when it ends; in a log there are plain lines only.
Log records printed meanwhile (a retry's warning) clear the live line first, so lines never mix.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TextIO

from granite_assets import migrations
from granite_assets.migrations import MigrationProgress

REDRAW_SECONDS = 0.5
CLEAR_LINE = "\r\x1b[K"


class ProgressPrinter:
    """The ``on_progress`` callback of the command line, and the way its log records are printed."""

    def __init__(self, stream: TextIO, *, live: bool) -> None:
        self.stream = stream
        self.live = live
        self.lock = threading.Lock()
        self.began: float | None = None
        self.count = 0
        self.direction = "upgrade"
        self.running: tuple[str, float] | None = None  # the live line's text, and when its revision began
        self.shown = False  # a live line is on the terminal, with no newline after it
        self.stop = threading.Event()
        self.ticker: threading.Thread | None = None

    def __call__(self, event: MigrationProgress) -> None:
        """Print what ``event`` says: the plan before the first revision, then the revision."""
        now = time.monotonic()
        what = f"[{event.step}/{event.steps}] {{}} revision {event.revision} ({event.message})"
        upgrade = event.direction == "upgrade"
        with self.lock:
            if self.began is None:
                self.began, self.direction = now, event.direction
                self._line(plan_line(event))
            if event.status == "started":
                self._start(what.format("Applying" if upgrade else "Reverting"), now)
            elif event.status == "finished":
                self.count += 1
                done = what.format("Applied" if upgrade else "Reverted")
                self._end(f"{done} in {event.elapsed or 0:.2f} s")
            else:
                self._end(f"{what.format('Failed')} after {event.elapsed or 0:.2f} s")

    def total(self) -> None:
        """Print how many revisions the run applied, and how long it took, if it applied any."""
        if self.began is None:
            return
        verb = "Applied" if self.direction == "upgrade" else "Reverted"
        count = f"{self.count} revision{'' if self.count == 1 else 's'}"
        with self.lock:
            self._line(f"{verb} {count} in {time.monotonic() - self.began:.2f} s")

    def close(self) -> None:
        """Stop the redrawing thread and clear a live line left (by Ctrl-C, or an error)."""
        self.stop.set()
        if self.ticker is not None:
            self.ticker.join()
        with self.lock:
            if self.shown:
                self.stream.write(CLEAR_LINE)
                self.stream.flush()
            self.running, self.shown = None, False

    def print_record(self, text: str) -> None:
        """Print a log record's text on a line of its own, the live line redrawn under it."""
        with self.lock:
            self._line(text)
            self._redraw()

    def _start(self, text: str, now: float) -> None:
        self.running = (text, now)
        if not self.live:
            self._line(f"{text} ...")
            return
        self._redraw()
        if self.ticker is None:
            self.ticker = threading.Thread(target=self._tick, name="granite-assets-progress", daemon=True)
            self.ticker.start()

    def _end(self, text: str) -> None:
        self.running = None
        self._line(text)

    def _line(self, text: str) -> None:
        """Write ``text`` as a whole line, over the live line if one is shown."""
        self.stream.write(f"{CLEAR_LINE if self.shown else ''}{text}\n")
        self.stream.flush()
        self.shown = False

    def _redraw(self) -> None:
        if self.running is None or not self.live:
            return
        text, began = self.running
        self.stream.write(f"{CLEAR_LINE}{text} {time.monotonic() - began:.1f} s")
        self.stream.flush()
        self.shown = True

    def _tick(self) -> None:
        while not self.stop.wait(REDRAW_SECONDS):
            with self.lock:
                self._redraw()


def plan_line(event: MigrationProgress) -> str:
    """The run's plan, worked out from its first event and the release's (linear) history."""
    ordered = list(migrations.revisions())
    if event.direction == "downgrade":
        ordered.reverse()
    ids = [r.revision for r in ordered]
    first = ids.index(event.revision) - (event.step - 1) if event.revision in ids else 0
    steps = ordered[first : first + event.steps]
    listed = ", ".join(f"{r.revision} ({r.message})" for r in steps)
    verb = "Applying" if event.direction == "upgrade" else "Reverting"
    return f"{verb} {event.steps} revision{'' if event.steps == 1 else 's'}: {listed}"


class PrinterHandler(logging.Handler):
    """Prints log records through the progress printer, leaving out the per-revision records it shows."""

    def __init__(self, printer: ProgressPrinter) -> None:
        super().__init__()
        self.printer = printer

    def emit(self, record: logging.LogRecord) -> None:
        """Print ``record``, unless it is one revision's INFO record, which the printer has shown."""
        if hasattr(record, "granite_assets_revision"):
            return
        try:
            self.printer.print_record(self.format(record))
        except Exception:  # noqa: BLE001 - logging's own convention: never raise from a handler
            self.handleError(record)
