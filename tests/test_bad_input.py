"""Bad input: each case raises a clear, documented exception, changes nothing, and leaks no password."""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ASYNC_DRIVERS, BACKENDS, Backend, Database, add_revision, fresh_database
from sqlalchemy import URL, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool
from support import holding_lock, login, new_password, snapshot, url_with_password

from granite_assets import migrations
from granite_assets.migrations import (
    VERSION_TABLE,
    AsyncDriverURLError,
    DatabaseAheadError,
    DatabaseConnectionError,
    InsufficientPrivilegeError,
    InvalidURLError,
    InvalidVersionTableError,
    MigrationError,
    MigrationFailedError,
    MissingDependencyError,
    _messages,
    _runner,
    _urls,
)
from granite_assets.migrations._backends import base as backend_base

SERVERS = ("postgresql", "mysql")
ALL = ("sqlite", "postgresql", "mysql")
# Drivers SQLAlchemy knows whose module is not installed here.
MISSING_DRIVERS = {"sqlite": "pysqlcipher", "postgresql": "psycopg2cffi", "mysql": "mysqldb"}
HOST_TABLE = "host_orders"

# Builds the URL handed to upgrade_to_head from the test database and the password to hide;
# may enter contexts (a login created for the test) on the stack.
Target = Callable[[Database, str, ExitStack], "str | URL"]


@dataclass(frozen=True)
class Case:
    """One kind of bad input."""

    name: str
    backends: tuple[str, ...]
    error: type[MigrationError]
    says: str | dict[str, str]  # part of the message the user reads (per backend, if it differs)
    target: Target
    prepare: tuple[str, ...] = ()  # statements that put the database in the bad state

    def says_on(self, backend: str) -> str:
        """What the message says on ``backend``."""
        return self.says if isinstance(self.says, str) else self.says[backend]


def fake_password(database: Database, password: str, _stack: ExitStack) -> URL:
    """The test database's URL with ``password``, for cases refused before any login."""
    return database.url.set(username=database.url.username or "someone", password=password)


def real_login(database: Database, password: str, stack: ExitStack) -> str:
    """A URL that logs in to the test database with ``password`` (a plain URL on SQLite)."""
    return stack.enter_context(url_with_password(database, password))


def malformed(database: Database, password: str, _stack: ExitStack) -> str:
    return f"{database.url.drivername}://someone:{password}@127.0.0.1:notaport/{database.url.database}"


def unknown_dialect(database: Database, password: str, _stack: ExitStack) -> str:
    return f"nosuchdatabase://someone:{password}@127.0.0.1/{database.url.database}"


def sqlite_with_host(database: Database, password: str, _stack: ExitStack) -> str:
    return f"sqlite+pysqlite://someone:{password}@somehost/{database.url.database}"


def missing_driver(database: Database, password: str, stack: ExitStack) -> URL:
    driver = MISSING_DRIVERS[database.backend.name]
    return fake_password(database, password, stack).set(drivername=f"{database.backend.name}+{driver}")


def unreachable(database: Database, password: str, stack: ExitStack) -> URL:
    with socket.socket() as probe:  # a port nothing listens on: bound, then closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return fake_password(database, password, stack).set(host="127.0.0.1", port=port)


def silent_server(database: Database, password: str, stack: ExitStack) -> URL:
    """A server that accepts the TCP connection and never answers: the connect wait must end."""
    patch = stack.enter_context(pytest.MonkeyPatch.context())
    patch.setattr(backend_base, "CONNECT_TIMEOUT", 2)
    listener = stack.enter_context(socket.socket())
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # the kernel completes the handshake; nothing ever reads or answers
    port = listener.getsockname()[1]
    return fake_password(database, password, stack).set(host="127.0.0.1", port=port)


def missing_folder(database: Database, _password: str, _stack: ExitStack) -> URL:
    return database.url.set(database=f"{database.url.database}.missing/folder/app.db")


def not_a_database(database: Database, _password: str, _stack: ExitStack) -> URL:
    garbage = Path(f"{database.url.database}.txt")
    garbage.write_text("These are an application's notes, not a SQLite database.\n" * 200, encoding="utf-8")
    return database.url.set(database=str(garbage))


def in_memory(_database: Database, _password: str, _stack: ExitStack) -> str:
    return "sqlite://"


def no_such_database(database: Database, password: str, stack: ExitStack) -> URL:
    return stack.enter_context(login(database, password, "owner")).set(
        database=f"{database.url.database}_gone"
    )


def no_database_named(database: Database, password: str, stack: ExitStack) -> URL:
    url = stack.enter_context(login(database, password, "owner"))  # url.set(database=None) changes nothing
    return URL.create(url.drivername, url.username, url.password, url.host, url.port)


def refused_login(database: Database, password: str, stack: ExitStack) -> URL:
    return stack.enter_context(login(database, password, "refused"))


def read_only(database: Database, password: str, stack: ExitStack) -> URL:
    if database.backend.name == "sqlite":
        return URL.create(
            "sqlite+pysqlite", database=f"file:{database.url.database}", query={"mode": "ro", "uri": "true"}
        )
    return stack.enter_context(login(database, password, "read"))


def async_driver(database: Database, password: str, stack: ExitStack) -> URL:
    driver = ASYNC_DRIVERS[database.backend.name]
    return fake_password(database, password, stack).set(drivername=f"{database.backend.name}+{driver}")


def version_table(*rows: str) -> tuple[str, ...]:
    """Statements that create granite-assets' version table holding ``rows``."""
    return (
        f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
        *(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES ('{row}')" for row in rows),
    )


def foreign_version_table() -> tuple[str, ...]:
    """Statements that make a table of granite-assets' version table's name, with another tool's columns."""
    return (
        f"CREATE TABLE {VERSION_TABLE} (id INTEGER PRIMARY KEY, applied_at VARCHAR(40))",
        f"INSERT INTO {VERSION_TABLE} (id, applied_at) VALUES (1, 'yesterday')",
    )


CASES = [
    Case("malformed-url", ALL, InvalidURLError, "malformed", malformed),
    Case("unknown-dialect", ALL, InvalidURLError, "Unknown database dialect", unknown_dialect),
    Case("sqlite-url-with-a-host", ("sqlite",), InvalidURLError, "cannot be used", sqlite_with_host),
    Case("missing-driver", ALL, MissingDependencyError, "is not installed", missing_driver),
    Case("unreachable-server", SERVERS, DatabaseConnectionError, "server is running", unreachable),
    Case("sqlite-folder-missing", ("sqlite",), DatabaseConnectionError, "folder exists", missing_folder),
    Case(
        "sqlite-not-a-database",
        ("sqlite",),
        DatabaseConnectionError,
        "is not a SQLite database",
        not_a_database,
    ),
    Case("sqlite-in-memory", ("sqlite",), InvalidURLError, "StaticPool", in_memory),
    Case(
        "no-such-database",
        SERVERS,
        DatabaseConnectionError,
        # MariaDB tells a user without rights to a database only that it may not use it.
        {"postgresql": "does not exist on that server", "mysql": "or it does not exist"},
        no_such_database,
    ),
    # Not on MariaDB: PyMySQL's connect_timeout bounds only the TCP connect, then it waits for the
    # server's greeting without limit (its read_timeout would also cut GET_LOCK's server-side wait).
    Case("silent-server", ("postgresql",), DatabaseConnectionError, "Could not connect", silent_server),
    Case("refused-login", SERVERS, DatabaseConnectionError, "Could not connect", refused_login),
    Case("mysql-no-database-named", ("mysql",), InvalidURLError, "names no database", no_database_named),
    Case(
        "may-not-create-tables",
        ALL,
        MigrationFailedError,
        {
            "sqlite": "may write the database file",
            "postgresql": "may not change the schema",
            "mysql": "may not change the schema",
        },
        read_only,
    ),
    Case(
        "foreign-version-table",
        ALL,
        InvalidVersionTableError,
        "is not granite-assets' version table",
        real_login,
        foreign_version_table(),
    ),
    Case(
        "two-version-rows",
        ALL,
        InvalidVersionTableError,
        "holds 2 rows (0001, 0002)",
        real_login,
        version_table("0001", "0002"),
    ),
    Case(
        "empty-version-row",
        ALL,
        InvalidVersionTableError,
        "holds an empty revision",
        real_login,
        version_table(""),
    ),
    Case(
        "unknown-revision",
        ALL,
        DatabaseAheadError,
        "revision 9999, which this release does not ship",
        real_login,
        version_table("9999"),
    ),
    Case("async-url", ALL, AsyncDriverURLError, "Pass the sync URL", async_driver),
]


def case_params() -> list[object]:
    """Each case on each backend it applies to, marked with the backend's marker."""
    params: list[object] = []
    for case in CASES:
        for backend in BACKENDS:
            if backend.name in case.backends:
                marks = getattr(pytest.mark, backend.name)
                params.append(pytest.param(backend, case, id=f"{case.name}-{backend.id}", marks=marks))
    return params


@pytest.mark.parametrize(("backend", "case"), case_params(), indirect=["backend"])
def test_bad_input_is_refused_clearly(
    backend: Backend, case: Case, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Each bad input raises its documented exception, leaves the database alone, and hides the password."""
    assert database.backend == backend
    for name in ("granite_assets", "alembic", "sqlalchemy"):
        caplog.set_level(logging.DEBUG, logger=name)
    database.execute(f"CREATE TABLE {HOST_TABLE} (id INTEGER PRIMARY KEY)", *case.prepare)
    before = snapshot(database)
    password = new_password()
    with ExitStack() as stack:
        target = case.target(database, password, stack)
        caplog.clear()  # only what the call logs: the test's own CREATE USER holds the password
        with pytest.raises(case.error) as caught:
            migrations.upgrade_to_head(target, lock_timeout=5)
        after = snapshot(database)
    error = caught.value
    assert case.says_on(backend.name) in str(error)
    assert after == before
    assert password not in str(error)
    assert password not in "".join(traceback.format_exception(error))
    assert password not in repr(vars(error))
    assert all(password not in record.getMessage() for record in caplog.records)
    if isinstance(error, AsyncDriverURLError):
        sync_driver = {"sqlite": "pysqlite", "postgresql": "psycopg", "mysql": "pymysql"}[backend.name]
        assert error.sync_url.startswith(f"{backend.name}+{sync_driver}://")
        assert error.sync_url in str(error)
    if isinstance(error, MigrationFailedError):
        assert error.revision is None  # the version table could not be created: no revision ran
        # A server says the login lacks a privilege; a read-only SQLite file has no login.
        assert isinstance(error, InsufficientPrivilegeError) == (backend.name != "sqlite")


def free_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.postgresql
def test_pg8000_connects_and_fails_clearly(tmp_path: Path) -> None:
    """pg8000 takes its connect timeout as timeout=: the upgrade works, and a dead server is a clear error."""
    with fresh_database(Backend("postgresql", "pg8000"), tmp_path) as database:
        assert migrations.upgrade_to_head(database.url) == migrations.head_revision()
        with pytest.raises(DatabaseConnectionError, match="server is running"):
            migrations.upgrade_to_head(database.url.set(port=free_port()))
        with pytest.raises(DatabaseConnectionError) as caught:  # the server's words, not pg8000's dict
            migrations.upgrade_to_head(database.url.set(database=f"{database.url.database}_gone"))
        assert f'database "{database.url.database}_gone" does not exist.' in str(caught.value)
        assert "does not exist on that server" in str(caught.value)
        assert "{" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "error", "says"),
    [
        pytest.param(
            "postgresql+asyncpg://app:{password}@127.0.0.1:{port}/app",
            DatabaseConnectionError,
            "server is running",
            id="asyncpg-unreachable",
            marks=pytest.mark.postgresql,
        ),
        pytest.param(
            "mysql+aiomysql://app:{password}@127.0.0.1:{port}/app",
            DatabaseConnectionError,
            "server is running",
            id="aiomysql-unreachable",
            marks=pytest.mark.mysql,
        ),
        pytest.param(
            "sqlite+aiosqlite://app:{password}@somehost/app.db",
            InvalidURLError,
            "cannot be used",
            id="aiosqlite-url-with-a-host",
            marks=pytest.mark.sqlite,
        ),
        pytest.param(
            "sqlite+aiosqlite://",
            InvalidURLError,
            "StaticPool",
            id="aiosqlite-in-memory",
            marks=pytest.mark.sqlite,
        ),
    ],
)
def test_async_entry_point_refuses_clearly(url: str, error: type[MigrationError], says: str) -> None:
    """The async entry point raises the same documented errors as the sync one, never a driver's raw error."""
    password = new_password()
    with pytest.raises(error) as caught:
        asyncio.run(migrations.upgrade_to_head_async(url.format(password=password, port=free_port())))
    assert says in str(caught.value)
    assert password not in "".join(traceback.format_exception(caught.value))


@pytest.mark.sqlite
@pytest.mark.parametrize("value", [math.nan, -1.0, "soon"])
def test_lock_timeout_must_be_zero_or_more_seconds(tmp_path: Path, value: object) -> None:
    """NaN, a negative number or a non-number is a ValueError naming lock_timeout, before any connection."""
    url = f"sqlite:///{tmp_path}/app.db"
    with pytest.raises(ValueError, match="lock_timeout"):
        migrations.upgrade_to_head(url, lock_timeout=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lock_timeout"):
        migrations.downgrade(url, "base", lock_timeout=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lock_timeout"):
        asyncio.run(migrations.upgrade_to_head_async(url, lock_timeout=value))  # type: ignore[arg-type]
    assert not (tmp_path / "app.db").exists()


def test_infinite_lock_timeout_means_no_limit(database: Database, environment_copy: Path) -> None:
    """lock_timeout=math.inf works on every backend: a wait for a held lock ends when it is released."""
    add_revision(environment_copy, "0002", "0001", message="second")
    held = threading.Event()

    def hold_for_a_while() -> None:
        with holding_lock(database):
            held.set()
            time.sleep(1)

    holder = threading.Thread(target=hold_for_a_while)
    holder.start()
    try:
        assert held.wait(30)
        assert _runner.upgrade(environment_copy, database.url_string, math.inf) == "0002"
    finally:
        holder.join()
    assert _runner.downgrade(environment_copy, database.url_string, "0001", math.inf) == "0001"


@pytest.mark.parametrize("password", ["e", "ab"], ids=["one-letter", "two-letter"])
@pytest.mark.parametrize(
    "backend", [b for b in BACKENDS if b.name != "sqlite"], indirect=True, ids=lambda b: b.id
)
def test_short_password_is_hidden_where_it_stands_without_mangling_the_message(
    database: Database, password: str
) -> None:
    """A one- or two-letter password is hidden in the URL, while the server's words stay whole."""
    with login(database, password, "refused") as url, pytest.raises(DatabaseConnectionError) as caught:
        migrations.upgrade_to_head(url)
    message = str(caught.value)
    assert f":{password}@" not in message
    assert f"{url.username}:***@" in message
    whole = (
        "is not permitted to log in" if database.backend.name == "postgresql" else "Access denied for user"
    )
    assert whole in message
    assert "Could not connect to" in message


@pytest.mark.parametrize("key", ["password", "sslpassword", "token"])
def test_secret_query_parameters_are_hidden_in_every_displayed_url(key: str) -> None:
    """A secret passed as a query parameter is hidden in messages, as the URL's password is."""
    secret = new_password()
    url = f"postgresql+asyncpg://app@db.example/app?{key}={secret}&application_name=web"
    with pytest.raises(AsyncDriverURLError) as caught:
        migrations.upgrade_to_head(url)
    assert secret not in str(caught.value)
    assert secret not in caught.value.sync_url
    assert f"{key}=***" in str(caught.value)
    assert "application_name=web" in str(caught.value)


@pytest.mark.parametrize(
    "echo", ["password={secret} host=db", "password='{secret}'", "postgresql://app:{secret}@db/x"]
)
@pytest.mark.parametrize(
    "backend", [b for b in BACKENDS if b.name != "sqlite"], indirect=True, ids=lambda b: b.id
)
@pytest.mark.parametrize("secret", ["q7z", new_password()], ids=["short", "long"])
def test_password_echoed_by_the_driver_is_hidden(database: Database, echo: str, secret: str) -> None:
    """A driver's message repeating the password (some do, for a malformed connection string) is scrubbed."""
    engine = create_engine(database.url.set(password=secret), poolclass=NullPool)

    @event.listens_for(engine, "do_connect")
    def refuse(*_args: object) -> None:
        raise engine.dialect.loaded_dbapi.OperationalError(
            f"invalid connection string: {echo.format(secret=secret)}"
        )

    try:
        with pytest.raises(DatabaseConnectionError) as caught:
            migrations.upgrade_to_head(engine)
    finally:
        engine.dispose()
    shown = "".join(traceback.format_exception(caught.value))
    assert echo.format(secret=secret) not in shown
    assert echo.format(secret="***") in shown  # noqa: S106 - the hidden form, not a password


@pytest.mark.parametrize(
    "backend", [b for b in BACKENDS if b.name != "sqlite"], indirect=True, ids=lambda b: b.id
)
@pytest.mark.parametrize("failure", ["login refused", "no such database"])
def test_a_connection_error_holds_no_driver_exception(database: Database, failure: str) -> None:
    """The driver's exception stays out of the chain: psycopg 3's keeps the password on its connection."""
    password = new_password()
    with ExitStack() as stack:
        if failure == "login refused":
            url = stack.enter_context(login(database, password, "refused"))
        else:
            url = database.url.set(password=password, database=f"ga_missing_{uuid.uuid4().hex[:8]}")
        with pytest.raises(DatabaseConnectionError) as caught:
            migrations.upgrade_to_head(url)
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None


@pytest.mark.parametrize(
    "backend", [b for b in BACKENDS if b.name != "sqlite"], indirect=True, ids=lambda b: b.id
)
def test_a_password_equal_to_the_user_name_leaves_the_servers_words_whole(database: Database) -> None:
    """Hiding a password that is also the user name would hide the user and tell the password."""
    user = f"ga_user_{uuid.uuid4().hex[:10]}"
    with login(database, user, "refused", user=user) as url, pytest.raises(DatabaseConnectionError) as caught:
        migrations.upgrade_to_head(url)
    message = str(caught.value)
    assert f"{user}:***@" in message
    named = f'role "{user}"' if database.backend.name == "postgresql" else f"user '{user}'"
    assert named in message


@pytest.mark.parametrize(
    ("password", "text", "kept"),
    [
        ("yes", "Access denied (using password: YES)", "password: YES"),
        ("app1", "connect to app1.internal as app1 failed", "app1.internal as app1"),
    ],
)
def test_a_password_is_hidden_only_where_it_stands_as_the_password(
    password: str, text: str, kept: str
) -> None:
    """A password that matches another word only by case, or that is also the user or host, is left in it."""
    url = URL.create("mysql+pymysql", username="app1", password=password, host="app1.internal")
    assert kept in _urls.scrub(text, url)
    assert _urls.scrub(f"password={password} x", url) == "password=*** x"


@pytest.mark.parametrize("key", ["sslpassword", "token", "password", "secret", "PWD"])
@pytest.mark.parametrize("value", ["hunter2hunter2", "pw7!"])
def test_a_secret_query_value_echoed_by_a_driver_is_hidden(key: str, value: str) -> None:
    """A secret given as a URL option is hidden wherever a driver's message repeats it."""
    url = make_url(f"postgresql+psycopg://app@db.internal/app?sslmode=require&{key}={value}")
    echoed = (
        f"connection to server failed: {key}={value} rejected; could not decrypt the key with '{value}' "
        f"(dsn: host=db.internal {key}={value} sslmode=require)"
    )
    scrubbed = _urls.scrub(echoed, url)
    assert value not in scrubbed
    assert f"{key}=***" in scrubbed
    assert value not in _urls.display_url(url)


@pytest.mark.postgresql
def test_pg8000_aborted_transaction_says_to_roll_back(tmp_path: Path) -> None:
    """pg8000 gives its SQLSTATE in a dict, read as psycopg's is: an aborted transaction is told apart."""
    with fresh_database(Backend("postgresql", "pg8000"), tmp_path) as database:
        engine = create_engine(database.url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                with pytest.raises(DBAPIError):
                    connection.exec_driver_sql("SELECT 1/0")
                with pytest.raises(MigrationError, match="roll it back"):
                    migrations.current_revision(connection)
                connection.rollback()
        finally:
            engine.dispose()


@pytest.mark.parametrize(
    ("backend", "query"),
    [
        pytest.param(Backend("postgresql", "pg8000"), "sslmode=require", marks=pytest.mark.postgresql),
        pytest.param(Backend("mysql", "pymysql"), "ssl=true", marks=pytest.mark.mysql),
        pytest.param(Backend("mysql", "pymysql"), "sslmode=require", marks=pytest.mark.mysql),
        pytest.param(Backend("sqlite", "pysqlite"), "timeout=abc", marks=pytest.mark.sqlite),
        pytest.param(Backend("postgresql", "psycopg2"), "foo=bar", marks=pytest.mark.postgresql),
        pytest.param(Backend("postgresql", "psycopg"), "foo=bar", marks=pytest.mark.postgresql),
    ],
    ids=[
        "pg8000-sslmode",
        "pymysql-ssl-true",
        "pymysql-sslmode",
        "sqlite-timeout-abc",
        "psycopg2-unknown",
        "psycopg-unknown",
    ],
)
def test_a_query_parameter_the_driver_refuses_is_an_invalid_url(
    backend: Backend, query: str, tmp_path: Path
) -> None:
    """A URL option the driver refuses with a TypeError or the like is InvalidURLError naming it."""
    password = new_password()
    with fresh_database(backend, tmp_path) as database:
        migrations.upgrade_to_head(database.url_string)  # so that the SQLite file exists
        url = database.url.set(password=None if backend.name == "sqlite" else password)
        given = f"{url.render_as_string(hide_password=False)}?{query}"
        for call in (migrations.current_revision, migrations.upgrade_to_head):
            with pytest.raises(InvalidURLError, match="refused the options") as caught:
                call(given)
            assert password not in str(caught.value)
            assert query.split("=", maxsplit=1)[0] in str(caught.value)


@pytest.mark.parametrize(
    ("message", "folded"),
    [
        (
            (
                "server closed the connection unexpectedly\n\tThis probably means the server "
                "terminated abnormally\n\tbefore or while processing the request.\n"
            ),
            (
                "server closed the connection unexpectedly. This probably means the server "
                "terminated abnormally before or while processing the request."
            ),
        ),
        (
            'syntax error at or near ")"\nLINE 2: CREATE TABLE granite_assets_x ()\n' + " " * 37 + "^\n",
            'syntax error at or near ")". LINE 2: CREATE TABLE granite_assets_x ().',
        ),
        ("file is not a database", "file is not a database."),
    ],
    ids=["libpq-wrapped", "postgresql-caret", "one-line"],
)
def test_a_drivers_message_is_folded_into_sentences(message: str, folded: str) -> None:
    """Wrapped lines join the sentence they continue, and PostgreSQL's caret line is left out."""
    assert _messages.one_line(message) == folded


@pytest.mark.parametrize(
    "backend", [b for b in BACKENDS if b.name == "postgresql"], indirect=True, ids=lambda b: b.id
)
def test_a_role_that_may_not_log_in_is_told_to_check_the_login(database: Database) -> None:
    """A refused login gets login advice on every driver, not advice to check that the server runs."""
    with login(database, new_password(), "refused") as url, pytest.raises(DatabaseConnectionError) as caught:
        migrations.upgrade_to_head(url)
    assert "Check the user name and password" in str(caught.value)
    assert "server is running" not in str(caught.value)


@pytest.mark.parametrize(
    ("driver", "package"),
    [
        ("mysqlconnector", "mysql-connector-python"),
        ("mariadbconnector", "mariadb"),
        ("mysqldb", "mysqlclient"),
        ("psycopg2cffi", "psycopg2cffi"),
        ("pysqlcipher", "sqlcipher3"),
    ],
)
def test_a_missing_driver_names_the_package_that_provides_it(driver: str, package: str) -> None:
    """The install hint names the package on the index that provides the driver, not the driver's name."""
    backend = {"mysqlconnector": "mysql", "mariadbconnector": "mariadb", "mysqldb": "mysql"}.get(
        driver, "sqlite" if driver == "pysqlcipher" else "postgresql"
    )
    url = f"{backend}+{driver}://app@127.0.0.1/app" if backend != "sqlite" else f"sqlite+{driver}:///app.db"
    with pytest.raises(MissingDependencyError) as caught:
        migrations.current_revision(url)
    assert f"pip install {package!r}" in str(caught.value)


def test_each_installed_drivers_hint_is_a_package_that_provides_it() -> None:
    """For every driver installed here, the package the hint names really provides its module."""
    from importlib.metadata import packages_distributions

    provided = packages_distributions()
    for driver, (module, package) in _urls._DRIVER_PACKAGES.items():
        top = module.split(".")[0]
        if top in provided:
            assert package.split("[")[0].lower() in {d.lower() for d in provided[top]}, driver


@pytest.mark.parametrize(
    "url",
    [
        URL.create("sqlite+aiosqlite", database="/srv/a?b#c.db"),
        URL.create("sqlite+aiosqlite", database="/srv/app%3Fv2 x.db"),
        URL.create("postgresql+asyncpg", username="app", host="db", database="db/with?odd#chars"),
        URL.create("mysql+aiomysql", username="app", host="db", database="d b%20x"),
        URL.create("sqlite+aiosqlite", database="file:/srv/app.db?mode=rw", query={"uri": "true"}),
    ],
)
def test_a_url_shown_in_a_message_names_the_same_database_again(url: URL) -> None:
    """The URL a message shows (and the sync URL it advises) names the database SQLAlchemy's own URL does.

    SQLAlchemy 2.1 quotes such names when it renders a URL; 2.0 cannot put them in a URL at all.
    """
    named = make_url(url.render_as_string(hide_password=False)).database
    assert make_url(_urls.display_url(url)).database == named
    with pytest.raises(AsyncDriverURLError) as caught:
        migrations.current_revision(url)
    assert make_url(caught.value.sync_url).database == named


def test_an_in_memory_url_is_shown_as_typed() -> None:
    """A colon in the database part is shown as itself, not percent-encoded."""
    assert _urls.display_url(make_url("sqlite:///:memory:")) == "sqlite:///:memory:"


def test_a_message_quoted_inside_another_keeps_its_own_punctuation() -> None:
    """A driver's words quoted in parentheses are folded onto one line, with no full stop added inside."""
    error = _urls.refused_options(
        make_url("postgresql+psycopg2://app@db/app"), ValueError('bad "x"\n  option')
    )
    assert '(ValueError: bad "x" option).' in str(error)
