"""What differs between databases, one module per backend (the shape of Alembic's ``ddl/``).

:class:`~granite_assets.migrations._backends.base.Backend` holds the default behaviour;
:mod:`.postgresql`, :mod:`.mysql` and :mod:`.sqlite` each subclass it with everything about
their database: its migration and host locks, how it treats DDL, its error codes, its
idle-session timeout, what it accepts of a caller's transaction, its file checks. The rest of
granite-assets asks the backend (``db.backend.transactional_ddl``) instead of branching on the
dialect's name. A dialect without a module of its own gets the default: no migration lock, and a
warning that says so.
"""

from __future__ import annotations

from functools import cache

from granite_assets.migrations._backends.base import Backend
from granite_assets.migrations._backends.mysql import MySQLBackend
from granite_assets.migrations._backends.postgresql import PostgreSQLBackend
from granite_assets.migrations._backends.sqlite import SQLiteBackend

__all__ = ["Backend", "backend_for"]

#: The backend class of each SQLAlchemy dialect name.
BACKENDS: dict[str, type[Backend]] = {
    "postgresql": PostgreSQLBackend,
    "mysql": MySQLBackend,
    "mariadb": MySQLBackend,
    "sqlite": SQLiteBackend,
}


@cache
def backend_for(dialect_name: str) -> Backend:
    """The backend of a SQLAlchemy dialect (``connection.dialect.name``, ``url.get_backend_name()``)."""
    return BACKENDS.get(dialect_name, Backend)(dialect_name)
