"""What the caller passed (a URL, an Engine or a Connection), resolved to a database to connect to."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import URL, Connection, Engine, create_engine
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import NullPool

from granite_assets.migrations._backends import backend_for
from granite_assets.migrations._database import Database
from granite_assets.migrations._errors import (
    DatabaseConnectionError,
    InvalidURLError,
    MigrationError,
    UnsupportedConnectionError,
)
from granite_assets.migrations._messages import driver_text, one_line
from granite_assets.migrations._urls import (
    display_url,
    missing_driver,
    parse_url,
    refused_options,
    require_sync,
    scrub,
)

Target = str | URL | Engine | Connection


@contextmanager
def resolve(target: Target, lock_timeout: float) -> Iterator[Database]:
    """Turn a URL, engine or connection into a :class:`Database`; dispose what it created."""
    if isinstance(target, Connection):
        refuse_schema_translation(target)
        yield Database(target.engine.url, target.engine, target)
        return
    if isinstance(target, Engine):
        refuse_schema_translation(target)
        yield Database(target.url, target)
        return
    if not isinstance(target, str | URL):
        raise TypeError(
            f"Expected a database URL, an Engine or a Connection, not {type(target).__name__}; "
            "for an AsyncEngine, await granite_assets.migrations.upgrade_to_head_async()."
        )
    url = parse_url(target)
    require_sync(url)
    check_url(url)
    engine: Engine = create_owned_engine(url, lock_timeout)
    try:
        yield Database(url, engine, owned=True)
    finally:
        engine.dispose()


def check_url(url: URL) -> None:
    """Refuse a URL that its backend cannot migrate from (an in-memory SQLite database, say)."""
    backend_for(url.get_backend_name()).check_url(url)


def refuse_schema_translation(target: Engine | Connection) -> None:
    """Refuse an engine or connection that moves tables without a schema into another one.

    granite-assets reads its version table where the connection's default schema puts it,
    while Alembic would write it, and every revision's tables, where ``schema_translate_map``
    sends them: two schemas, each half migrated.
    """
    translate = target.get_execution_options().get("schema_translate_map") or {}
    if translate.get(None) is not None:
        raise UnsupportedConnectionError(
            f"The engine of {display_url(target.engine.url)} has a schema_translate_map that moves "
            f"tables without a schema to {translate[None]!r}; granite-assets cannot migrate through "
            "it (its version table would be read in one schema and written in another). Nothing "
            "was changed. To keep granite-assets' tables in a schema of their own, pass an engine "
            "whose connections start in it (PostgreSQL: options=-csearch_path=... in the URL; "
            "MariaDB and MySQL: that database in the URL)."
        )


def engine_options(url: URL, lock_timeout: float) -> dict[str, Any]:
    """Keyword arguments for ``create_engine`` that bound every wait.

    Connection waits are bounded by the backend's connect timeout. On SQLite, a statement waits
    for the file's lock up to ``lock_timeout`` (or the URL's own ``?timeout=``); the migration
    lock itself is polled for ``lock_timeout`` whatever the URL says.
    """
    connect_args = backend_for(url.get_backend_name()).connect_args(url, lock_timeout)
    # NullPool: every connection is closed when released, so nothing outlives the call.
    return {"poolclass": NullPool, "connect_args": connect_args}


_E = TypeVar("_E")


def create_owned_engine(
    url: URL,
    lock_timeout: float,
    create: Callable[..., _E] = create_engine,  # type: ignore[assignment]
) -> _E:
    """Create the engine for a URL target with ``create`` (an async one's, say); the caller disposes it."""
    try:
        return create(url, **engine_options(url, lock_timeout))
    except ImportError as exc:
        raise missing_driver(url, exc) from None
    except ArgumentError as exc:  # the dialect refuses the URL: a SQLite URL with a host, say
        reason = one_line(scrub(str(exc), url), sentences=False)
        raise InvalidURLError(f"The database URL {display_url(url)} cannot be used: {reason}") from None
    except (TypeError, ValueError) as exc:  # the dialect cannot convert a query parameter
        raise refused_options(url, exc) from None


@contextmanager
def connect(db: Database) -> Iterator[Connection]:
    """Open a connection of our own, turning connection failures into errors that say what to do."""
    failure: MigrationError | None = None
    try:
        connection = db.engine.connect()
    except ImportError as exc:
        failure = missing_driver(db.url, exc)
    except DBAPIError as exc:
        if "invalid connection option" in str(exc.orig):  # libpq refusing a URL option
            failure = refused_options(db.url, exc.orig)
        else:
            failure = db.backend.connection_error(db, db.explain(driver_text(exc.orig)), exc.orig)
    except OSError as exc:  # drivers such as asyncpg let the socket's own error through
        failure = db.backend.connection_error(db, db.explain(f"{type(exc).__name__}: {exc}"), exc)
    except (TypeError, ValueError, AttributeError) as exc:  # a driver's connect() choking on its arguments
        failure = refused_options(db.url, exc)
    except PoolTimeoutError:
        failure = DatabaseConnectionError(
            f"granite-assets needs a connection to {db.where} of its own, besides any you hold, and your "
            "engine's pool had none free within its pool_timeout. Give the engine room for one more "
            "(pool_size or max_overflow), or call with fewer of its connections checked out."
        )
    if failure is not None:
        # Raised here, not in the except clause, so that no __context__ keeps the driver's error:
        # psycopg 3's holds the failed connection, password and all.
        raise failure
    with connection:
        yield connection
