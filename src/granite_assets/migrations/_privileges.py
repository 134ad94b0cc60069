"""What a runtime login needs on granite-assets' tables: what every backend's GRANT statements share.

A deployment may migrate with one database user and run the application with another, which
reads and writes rows but creates and alters nothing. Each backend writes the statements that
give such a login what it needs (see ``Backend.runtime_grants``); this module holds what they
have in common. Plain Python, importable without SQLAlchemy: the command line checks a role's
name with it before anything connects.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Final

from granite_assets.migrations._names import COMPATIBILITY_TABLE, VERSION_TABLE

#: granite-assets' own records: the runtime login reads them and never writes them.
BOOKKEEPING_TABLES: Final = (VERSION_TABLE, COMPATIBILITY_TABLE)
#: What the runtime login may do on granite-assets' other tables, by default and when read-only.
READ_WRITE: Final = ("SELECT", "INSERT", "UPDATE", "DELETE")
READ_ONLY: Final = ("SELECT",)


@dataclass(frozen=True)
class Layout:
    """Where granite-assets' tables are, as far as the grants on them need to know.

    Attributes:
        where: The database's URL with its password hidden; ``None`` when no database was read
            (only a dialect was named).
        schema: The schema (PostgreSQL) or database (MariaDB, MySQL) that holds the tables;
            ``None`` when no database was read.
        tables: granite-assets' tables there, or, when no database was read, those this release
            creates.
        sequences: The sequences of those tables (PostgreSQL), when a database was read.
        owner: The migration user, who owns the tables and creates the next ones, when known.
    """

    where: str | None
    schema: str | None
    tables: tuple[str, ...]
    sequences: tuple[str, ...] = ()
    owner: str | None = None


def check_role(role: str) -> str:
    """Return ``role`` when a GRANT may name it; raise :class:`ValueError` for a name that is a mistake.

    Refused: an empty name, one with spaces around it, PUBLIC (every role of the server) and a NUL.
    """
    if not role.strip():
        raise ValueError("the role name is empty: name the database user the application logs in as")
    if role != role.strip():
        raise ValueError(f"the role name {role!r} has spaces around it: name it without them")
    if role.lower() == "public":
        raise ValueError("PUBLIC is every role of the server: name the application's own database user")
    if "\x00" in role:
        raise ValueError("a role name cannot hold a NUL character")
    return role


def privileges(*, read_only: bool) -> str:
    """The privileges the runtime login gets on granite-assets' tables other than its records."""
    return ", ".join(READ_ONLY if read_only else READ_WRITE)


def what_it_does(*, read_only: bool) -> str:
    """What the runtime login does with granite-assets' tables, in words."""
    if read_only:
        return "reads granite-assets' tables"
    return "reads granite-assets' records and reads and writes its other tables"


def comment(text: str) -> list[str]:
    """``text`` as SQL comment lines of at most 80 characters."""
    return [
        "-- " + line
        for line in textwrap.wrap(text, _WIDTH - 3, break_long_words=False, break_on_hyphens=False)
    ]


def statement(first: str, rest: str) -> list[str]:
    """A statement on one line when it fits in 80 characters, else ``rest`` on a second, indented."""
    whole = f"{first} {rest}"
    return [whole] if len(whole) <= _WIDTH else [first, f"  {rest}"]


_WIDTH: Final = 80
