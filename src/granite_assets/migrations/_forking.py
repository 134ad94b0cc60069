"""Sessions a forked child must leave alone.

A child forked while granite-assets holds a connection (inside ``migration_lock()``, or while
another thread migrates) inherits its socket. Whatever the child then sends on it, a lock's
release or the driver's goodbye when the connection is closed or collected, reaches the
parent's session: the server releases the parent's lock, or ends its session. So in the child,
every such connection's socket is pointed at ``/dev/null`` as soon as it is forked: the child can
close it without a word reaching the server, and the parent's session goes on as it was.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection

# The driver connections in use by this process, by id, with how many blocks use each (nested
# blocks on an engine with one shared connection use it twice); emptied in a forked child.
_in_use: dict[int, tuple[Any, int]] = {}
_registry = threading.Lock()


@contextmanager
def in_use(connection: Connection) -> Iterator[None]:
    """Mark ``connection`` as this process's own for the block: a child forked meanwhile disowns it."""
    raw = connection.connection.dbapi_connection
    key = id(raw)
    with _registry:
        _in_use[key] = (raw, _in_use.get(key, (raw, 0))[1] + 1)
    try:
        yield
    finally:
        with _registry:
            _, count = _in_use.get(key, (raw, 1))
            if count > 1:
                _in_use[key] = (raw, count - 1)
            else:
                _in_use.pop(key, None)


def _socket_of(raw: Any) -> int | None:
    """The file descriptor of a driver connection's socket: psycopg 2 and 3, PyMySQL, pg8000.

    pg8000's ``_sock`` is a buffered file over its socket, ``_usock``, with no descriptor of its
    own: each candidate that cannot tell is passed over.
    """
    for candidate in (raw, getattr(raw, "_usock", None), getattr(raw, "_sock", None)):
        fileno = getattr(candidate, "fileno", None)
        if not callable(fileno):
            continue
        try:
            fd = fileno()
        except (OSError, ValueError):  # closed, or a wrapper without a descriptor
            continue
        if isinstance(fd, int) and fd >= 0:
            return fd
    return None


def _disown_all() -> None:
    """In a forked child: point every inherited session's socket at /dev/null."""
    connections = [raw for raw, _ in _in_use.values()]
    _in_use.clear()
    global _registry  # noqa: PLW0603 - another thread may have held it at the fork
    _registry = threading.Lock()
    for raw in connections:
        fd = _socket_of(raw)
        if fd is None:
            continue
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)


os.register_at_fork(after_in_child=_disown_all)
