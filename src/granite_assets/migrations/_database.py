"""A resolved target: the database to migrate, how to reach it, and how to name it in messages."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError

from granite_assets.migrations._backends import Backend, backend_for
from granite_assets.migrations._messages import driver_text, one_line
from granite_assets.migrations._urls import display_url, scrub


@dataclass(frozen=True)
class Database:
    """A database to work on: where to connect, and how to name it in messages."""

    url: URL
    engine: Engine
    connection: Connection | None = None  # the caller's own connection, if it gave one
    owned: bool = False  # the engine is ours, made with engine_options(), and disposed after

    @property
    def backend(self) -> Backend:
        """What granite-assets knows of this kind of database."""
        return backend_for(self.engine.dialect.name)

    @property
    def where(self) -> str:
        """The URL with its password hidden."""
        return display_url(self.url)

    def scrub(self, text: str) -> str:
        """Hide this database's secrets in ``text``."""
        return scrub(text, self.url)

    def explain(self, what: BaseException | str) -> str:
        """An error's (for a driver error, the driver's) words on one line, secrets hidden."""
        if isinstance(what, DBAPIError):
            what = driver_text(what.orig)
        return one_line(self.scrub(str(what)))
