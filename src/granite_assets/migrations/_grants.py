"""The statements that give a runtime login what it needs on granite-assets' tables (``db grants``).

Given a database, the tables are read from it, with SELECTs only; given a dialect's name, they
are those this release creates. Each backend writes its own statements
(``Backend.runtime_grants``): PostgreSQL's default privileges cover the migration user's next
tables, while MariaDB and MySQL grant table by table.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import URL, Connection, Engine

from granite_assets.migrations._backends import Backend, backend_for
from granite_assets.migrations._history import load_history
from granite_assets.migrations._messages import advice
from granite_assets.migrations._names import COMPATIBILITY_TABLE, VERSION_TABLE
from granite_assets.migrations._privileges import Layout, check_role
from granite_assets.migrations._runner import reading
from granite_assets.migrations._target import Target, resolve
from granite_assets.migrations._urls import is_async, parse_url


def grants_sql(
    directory: Path,
    target: Target,
    role: str,
    *,
    owner: str | None,
    read_only: bool,
    lock_timeout: float,
) -> str:
    """The statements, with comments, that give ``role`` what it needs on granite-assets' tables."""
    check_role(role)
    if owner is not None:
        check_role(owner)
    offline = isinstance(target, str) and "://" not in target
    backend = _backend_of(target)
    backend.grantee(role)  # before connecting: a backend without logins, a name it cannot take
    if owner is not None and not backend.default_privileges:
        raise ValueError(
            f"{advice('owner', '--owner')} is for PostgreSQL's default privileges; {backend.title} have "
            "none, so name no owner"
        )
    if offline:
        layout = Layout(where=None, schema=None, tables=release_tables(directory), owner=owner)
    else:
        with resolve(target, lock_timeout) as db, reading(db) as (connection, _):
            layout = backend.runtime_layout(connection, db, owner)
    if layout.owner is not None and layout.owner == role:
        raise ValueError(
            f"{role} is the migration user, the owner of granite-assets' tables: give the application a "
            "login of its own, and name that one"
        )
    return "\n".join(backend.runtime_grants(role, layout, read_only=read_only)) + "\n"


def _backend_of(target: Target) -> Backend:
    """The backend of a URL, an engine, a connection, or a dialect's name (``postgresql``, ``mysql``)."""
    if isinstance(target, Engine | Connection):
        return backend_for(target.dialect.name)
    if not isinstance(target, str | URL):
        raise TypeError(
            "Expected a database URL, a dialect's name, an Engine or a Connection, "
            f"not {type(target).__name__}."
        )
    url = parse_url(target if isinstance(target, URL) or "://" in target else f"{target}://")
    is_async(url)  # refuses an unknown dialect
    return backend_for(url.get_backend_name())


def release_tables(directory: Path) -> tuple[str, ...]:
    """The tables this release creates: its records, and the tables of its models."""
    from granite_assets.models import Base

    tables = [VERSION_TABLE]
    if any(r.backward_compatible for r in load_history(directory).revisions):
        tables.append(COMPATIBILITY_TABLE)
    return (*tables, *sorted(name for name in Base.metadata.tables if name not in tables))
