"""The isolation level and transactions of the connections granite-assets migrates on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import Connection

from granite_assets.migrations._backends import backend_for

# The caller's connection granite-assets is working on in this thread or task, if any.
_borrowed: ContextVar[Connection | None] = ContextVar("granite_assets_borrowed", default=None)


def in_autocommit(connection: Connection) -> bool:
    """Tell whether ``connection`` runs in AUTOCOMMIT, set on it or on its engine."""
    # SQLAlchemy's own test (2.0 and 2.1): get_isolation_level() never reports AUTOCOMMIT.
    return bool(connection._is_autocommit_isolation())  # noqa: SLF001


def use_autocommit(connection: Connection, *, on: bool) -> None:
    """Where the backend says so (PostgreSQL), run our own reads and lock calls outside transactions, or stop.

    On PostgreSQL every transaction costs a BEGIN and a ROLLBACK round trip of its own, which would
    double the cost of the no-op path; the setting is only a flag on the driver's connection,
    and the pool restores the connection's level when it is returned. Alembic always runs with
    the normal level (:func:`transactional`), so each revision keeps its own transaction.
    A caller's connection is left at its level: switching back would set the dialect's default
    explicitly, over a level the session chose with SQL (``SET default_transaction_isolation``).
    """
    if not backend_for(connection.dialect.name).reads_in_autocommit or connection is _borrowed.get():
        return
    wanted = "AUTOCOMMIT" if on else connection.default_isolation_level
    if (
        connection.get_execution_options().get("isolation_level", connection.default_isolation_level)
        == wanted
    ):
        return
    if connection.in_transaction():
        connection.rollback()
    connection.execution_options(isolation_level=wanted)


@contextmanager
def borrowing(connection: Connection) -> Iterator[None]:
    """Hand a caller's connection back as it came: no transaction of ours open, its isolation as it was.

    A transaction the caller had open is left alone. In AUTOCOMMIT, SQLAlchemy still marks a
    "transaction" that commits nothing; one the caller had is left, one of ours is ended.
    """
    autocommit = in_autocommit(connection)
    level = connection.get_execution_options().get("isolation_level")
    theirs = connection.in_transaction()
    token = _borrowed.set(connection)
    try:
        yield
    finally:
        _borrowed.reset(token)
        if not connection.closed and not connection.invalidated:
            if connection.in_transaction() and (not theirs or autocommit != in_autocommit(connection)):
                connection.rollback()
            if autocommit and not in_autocommit(connection):
                connection.execution_options(isolation_level="AUTOCOMMIT")
            elif not autocommit and connection.get_execution_options().get("isolation_level") != level:
                connection.execution_options(isolation_level=level or connection.default_isolation_level)


def transactional(connection: Connection) -> None:
    """Give Alembic real transactions on our own connection, even from an engine in AUTOCOMMIT.

    Otherwise a failed revision's data changes would stay committed. A backend that migrates in
    one explicit transaction (SQLite's ``BEGIN IMMEDIATE``) needs nothing.
    """
    if connection.in_transaction():
        connection.rollback()  # hand Alembic a connection with no transaction open
    if not backend_for(connection.dialect.name).migrates_in_one_transaction and in_autocommit(connection):
        connection.execution_options(isolation_level=connection.default_isolation_level)
