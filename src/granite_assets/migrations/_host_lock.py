"""The lock a host holds around its own Alembic upgrade (:func:`granite_assets.migrations.migration_lock`).

granite-assets' own upgrade is serialised by its own lock; the host's upgrade, run by Alembic on
a connection of the host's ``env.py``, is not. This lock is named by the host and held on a
connection of its own while the host's upgrade runs inside the block:

- PostgreSQL: a session advisory lock with two keys (a namespace and the CRC-32 of the name),
  which never equals granite-assets' own single-key lock, on a connection in AUTOCOMMIT so that no
  transaction stays open beside the host's.
- MySQL and MariaDB: ``GET_LOCK`` on a name of its own (see ``_backends/mysql.py``).
- SQLite: ``flock`` on a lock file beside the database file. The database's own write lock cannot
  serve: Alembic's connection inside the block needs it, and would wait for its own process.

Each backend holds its own (:mod:`granite_assets.migrations._backends`). The server locks'
sessions idle all through the block, so they are exempted from the server's
idle-session timeout. Each is released when the block ends, and dies with its holder: the server
ends a killed process's session, and the kernel drops a killed process's ``flock``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Final

from sqlalchemy import URL, Connection, Engine

from granite_assets.migrations._names import logger
from granite_assets.migrations._target import connect, resolve
from granite_assets.migrations._timeouts import check_lock_timeout

#: A lock name: a letter or digit, then up to 63 letters, digits, ``_``, ``-`` and ``.``. It
#: becomes part of a MySQL lock name and of a file name, so nothing else is allowed.
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass
class _Hold:
    """One held lock; ``active`` turns false when the block that took it ends.

    ``pid`` is the process that holds it: a child forked in the block inherits this record, but
    is another process, which must wait for the lock like any other.
    """

    pid: int = field(default_factory=os.getpid)
    active: bool = True

    def covers_this_process(self) -> bool:
        """Tell whether a block of this process, nested in the one that took the lock, runs under it."""
        return self.active and self.pid == os.getpid()


# The locks held by the block the caller is in, by (where, name). A ContextVar rather than a
# thread-local, so that work the block hands on (asyncio.to_thread, a task it starts) counts as
# nested too, and does not wait for the lock its own caller holds.
_held: ContextVar[Mapping[tuple[str, ...], _Hold]] = ContextVar(
    "granite_assets_host_locks", default=MappingProxyType({})
)


def check_name(name: object) -> str:
    """Return ``name`` when it can name a lock; raise :exc:`ValueError` saying what is allowed."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"The migration lock's name must be 1 to 64 characters: letters, digits, '_', '-' and '.', "
            f"beginning with a letter or a digit, such as your application's name; not {name!r}."
        )
    return name


@contextmanager
def migration_lock(target: str | URL | Engine, name: str, timeout: float) -> Iterator[None]:
    """Hold the host's lock ``name`` on ``target``'s database for the duration of the block."""
    name = check_name(name)
    try:
        timeout = check_lock_timeout(timeout)
    except ValueError as exc:  # the same rule, under this function's name for it
        raise ValueError(str(exc).replace("lock_timeout", "migration_lock()'s timeout", 1)) from None
    if isinstance(target, Connection):
        raise TypeError(
            "migration_lock() needs a URL or an Engine, not a Connection: it holds the lock on a "
            "connection of its own, kept open and outside any transaction while Alembic migrates on "
            "another, and a lock on your connection would end with its transaction (or, on SQLite, "
            "block Alembic's connection). Pass connection.engine."
        )
    if not isinstance(target, str | URL | Engine):
        raise TypeError(
            f"migration_lock() needs a database URL or an Engine, not {type(target).__name__}; "
            "for an AsyncEngine, pass its URL made synchronous with to_sync_url()."
        )
    with resolve(target, timeout) as resolved:
        backend = resolved.backend
        db = replace(resolved, url=backend.host_lock_url(resolved, connect))
        key = backend.host_lock_key(db, name)
        held = _held.get()
        outer = held.get(key)
        if outer is not None and outer.covers_this_process():
            logger.debug("The migration lock %r on %s is held by an enclosing block already.", name, db.where)
            yield
            return
        with backend.host_lock(db, name, timeout, connect):
            hold = _Hold()
            token = _held.set({**held, key: hold})
            try:
                yield
            finally:
                hold.active = False
                _held.reset(token)
