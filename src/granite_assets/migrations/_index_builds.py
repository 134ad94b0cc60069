"""Indexes built and dropped while the application uses the table (the work of :mod:`.operations`).

On PostgreSQL an index is built with ``CREATE INDEX CONCURRENTLY``, during which the table's
writers go on. It cannot run in a transaction, so it runs in Alembic's ``autocommit_block()``:
Alembic commits the revision's transaction before the block and begins another after it, in
which the version row is updated. The session-level migration lock outlives both commits; the
limits the revision ran under (its own, ``SET LOCAL``, when it declares any) are carried into
the block for the session, and the session's put back after.

An interrupted build (a lock timeout, a cancelled statement, a killed session) leaves an INVALID
index of that name, which ``IF NOT EXISTS`` would take for a built one: so the name is looked up
first, an INVALID index of the table is dropped (concurrently), and a valid one, built by a try
that ended before its revision was recorded, is kept.

Where the database cannot build concurrently (MariaDB, MySQL, SQLite), and inside a caller's
transaction, which granite-assets may not commit, a plain ``CREATE INDEX`` runs instead.

The operations are Alembic operation objects, subclasses of ``CreateIndexOp`` and ``DropIndexOp``
invoked through ``alembic.op``: ``make migrate-check`` records them as it records any other, and
its compatibility heuristic sees an index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import op
from alembic.operations import Operations, ops
from alembic.runtime.migration import MigrationContext
from sqlalchemy import ColumnElement, Connection, Index, TextClause
from sqlalchemy.exc import DBAPIError

from granite_assets.migrations._backends import backend_for
from granite_assets.migrations._backends.base import Backend, index_sql_name
from granite_assets.migrations._names import logger


class CreateIndexConcurrentlyOp(ops.CreateIndexOp):
    """Create an index without holding up the table's writers, where the database can."""


class DropIndexConcurrentlyOp(ops.DropIndexOp):
    """Drop an index without holding up the table's readers and writers, where the database can."""


def create_index_concurrently(
    index_name: str,
    table_name: str,
    columns: Sequence[str | TextClause | ColumnElement[Any]],
    *,
    schema: str | None = None,
    unique: bool = False,
    **kw: Any,
) -> None:
    """Build an index on a table the application is using, in a revision's ``upgrade()``.

    On PostgreSQL this runs ``CREATE INDEX CONCURRENTLY`` outside the revision's transaction:
    the statements of the revision before it are committed first, and writers to the table go
    on during the build. An INVALID index of that name, left by an earlier build that did not
    finish, is dropped first, and a valid one is kept. On MariaDB, MySQL and SQLite, and inside
    a transaction of the caller's, it runs a plain ``CREATE INDEX`` (see :ref:`live-index`).

    Args:
        index_name: The index's name, which it is looked up by.
        table_name: The table to index.
        columns: Column names or SQL expressions, as for ``op.create_index()``.
        schema: The table's schema; by default the search path finds it.
        unique: Build a unique index.
        **kw: Dialect options, as for ``op.create_index()`` (``postgresql_where=``,
            ``mysql_length=``, ...).
    """
    op.invoke(CreateIndexConcurrentlyOp(index_name, table_name, columns, schema=schema, unique=unique, **kw))


def drop_index_concurrently(
    index_name: str, table_name: str, *, schema: str | None = None, **kw: Any
) -> None:
    """Drop an index of a table the application is using, in a revision's ``downgrade()``, say.

    On PostgreSQL this runs ``DROP INDEX CONCURRENTLY IF EXISTS`` outside the revision's
    transaction, so that the table's readers and writers never wait for it; elsewhere, and in a
    transaction of the caller's, a plain ``DROP INDEX``.

    Args:
        index_name: The index's name.
        table_name: Its table (MariaDB and MySQL need it).
        schema: The table's schema; by default the search path finds it.
        **kw: Dialect options, as for ``op.drop_index()``.
    """
    op.invoke(DropIndexConcurrentlyOp(index_name, table_name=table_name, schema=schema, **kw))


@Operations.implementation_for(CreateIndexConcurrentlyOp)
def _create(operations: Operations, operation: CreateIndexConcurrentlyOp) -> None:
    context = operations.get_context()
    backend = backend_for(context.dialect.name)
    name, table = str(operation.index_name), operation.table_name
    options = {k: v for k, v in operation.kw.items() if k != "postgresql_concurrently"}

    def create(*, concurrently: bool) -> None:
        extra = {"postgresql_concurrently": True} if concurrently else {}
        operations.invoke(
            ops.CreateIndexOp(
                operation.index_name,
                table,
                operation.columns,
                schema=operation.schema,
                unique=operation.unique,
                **options,
                **extra,
            )
        )

    if not backend.builds_indexes_concurrently:
        create(concurrently=False)
        return
    index = operation.to_index(context)
    if context.as_sql:
        written = index_sql_name(context.dialect, index)
        with context.autocommit_block():
            context.impl.static_output(
                f"-- If an earlier run of the next statement did not finish, it left {written} INVALID "
                f"(pg_index.indisvalid is false): run DROP INDEX CONCURRENTLY {written}; first."
            )
            create(concurrently=True)
        return
    if in_callers_transaction(context):
        _plainly_in_callers_transaction("CREATE INDEX", name, table, "writes to")
        if _to_build(operations, backend, index, concurrently=False):
            create(concurrently=False)
        return
    failed: list[Exception] = []
    limits = backend.limits_in_force(operations.get_bind())  # the revision's own, if it declares any
    try:
        with context.autocommit_block():
            try:
                with backend.limits_for_session(operations.get_bind(), limits):
                    if _to_build(operations, backend, index, concurrently=True):
                        create(concurrently=True)
            except Exception as exc:
                failed.append(exc)
                logger.warning(
                    "The concurrent build of the index %s on %s did not finish, and may have left it "
                    "INVALID; the next try drops such an index and builds it again.%s",
                    name,
                    table,
                    _waited_for(operations.get_bind(), backend, exc),
                )
                _forget_lost_transaction(operations.get_bind())
                raise
    except Exception as exc:
        # On a lost connection autocommit_block() fails again as it leaves; the build's error says why.
        if failed and exc is not failed[0]:
            raise failed[0] from failed[0].__cause__
        raise


@Operations.implementation_for(DropIndexConcurrentlyOp)
def _drop(operations: Operations, operation: DropIndexConcurrentlyOp) -> None:
    context = operations.get_context()
    backend = backend_for(context.dialect.name)
    options = {k: v for k, v in operation.kw.items() if k not in {"postgresql_concurrently", "if_exists"}}

    def drop(*, concurrently: bool) -> None:
        extra: dict[str, Any] = {"postgresql_concurrently": True, "if_exists": True} if concurrently else {}
        operations.invoke(
            ops.DropIndexOp(
                operation.index_name,
                table_name=operation.table_name,
                schema=operation.schema,
                **options,
                **extra,
            )
        )

    if not backend.builds_indexes_concurrently:
        drop(concurrently=False)
        return
    if in_callers_transaction(context):
        _plainly_in_callers_transaction(
            "DROP INDEX", str(operation.index_name), str(operation.table_name), "queries on"
        )
        drop(concurrently=False)
        return
    if context.as_sql:  # the script runs under the DBA's settings
        with context.autocommit_block():
            drop(concurrently=True)
        return
    limits = backend.limits_in_force(operations.get_bind())
    with context.autocommit_block(), backend.limits_for_session(operations.get_bind(), limits):
        drop(concurrently=True)


def in_callers_transaction(context: MigrationContext) -> bool:
    """Tell whether the revisions run inside a transaction that Alembic did not begin: the caller's.

    That transaction is not granite-assets' to commit, and ``autocommit_block()`` cannot leave it
    (Alembic fails an assertion). Alembic keeps the fact in a private attribute, set when the
    context is configured; offline, it is false.
    """
    return bool(getattr(context, "_in_external_transaction", False))


def _plainly_in_callers_transaction(statement: str, name: str, table: str, waiting: str) -> None:
    """Say that a plain ``statement`` runs in the caller's transaction, and what waits for it."""
    logger.warning(
        "granite-assets runs a plain %s %s inside your transaction, where %s CONCURRENTLY cannot run: "
        "%s %s wait until your transaction ends. Pass the Engine, or a connection with no transaction "
        "open, to have it run concurrently.",
        statement,
        name,
        statement,
        waiting,
        table,
    )


def _waited_for(connection: Connection, backend: Backend, exc: Exception) -> str:
    """After a lock timeout, the transactions the build waits for, in a sentence; else nothing."""
    if connection.invalidated or not (
        isinstance(exc, DBAPIError) and backend.lock_wait_timed_out.matches(exc.orig)
    ):
        return ""
    try:
        sessions = backend.open_transactions(connection)
    except DBAPIError:  # naming them is a courtesy; the timeout is the error
        return ""
    if not sessions:
        return ""
    return (
        " It waits for every transaction that writes to the table, then for every older transaction "
        "of the database, and these are open: " + "; ".join(sessions) + "."
    )


def _forget_lost_transaction(connection: Connection) -> None:
    """Roll back the transaction of a connection that was lost, so that it can reconnect after."""
    if connection.invalidated and connection.get_transaction() is not None:
        connection.rollback()


def _to_build(operations: Operations, backend: Backend, index: Index, *, concurrently: bool) -> bool:
    """Tell whether the index is still to be built, dropping an INVALID one an earlier try left."""
    found = backend.index_named(operations.get_bind(), index)
    if found is None or not found.on_table:  # not there, or a clash CREATE INDEX will name
        return True
    table = index.table.name if index.table is not None else ""
    if found.valid:
        logger.info(
            "The index %s on %s is there already, built by an earlier try that ended before its revision "
            "was recorded; it is kept.",
            found.sql_name,
            table,
        )
        return False
    logger.warning(
        "Dropping the INVALID index %s on %s, which an earlier build left when it did not finish.",
        found.sql_name,
        table,
    )
    operations.execute(f"DROP INDEX {'CONCURRENTLY ' if concurrently else ''}{found.sql_name}")
    return True
