"""The rule that keeps granite-assets' schema apart from the host's: every name carries the prefix.

Tables start with :data:`~granite_assets.models.TABLE_PREFIX`; constraints and indexes, which on
PostgreSQL share one namespace with tables, carry it too. The naming convention of
:class:`~granite_assets.models.Base` gives them such names; a name given by hand must as well.
Without the rule, autogenerate would write a revision that creates (or drops) a host's table.
"""

from __future__ import annotations

from sqlalchemy import Constraint, Index, MetaData
from sqlalchemy.sql.elements import conv

from granite_assets.migrations._names import TABLE_PREFIX


def names_without_prefix(metadata: MetaData) -> list[str]:
    """The tables, constraints and indexes of ``metadata`` whose names break the rule, described."""
    found = []
    for table in metadata.sorted_tables:
        if not table.name.startswith(TABLE_PREFIX):
            found.append(f"table {table.name}: its name must start with {TABLE_PREFIX}")
        items: list[Constraint | Index] = [*table.constraints, *table.indexes]
        for item in items:
            name = item.name
            # Names from the naming convention (conv) are made from the table's, prefix included.
            if isinstance(name, str) and not isinstance(name, conv) and TABLE_PREFIX not in name:
                kind = type(item).__name__
                found.append(
                    f"{kind} {name} on {table.name}: leave the name to the naming convention, "
                    f"or put {TABLE_PREFIX} in it"
                )
    return found


def refusal(problems: list[str]) -> str:
    """The message that refuses to write a revision for models that break the rule."""
    listed = "".join(f"\n  - {problem}" for problem in problems)
    return (
        "granite-assets' models must keep to names that cannot be a host's: every table name "
        f"starts with {TABLE_PREFIX}, and every constraint and index name carries it. No revision "
        f"was written. Rename these in src/granite_assets/models.py:{listed}"
    )
