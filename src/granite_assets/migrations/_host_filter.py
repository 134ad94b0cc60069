"""The autogenerate filter a host passes to its own Alembic environment; plain Python, no imports.

It is imported by :mod:`granite_assets.migrations`, which must stay light: nothing here may
import SQLAlchemy or Alembic (the host's ``env.py`` imports it on every Alembic command).
"""

from __future__ import annotations

from collections.abc import Mapping

from granite_assets.migrations._names import TABLE_PREFIX


def include_name(name: str | None, type_: str, parent_names: Mapping[str, str | None]) -> bool:
    """Tell a host's Alembic autogenerate to leave granite-assets' tables alone.

    Pass it to ``context.configure(..., include_name=include_name)`` in both branches of the
    host's ``env.py`` (or to Flask-Migrate as ``Migrate(app, db, include_name=include_name)``).
    Alembic calls it for each name it reflects from the database: it returns ``False`` for
    granite-assets' tables (every name starting with ``granite_assets_``, its version table
    included) and for their columns, indexes and constraints, and ``True`` for everything else.
    The host's autogenerate then proposes neither to drop those tables nor to change them, and
    ``alembic check`` passes. A foreign key from a host table to a granite-assets table belongs to
    the host's table, so it is still compared.

    The filter sees only what is reflected from the database: keep granite-assets' tables out of
    the host's ``target_metadata`` too (see the host-integration page).

    Args:
        name: The reflected name; ``None`` for an unnamed constraint.
        type_: What the name is: ``"schema"``, ``"table"``, ``"column"``, ``"index"``,
            ``"unique_constraint"`` or ``"foreign_key_constraint"``.
        parent_names: The names it belongs to; ``"table_name"`` for a column, index or constraint.

    Returns:
        ``False`` when the name is granite-assets' to manage, ``True`` otherwise.
    """
    table = name if type_ == "table" else parent_names.get("table_name")
    return not (isinstance(table, str) and table.startswith(TABLE_PREFIX))
