"""How messages are worded: driver errors folded onto one line, durations in words.

Plain Python, importable without SQLAlchemy: the command line's option parser uses it too.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Who reads the messages of this call: a Python caller, or an operator at the command line, who
# cannot pass an Engine or call to_sync_url(), and names the lock timeout --lock-timeout.
_at_the_command_line: ContextVar[bool] = ContextVar("granite_assets_command_line", default=False)


@contextmanager
def read_at_the_command_line() -> Iterator[None]:
    """Word the advice of every message raised in the block for a command-line user."""
    token = _at_the_command_line.set(True)
    try:
        yield
    finally:
        _at_the_command_line.reset(token)


def advice(python: str, command_line: str) -> str:
    """The advice that fits the reader: ``python`` for a caller of the API, else ``command_line``."""
    return command_line if _at_the_command_line.get() else python


def lock_timeout_name() -> str:
    """What the reader calls the lock timeout, for advice to raise it."""
    return advice("lock_timeout", "--lock-timeout")


def one_line(text: str, *, sentences: bool = True) -> str:
    """Fold a message (a driver's, say) onto one line that ends like a sentence, each of its parts too.

    A line that starts in lower case continues the one before it (libpq wraps its sentences);
    PostgreSQL's caret line, which points into the statement above it, means nothing on one line.
    Without ``sentences``, the lines are only joined, for a message quoted inside another one.
    """
    if not sentences:
        return " ".join(text.split())
    parts: list[str] = []
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if not line or set(line) <= {"^"}:
            continue
        if parts and line[0].islower() and not parts[-1].endswith((".", "?", "!")):
            parts[-1] = f"{parts[-1]} {line}"
        else:
            parts.append(line)
    return " ".join(part if part.endswith((".", "?", "!", ":")) else f"{part}." for part in parts)


def driver_text(orig: BaseException | None) -> str:
    """A driver error's own words: pg8000 gives the server's fields as a dict, whose M is the message."""
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], dict) and "M" in args[0]:
        return str(args[0]["M"])
    return str(orig)


def first_line(text: str | None, width: int = 100) -> str:
    """The first line of ``text`` (a session's query, say), cut to ``width`` characters."""
    line = next((" ".join(part.split()) for part in (text or "").splitlines() if part.strip()), "")
    return line if len(line) <= width else line[: width - 3] + "..."


def grants_command(login: str | None) -> str:
    """The command that prints what ``login`` needs on granite-assets' tables (``NAME`` when unknown)."""
    return f"granite-assets db grants --role {shlex.quote(login) if login else 'NAME'}"


def seconds(count: float) -> str:
    """``count`` seconds, in words: "1 second", "2.5 seconds"."""
    return "1 second" if count == 1 else f"{count:g} seconds"
