"""Proposing a revision's ``backward_compatible`` flag from its operations (a maintainer's tool).

A revision is backward compatible when every older release that worked with the database before
it keeps working after it, which holds for additions that older code never notices: a new table
(with its own indexes and constraints), a column that may be left out of an INSERT (nullable, or
with a server default), an index that does not restrict the data. Everything else (a drop, a
rename, an altered column, a constraint or unique index on an existing table, a data change) may
break it, and so may a revision with no operation, which is how data migrations start. An index
built by ``create_index_concurrently()`` is a ``CreateIndexOp`` too, judged the same way. The
heuristic only proposes: the maintainer confirms the flag in review, since no operation list can
tell whether older code relies on, say, a column's old type.

``make migrate-create`` (through the bundled ``env.py``) writes the proposal into new revisions;
``make migrate-check`` warns when a revision declared compatible holds an operation this module
calls incompatible. The runtime never imports it.

``make migrate-check`` also lints each revision's PostgreSQL SQL with squawk, which asks a different
question: what a statement locks, not whether older code notices it. The two agree on what an
addition is: squawk may flag an addition for its lock (an index built without ``CONCURRENTLY``,
a column whose default is computed row by row) and it stays an addition, while the rules of
:data:`BREAKING_RULES` flag only what this module calls incompatible.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from alembic.operations import ops

#: squawk's rules that flag only changes this module calls incompatible (what older code may
#: notice: a required column, a drop, a rename, a changed column, a constraint on an existing
#: table), never an addition. A revision that needs one of them in ``lint_allow`` cannot be
#: ``backward_compatible = True``. squawk's other rules are about locks, and flag additions too.
BREAKING_RULES: frozenset[str] = frozenset(
    {
        "adding-required-field",
        "adding-not-nullable-field",
        "adding-foreign-key-constraint",
        "adding-serial-primary-key-field",
        "constraint-missing-not-valid",
        "disallowed-unique-constraint",
        "changing-column-type",
        "ban-drop-not-null",
        "ban-drop-column",
        "ban-drop-table",
        "require-concurrent-index-deletion",
        "renaming-column",
        "renaming-table",
        "ban-truncate-cascade",
    }
)


@dataclass(frozen=True)
class Proposal:
    """The proposed flag and, when it is ``False``, what makes it so.

    Attributes:
        backward_compatible: The proposed value.
        reasons: One line per operation (or absence of one) that older code may not survive.
    """

    backward_compatible: bool
    reasons: tuple[str, ...] = ()

    def comment(self, width: int = 100) -> list[str]:
        """The comment lines (without ``#``) that explain the proposal in a revision file."""
        why = "only additions" if self.backward_compatible else "; ".join(self.reasons)
        text = f"make migrate-create proposed {self.backward_compatible} ({why}); "
        text += "confirm or correct it in review."
        return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)


def propose(operations: Iterable[ops.MigrateOperation]) -> Proposal:
    """Propose the flag of a revision whose ``upgrade()`` runs ``operations``, in order."""
    flat = list(_flatten(operations))
    if not flat:
        return Proposal(backward_compatible=False, reasons=("no operation: an empty or data revision",))
    created = {op.table_name for op in flat if isinstance(op, ops.CreateTableOp)}
    reasons = [reason for op in flat if (reason := _incompatibility(op, created)) is not None]
    return Proposal(backward_compatible=not reasons, reasons=tuple(reasons))


def indexes_on_existing_tables(operations: Iterable[ops.MigrateOperation]) -> list[str]:
    """``ix_name on table`` for each plain index ``operations`` build on a table they do not create.

    On PostgreSQL such a build holds up every write to the table while it runs, which
    ``create_index_concurrently()`` avoids; ``make migrate-create`` says so.
    """
    flat = list(_flatten(operations))
    created = {op.table_name for op in flat if isinstance(op, ops.CreateTableOp)}
    return [
        f"{op.index_name} on {op.table_name}"
        for op in flat
        if type(op) is ops.CreateIndexOp and op.table_name not in created
    ]


def _flatten(operations: Iterable[ops.MigrateOperation]) -> Iterator[ops.MigrateOperation]:
    """The operations, with autogenerate's per-table groups (``ModifyTableOps``) opened."""
    for op in operations:
        if isinstance(op, ops.OpContainer):
            yield from _flatten(op.ops)
        else:
            yield op


def _incompatibility(op: ops.MigrateOperation, created: set[str]) -> str | None:
    """Why older code may not survive ``op``; ``None`` when it never notices it."""
    if _unnoticed(op, created):
        return None
    if isinstance(op, ops.AddColumnOp):
        return f"{_describe(op)} is NOT NULL without a server default: older code's INSERTs would fail"
    if isinstance(op, ops.CreateIndexOp | ops.AddConstraintOp):
        return f"{_describe(op)} restricts what older code may write to an existing table"
    if isinstance(op, ops.ExecuteSQLOp | ops.BulkInsertOp):
        return f"{_describe(op)} changes data"
    return _describe(op)


def _unnoticed(op: ops.MigrateOperation, created: set[str]) -> bool:
    """Tell whether ``op`` only adds something that code written before it never notices."""
    # Older code never uses a table this revision creates: what else the revision does to it
    # (indexes, constraints, columns, rows) goes unnoticed.
    if isinstance(op, ops.CreateTableOp) or _table_of(op) in created:
        return True
    if isinstance(op, ops.AddColumnOp):
        column = op.column
        filled_by_the_server = (column.server_default, column.computed, column.identity)
        return bool(column.nullable) or any(value is not None for value in filled_by_the_server)
    if isinstance(op, ops.CreateIndexOp):
        return not op.unique
    return False


def _describe(op: ops.MigrateOperation) -> str:
    """``drop_column granite_assets_asset.note``: the operation's name and what it acts on."""
    name = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", type(op).__name__.removesuffix("Op")).lower()
    table = _table_of(op)
    column = getattr(op, "column_name", None) or getattr(getattr(op, "column", None), "name", None)
    what = f"{table}.{column}" if table and column else table
    named = getattr(op, "index_name", None) or getattr(op, "constraint_name", None)
    if named:
        what = f"{named} on {table}" if table else str(named)
    return f"{name} {what}" if what else name


def _table_of(op: ops.MigrateOperation) -> str | None:
    table = getattr(op, "table_name", None) or getattr(op, "source_table", None)
    if table is None and isinstance(op, ops.BulkInsertOp):
        table = getattr(op.table, "name", None)
    return str(table) if table is not None else None
