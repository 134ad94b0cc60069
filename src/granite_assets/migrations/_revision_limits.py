"""The limits each revision runs under: the call's, raised to what the revision declares it needs.

A revision file may declare, at module level, ``ddl_lock_timeout`` and ``statement_timeout``: the
seconds its statements need at least (a long data migration, a table that is rarely free). While
that revision's ``upgrade()`` or ``downgrade()`` runs, each limit is the larger of the call's and
the revision's; the call's come back for the next revision. The bundled ``env.py`` wraps those
two functions of each such revision for the length of one Alembic run, and unwraps them after.

The backend sets the limits inside the revision's transaction (``in_transaction=True``): on
PostgreSQL with ``SET LOCAL``, which ends with that transaction, on MariaDB for the session, put
back after. Offline SQL gets no such statements: the script runs in a DBA's session, whose
settings are the DBA's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import TYPE_CHECKING, Any

from granite_assets.migrations._backends import backend_for
from granite_assets.migrations._messages import seconds
from granite_assets.migrations._names import logger
from granite_assets.migrations._timeouts import DDLLimits

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory
    from sqlalchemy import Connection

    from granite_assets.migrations._backends.base import Backend
    from granite_assets.migrations._history import History, Revision


def limits_for(call: DDLLimits, revision: Revision | None) -> DDLLimits:
    """The limits ``revision`` runs under: the call's, raised to what it declares (``None``: the call's)."""
    if revision is None:
        return call
    return call.at_least(revision.ddl_lock_timeout, revision.statement_timeout)


@contextmanager
def revisions_bounded(
    scripts: ScriptDirectory, history: History, connection: Connection, call: DDLLimits | None
) -> Iterator[None]:
    """For the block, run each revision that needs more than ``call`` allows under its own limits.

    ``call`` is ``None`` when the run has no limits of granite-assets' (the ``alembic`` command
    line): the session's own settings then apply to every revision, as they always did.
    """
    wrapped: list[tuple[Any, str, Callable[..., Any]]] = []
    if call is not None:
        backend = backend_for(connection.dialect.name)
        for revision in history.revisions:
            own = limits_for(call, revision)
            if own == call:
                continue
            module = scripts.get_revision(revision.revision).module
            for name in ("upgrade", "downgrade"):
                original = getattr(module, name)
                setattr(module, name, _bounded(original, revision.revision, backend, connection, own))
                wrapped.append((module, name, original))
    try:
        yield
    finally:
        for module, name, original in reversed(wrapped):
            setattr(module, name, original)


def _bounded(
    fn: Callable[..., Any], revision: str, backend: Backend, connection: Connection, limits: DDLLimits
) -> Callable[..., Any]:
    """``fn``, run with ``limits`` set in the revision's transaction and the call's put back after."""

    @wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        logger.info(
            "granite-assets revision %s declares that it needs longer limits: each of its statements may "
            "wait %s for a table lock%s.",
            revision,
            _up_to(limits.lock_timeout),
            "" if limits.statement_timeout is None else f" and run {_up_to(limits.statement_timeout)}",
        )
        with backend.ddl_limits(
            connection, limits.lock_timeout, limits.statement_timeout, in_transaction=True
        ):
            return fn(*args, **kwargs)

    return run


def _up_to(count: float) -> str:
    """A limit in words: "up to 30 seconds", or "without limit"."""
    return "without limit" if math.isinf(count) else f"up to {seconds(count)}"
