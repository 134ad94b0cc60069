"""What the caller passed (a URL, an Engine or a Connection), resolved to something to connect to."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from granite_assets._errors import (
    DatabaseConnectionError,
    InvalidURLError,
    MigrationError,
    UnsupportedConnectionError,
)
from granite_assets._urls import (
    create_owned_engine,
    display_url,
    missing_driver,
    parse_url,
    refused_options,
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

    def explain(self, what: BaseException | str) -> str:
        """An error's (for a driver error, the driver's) words on one line, secrets hidden."""
        if isinstance(what, DBAPIError):
            what = driver_text(what.orig)
        return one_line(self.scrub(str(what)))


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
    refuse_in_memory(url)
    engine: Engine = create_owned_engine(url, lock_timeout)
    try:
        yield Database(url, engine, owned=True)
    finally:
        engine.dispose()


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


def sqlite_file(url: URL) -> str | None:
    """The file a SQLite URL names, as given (``file:`` URIs too); ``None`` for an in-memory database."""
    name = url.database or ""
    if name.startswith("file:"):  # a URI filename (?uri=true): its path, without the query
        name = urllib.parse.unquote(urllib.parse.urlsplit(name).path)
    if name in {"", ":memory:"} or url.query.get("mode") == "memory":
        return None
    return name


def missing_sqlite_file(db: Database) -> Path | None:
    """The path of the SQLite file a URL target names, when no such file exists (else ``None``).

    Opening a missing file creates it: a mistyped path read with ``current_revision`` would leave
    an empty database behind for the next upgrade to migrate. Engines and connections are the
    caller's, and in-memory databases have no file.
    """
    if not db.owned or db.url.get_backend_name() != "sqlite":
        return None
    name = sqlite_file(db.url)
    if name is None:
        return None
    path = Path(name).absolute()
    return None if path.exists() else path


def refuse_in_memory(url: URL) -> None:
    """Refuse a SQLite URL for an in-memory database, which would vanish with the call's engine."""
    if url.get_backend_name() != "sqlite":
        return
    name = url.database or ""
    if name in {"", ":memory:"} or name.startswith("file::memory:") or url.query.get("mode") == "memory":
        raise InvalidURLError(
            f"{display_url(url)} is an in-memory SQLite database: every connection granite-assets "
            "opens from a URL gets a new, empty one, which vanishes when the call returns. Pass an "
            "Engine instead, created with poolclass=sqlalchemy.pool.StaticPool, and use the same "
            "engine in your application."
        )


# The connection failures that get advice of their own: SQLSTATEs, MySQL error codes, and what
# libpq says (psycopg2 has no SQLSTATE for a failure before the session starts).
_NO_DATABASE = ({"3D000"}, {1049}, (("database", "does not exist"),))
_BAD_LOGIN = (
    {"28P01", "28000"},
    {1045},
    (("password authentication failed",), ("not permitted to log in",), ("role", "does not exist")),
)
_NO_ACCESS = ({"42501"}, {1044}, (("permission denied for database",),))


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
            failure = connection_error(db, driver_text(exc.orig), exc.orig)
    except OSError as exc:  # drivers such as asyncpg let the socket's own error through
        failure = connection_error(db, f"{type(exc).__name__}: {exc}", exc)
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


def one_line(text: str) -> str:
    """Fold a driver's message onto one line that ends like a sentence, each of its parts too.

    A line that starts in lower case continues the one before it (libpq wraps its sentences);
    PostgreSQL's caret line, which points into the statement above it, means nothing on one line.
    """
    parts: list[str] = []
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if not line or set(line) <= {"^"}:
            continue
        if parts and line[0].islower() and not parts[-1].endswith((".", "?", "!")):
            parts[-1] = f"{parts[-1]} {line}"
        else:
            parts.append(line)
    return " ".join(part if part.endswith((".", "?", "!", ":")) else f"{part}." for part in parts)


def driver_text(orig: BaseException | None) -> str:
    """A driver error's own words: pg8000 gives the server's fields as a dict, whose M is the message."""
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], dict) and "M" in args[0]:
        return str(args[0]["M"])
    return str(orig)


def connection_error(db: Database, text: str, orig: BaseException | None) -> DatabaseConnectionError:
    """The error for a connection the server refused or could not be made, with advice that fits."""
    reason = db.explain(text)
    if db.url.get_backend_name() == "sqlite":
        advice = "Check the file name, and that its folder exists and this process may write in it."
        return DatabaseConnectionError(f"Could not open the SQLite database {db.where}: {reason} {advice}")
    if _is(orig, reason, *_NO_DATABASE):
        advice = (
            f"The database {db.url.database!r} does not exist on that server: create it "
            f"(CREATE DATABASE {db.url.database}) or correct the URL."
        )
    elif _is(orig, reason, *_NO_ACCESS):
        advice = (
            f"The user may not use the database {db.url.database!r}, or it does not exist: check the "
            "name in the URL, and create the database or grant the user access to it."
        )
    elif _is(orig, reason, *_BAD_LOGIN):
        advice = "Check the user name and password, and that this user may connect to that database."
    else:
        advice = (
            "Check that the server is running and reachable from here, and that the user name "
            "and password are right."
        )
    return DatabaseConnectionError(f"Could not connect to {db.where}: {reason} {advice}")


def _is(
    orig: BaseException | None,
    reason: str,
    states: set[str],
    codes: set[int],
    phrasings: tuple[tuple[str, ...], ...],
) -> bool:
    """Tell whether a driver's error is the failure described by its code, or else by its words.

    ``phrasings`` are the ways the server words it, each a set of words that must all appear.
    """
    code = mysql_error_number(orig)
    if code is not None:  # MySQL's own error number says more than its SQLSTATE
        return code in codes
    state = sqlstate(orig)
    if state is not None:
        return state in states
    return any(all(word in reason for word in words) for words in phrasings)


def mysql_error_number(orig: BaseException | None) -> int | None:
    """The MySQL error number of a driver's error (pymysql, mysqlclient), else ``None``."""
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def sqlstate(orig: BaseException | None) -> str | None:
    """The SQLSTATE of a PostgreSQL driver's error: psycopg 2 and 3 name it, pg8000's dict has it as C."""
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], dict):
        code = args[0].get("C")
    else:
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code if isinstance(code, str) else None
