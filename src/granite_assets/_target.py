"""What the caller passed (a URL, an Engine or a Connection), resolved to something to connect to."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError

from granite_assets._errors import DatabaseConnectionError
from granite_assets._failures import sentence
from granite_assets._urls import (
    create_owned_engine,
    display_url,
    missing_driver,
    parse_url,
    require_sync,
    scrub,
)

Target = str | URL | Engine | Connection


@dataclass(frozen=True)
class Database:
    """A resolved target: where to connect, and how to name it in messages."""

    url: URL
    engine: Engine
    connection: Connection | None = None  # the caller's own connection, if it gave one
    owned: bool = False  # the engine is ours, made with engine_options(), and disposed after

    @property
    def where(self) -> str:
        """The URL with its password hidden."""
        return display_url(self.url)

    def scrub(self, text: str) -> str:
        """Hide this database's secrets in ``text``."""
        return scrub(text, self.url)


@contextmanager
def resolve(target: Target, lock_timeout: float) -> Iterator[Database]:
    """Turn a URL, engine or connection into a :class:`Database`; dispose what it created."""
    if isinstance(target, Connection):
        yield Database(target.engine.url, target.engine, target)
        return
    if isinstance(target, Engine):
        yield Database(target.url, target)
        return
    if not isinstance(target, str | URL):
        raise TypeError(
            f"Expected a database URL, an Engine or a Connection, not {type(target).__name__}; "
            "for an AsyncEngine, await granite_assets.migrations.upgrade_to_head_async()."
        )
    url = parse_url(target)
    require_sync(url)
    engine = create_owned_engine(url, lock_timeout)
    try:
        yield Database(url, engine, owned=True)
    finally:
        engine.dispose()


@contextmanager
def connect(db: Database) -> Iterator[Connection]:
    """Open a connection of our own, turning connection failures into clear errors."""
    try:
        connection = db.engine.connect()
    except ImportError as exc:
        raise missing_driver(db.url, exc) from None
    except DBAPIError as exc:
        raise DatabaseConnectionError(
            f"Could not connect to {db.where}: {sentence(db.scrub(str(exc.orig)))} Check that the "
            "server is running and reachable from here, and that the user name and password are right."
        ) from None
    with connection:
        yield connection
