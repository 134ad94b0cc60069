"""Database URLs: parsing, hiding secrets, async-to-sync mapping, and the drivers they name."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from functools import cache

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from granite_assets.migrations._errors import AsyncDriverURLError, InvalidURLError, MissingDependencyError
from granite_assets.migrations._messages import advice, one_line

_HIDDEN = "***"
_SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "secret", "token", "sslpassword")

# Async driver -> sync drivers of the same dialect, in order of preference.
_SYNC_DRIVERS: dict[str, tuple[str, ...]] = {
    "asyncpg": ("psycopg", "psycopg2"),
    "psycopg_async": ("psycopg",),
    "aiosqlite": ("pysqlite",),
    "aiomysql": ("pymysql",),
    "asyncmy": ("pymysql",),
    "aioodbc": ("pyodbc",),
}
# Sync driver name -> the module that must be importable and the package that provides it.
_DRIVER_PACKAGES: dict[str, tuple[str, str]] = {
    "psycopg": ("psycopg", "psycopg[binary]"),
    "psycopg2": ("psycopg2", "psycopg2-binary"),
    "pymysql": ("pymysql", "pymysql"),
    "pg8000": ("pg8000", "pg8000"),
    "psycopg2cffi": ("psycopg2cffi", "psycopg2cffi"),
    "psycopg_async": ("psycopg", "psycopg[binary]"),
    "mysqlconnector": ("mysql.connector", "mysql-connector-python"),
    "mariadbconnector": ("mariadb", "mariadb"),
    "cymysql": ("cymysql", "cymysql"),
    "pysqlcipher": ("sqlcipher3", "sqlcipher3"),
    "mysqldb": ("MySQLdb", "mysqlclient"),
    "pyodbc": ("pyodbc", "pyodbc"),
    "asyncpg": ("asyncpg", "asyncpg"),
    "aiosqlite": ("aiosqlite", "aiosqlite"),
    "aiomysql": ("aiomysql", "aiomysql"),
    "asyncmy": ("asyncmy", "asyncmy"),
}


def parse_url(target: str | URL) -> URL:
    """Return ``target`` as a :class:`~sqlalchemy.URL`, refusing malformed strings.

    The original string is never repeated in the error: it may hold a password.
    """
    if isinstance(target, URL):
        return target
    try:
        return make_url(target)
    except (ArgumentError, ValueError):
        raise InvalidURLError(
            "The database URL is malformed; expected the form "
            "dialect+driver://user:password@host:port/database, "
            "for example postgresql+psycopg2://app@localhost/app or sqlite:///app.db."
        ) from None


def secrets_of(url: URL) -> list[str]:
    """Return the secret strings of ``url`` (password, secret query values), longest first."""
    found = [str(url.password)] if url.password else []
    for key, value in url.query.items():
        if key.lower() in _SECRET_QUERY_KEYS:
            found.extend([value] if isinstance(value, str) else list(value))
    return sorted((s for s in found if s), key=len, reverse=True)


def display_url(url: URL) -> str:
    """Render ``url`` for messages and logs, with its password and secret query values hidden.

    A colon in the database part is shown as itself (``sqlite:///:memory:``, not ``%3Amemory%3A``);
    everything else stays quoted, so that the URL shown names the same database when used again.
    """
    # A placeholder that URL quoting leaves alone stands in for each secret until the end.
    query = {k: (_PLACEHOLDER if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in url.query.items()}
    rendered = url.set(query=query).render_as_string(hide_password=True).replace(_PLACEHOLDER, _HIDDEN)
    if not url.database:
        return rendered
    start = rendered.index("/", rendered.index("://") + 3) + 1
    end = rendered.find("?", start)
    end = len(rendered) if end < 0 else end
    return rendered[:start] + rendered[start:end].replace("%3A", ":") + rendered[end:]


_PLACEHOLDER = "granite-assets-hidden-value"


# Secrets are hidden where they stand: in a URL's user part, after a key such as password=, and
# (when long enough to be told from ordinary words) as a word of their own, or anywhere once long
# enough to stand for nothing else. Replacing every
# substring would turn a one-letter password into holes in every word that holds that letter,
# which both mangles the message and spells the secret out.
_KEYED = r"(\b(?i:{keys})\s*[=:]\s*)(['\"]?){secret}(?=\2(?:$|[\s&;,)'\"]))"
_WORD_MIN, _ANYWHERE_MIN = 4, 8


def scrub(text: str, url: URL) -> str:
    """Return ``text`` with the secrets of ``url`` replaced by ``***`` wherever they stand as secrets."""
    keys = "|".join(_SECRET_QUERY_KEYS)
    shown = {url.username, url.host, url.database}
    for secret in secrets_of(url):
        quoted = re.escape(secret)
        text = re.sub(rf"(://[^/\s:@]*:){quoted}(?=@)", rf"\g<1>{_HIDDEN}", text)
        text = re.sub(_KEYED.format(keys=keys, secret=quoted), rf"\g<1>\g<2>{_HIDDEN}", text)
        if secret in shown:
            # Also the user, host or database that messages name and the URL shows: hiding the
            # word would hide what the message is about, and tell the password by where it hid.
            continue
        if len(secret) >= _ANYWHERE_MIN:  # too long to stand for anything else
            text = text.replace(secret, _HIDDEN)
        elif len(secret) >= _WORD_MIN:
            text = re.sub(rf"(?<!\w){quoted}(?!\w)", _HIDDEN, text)
    return text


def is_async(url: URL) -> bool:
    """Tell whether ``url`` names an async driver, refusing unknown dialects."""
    try:
        return _driver_is_async(url.drivername)
    except NoSuchModuleError:
        raise InvalidURLError(
            f"Unknown database dialect {url.drivername!r} in {display_url(url)}; "
            "use a dialect SQLAlchemy knows, such as postgresql, mysql or sqlite."
        ) from None


@cache
def _driver_is_async(drivername: str) -> bool:
    # Loading the dialect class costs more than the rest of a no-op upgrade on SQLite; it
    # depends on the driver name alone, so it is asked once per process.
    return bool(URL.create(drivername).get_dialect().is_async)


def to_sync_url(url: str | URL) -> str:
    """Return the URL with its async driver replaced by a synchronous one.

    ``postgresql+asyncpg`` becomes ``postgresql+psycopg`` (psycopg 3) when psycopg is installed,
    otherwise ``postgresql+psycopg2``; ``postgresql+psycopg_async`` becomes ``postgresql+psycopg``;
    ``sqlite+aiosqlite`` becomes ``sqlite+pysqlite``; ``mysql+aiomysql`` and ``mysql+asyncmy``
    become ``mysql+pymysql``; asyncpg's URL options become libpq's. Sync URLs come back
    unchanged. The password is kept: the result is meant to be passed on, not shown.
    """
    parsed = parse_url(url)
    return _swap_driver(parsed).render_as_string(hide_password=False)


def _swap_driver(url: URL) -> URL:
    choices = _SYNC_DRIVERS.get(url.get_driver_name())
    if not choices:
        return url
    installed = [d for d in choices if _driver_installed(d)]
    query = _libpq_query(url.query) if url.get_driver_name() == "asyncpg" else url.query
    return url.set(drivername=f"{url.get_backend_name()}+{(installed or choices)[0]}", query=query)


# asyncpg's URL options that libpq (psycopg 2 and 3) has no such option for: they tune asyncpg's
# statement cache and command timeout, and libpq would refuse the connection over them.
_ASYNCPG_ONLY = frozenset(
    {
        "prepared_statement_cache_size",
        "statement_cache_size",
        "max_cached_statement_lifetime",
        "max_cacheable_statement_size",
        "command_timeout",
        "direct_tls",
    }
)
_SSL_MODES = {"true": "require", "false": "disable"}


def _libpq_query(query: Mapping[str, str | tuple[str, ...]]) -> dict[str, str | tuple[str, ...]]:
    """Spell asyncpg's URL options as libpq's: ``ssl`` as ``sslmode``, ``timeout`` as ``connect_timeout``."""
    converted: dict[str, str | tuple[str, ...]] = {}
    for key, value in query.items():
        if key in _ASYNCPG_ONLY:
            continue
        if key == "ssl":  # libpq's own sslmode, when the URL has both, says it for libpq
            if isinstance(value, str) and "sslmode" not in query:
                converted["sslmode"] = _SSL_MODES.get(value.lower(), value)
        elif key == "timeout":
            if "connect_timeout" not in query:
                converted["connect_timeout"] = value
        else:
            converted[key] = value
    return converted


def _driver_installed(driver: str) -> bool:
    module = _DRIVER_PACKAGES.get(driver, (driver, driver))[0]
    try:
        return driver == "pysqlite" or importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted module whose package is missing: mysql.connector
        return False


def require_sync(url: URL) -> None:
    """Raise :class:`AsyncDriverURLError` when ``url`` names an async driver."""
    if not is_async(url):
        return
    sync = display_url(_swap_driver(url))
    raise AsyncDriverURLError(
        f"{display_url(url)} uses the async driver {url.get_driver_name()!r}, which "
        + advice(
            f"this synchronous call cannot use. Pass the sync URL {sync} instead "
            "(granite_assets.migrations.to_sync_url() converts it); to upgrade from async code, you "
            "may instead await granite_assets.migrations.upgrade_to_head_async() with your async engine.",
            "the command line cannot use. Give it the same database through a sync driver instead"
            f"{' (your password where *** stands)' if url.password else ''}: {sync}",
        ),
        sync_url=sync,
    )


def refused_options(url: URL, exc: BaseException | None) -> InvalidURLError:
    """The error for a URL whose options the dialect or the driver's connect() chokes on."""
    reason = one_line(scrub(str(exc), url), sentences=False)
    return InvalidURLError(
        f"The {url.get_driver_name()} driver refused the options of {display_url(url)} "
        f"({type(exc).__name__}: {reason}). Check the URL's query parameters, and any connect_args "
        "of your engine, against the driver's documentation."
    )


def missing_driver(url: URL, exc: ImportError) -> MissingDependencyError:
    """Build the error for a database driver that is not installed."""
    driver = url.get_driver_name()
    package = _DRIVER_PACKAGES.get(driver, (driver, driver))[1]
    return MissingDependencyError(
        f"The database driver {driver!r} for {display_url(url)} is not installed "
        f"({exc.name or exc}); install it with: pip install {package!r}"
    )
