"""Two database users: one migrates, the application's may only read and write rows.

Each test makes a migration user, which may create tables, and a runtime login, which starts
with nothing on granite-assets' tables and gets what ``granite-assets db grants`` prints (applied
as the server's administrator, as a DBA would). On PostgreSQL the test database's ``public``
schema is closed to PUBLIC first, as hardened servers do, so the runtime role has exactly what
the printed statements give it. On MariaDB the runtime user may use one table of the host's own,
as an application would, and its password is one letter long.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    ASYNC_DRIVERS,
    BACKENDS,
    Backend,
    Database,
    _admin_execute,
    add_revision,
    backend_params,
    require_server,
)
from sqlalchemy import URL, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool
from support import lock_is_free, new_password, snapshot
from test_cli import granite_assets

from granite_assets import migrations
from granite_assets._cli import EXIT_MIGRATION_ERROR, EXIT_OK, EXIT_USAGE
from granite_assets.migrations import (
    DatabaseAheadError,
    InsufficientPrivilegeError,
    MigrationFailedError,
    _async,
    _runner,
    check_up_to_date,
    current_revision,
    grants_sql,
    head_revision,
    require_revision,
    upgrade_to_head,
)
from granite_assets.migrations._backends import backend_for
from granite_assets.migrations._manifest import write_manifest
from granite_assets.migrations._names import COMPATIBILITY_TABLE, VERSION_TABLE
from granite_assets.migrations._privileges import Layout
from granite_assets.migrations._urls import display_url

SERVERS = [b for b in BACKENDS if b.name != "sqlite"]
POSTGRESQL = [b for b in SERVERS if b.name == "postgresql"]
#: One driver per server, for the tests whose driver makes no difference.
ONE_DRIVER_EACH = [b for b in SERVERS if b.driver in {"psycopg2", "pymysql"}]
LOCK_TIMEOUT = 30.0
HOST_TABLE = "host_orders"
NEW_TABLE = "granite_assets_t0002"


def servers(backends: list[Backend]) -> pytest.MarkDecorator:
    """Run the test on each of ``backends``, marked with its backend's marker."""
    return pytest.mark.parametrize("backend", backend_params(backends), indirect=True)


@dataclass(frozen=True)
class Logins:
    """The two users of one test database, and its administrator."""

    database: Database
    migration: URL
    runtime: URL
    role: str  # the runtime login's name, as `db grants --role` takes it
    password: str  # the runtime login's password

    @property
    def runtime_string(self) -> str:
        """The runtime URL with its password, as an application would hold it."""
        return self.runtime.render_as_string(hide_password=False)

    def runtime_async(self) -> str:
        """The runtime URL through the backend's async driver."""
        driver = ASYNC_DRIVERS[self.database.backend.name]
        url = self.runtime.set(drivername=f"{self.database.backend.name}+{driver}")
        return url.render_as_string(hide_password=False)

    def apply(self, script: str) -> None:
        """Run the statements of a ``db grants`` script as the server's administrator."""
        engine = create_engine(self.database.url, poolclass=NullPool)
        try:
            with engine.begin() as connection:
                for statement in statements(script):
                    connection.exec_driver_sql(statement)
        finally:
            engine.dispose()

    def grant_printed(self, **options: object) -> str:
        """Print the grants for the runtime login from the migration user's URL, and apply them."""
        script = grants_sql(self.migration, self.role, **options)  # type: ignore[arg-type]
        self.apply(script)
        return script

    def hidden(self, *texts: str) -> None:
        """Check that the runtime password shows in none of ``texts`` (a short one: not as a password)."""
        for shown in texts:
            if len(self.password) >= 4:
                assert self.password not in shown
            else:  # a letter is in every word: look where a password stands
                assert f":{self.password}@" not in shown
                assert f"'{self.password}'" not in shown


def statements(script: str) -> list[str]:
    """The statements of a SQL script whose statements end their line with a semicolon, each on one line."""
    body = "\n".join(line for line in script.splitlines() if not line.startswith("--"))
    return [" ".join(s.split()).removesuffix(";") for s in body.split(";\n") if s.strip().rstrip(";")]


def prose(script: str) -> str:
    """The comments of a SQL script, joined into one line."""
    return " ".join(line.removeprefix("-- ") for line in script.splitlines() if line.startswith("--"))


@contextmanager
def two_logins(database: Database) -> Iterator[Logins]:
    """A migration user and a runtime login for ``database``, dropped afterwards."""
    backend = database.backend.name
    admin = require_server(backend)
    suffix = uuid.uuid4().hex[:10]
    migrator, runtime = f"ga_mig_{suffix}", f"ga_rt_{suffix}"
    if backend == "postgresql":
        password = new_password()
        database.execute(
            "REVOKE ALL ON SCHEMA public FROM PUBLIC",
            f"CREATE ROLE {migrator} LOGIN",
            f"CREATE ROLE {runtime} LOGIN PASSWORD '{password}'",
            f"GRANT USAGE, CREATE ON SCHEMA public TO {migrator}",
        )
        try:
            yield Logins(
                database,
                database.url.set(username=migrator, password=None),
                database.url.set(username=runtime, password=password),
                runtime,
                password,
            )
        finally:
            database.execute(f"DROP OWNED BY {runtime}", f"DROP OWNED BY {migrator}")
            _admin_execute(admin, f"DROP ROLE IF EXISTS {runtime}")
            _admin_execute(admin, f"DROP ROLE IF EXISTS {migrator}")
        return
    password, migrator_password = "e", new_password()
    name = database.url.database
    _admin_execute(admin, f"CREATE USER '{migrator}'@'%' IDENTIFIED BY '{migrator_password}'")
    _admin_execute(admin, f"CREATE USER '{runtime}'@'%' IDENTIFIED BY '{password}'")
    try:
        database.execute(f"CREATE TABLE {HOST_TABLE} (id INTEGER PRIMARY KEY)")
        _admin_execute(admin, f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{migrator}'@'%'")
        _admin_execute(admin, f"GRANT SELECT, INSERT ON `{name}`.`{HOST_TABLE}` TO '{runtime}'@'%'")
        yield Logins(
            database,
            database.url.set(username=migrator, password=migrator_password),
            database.url.set(username=runtime, password=password),
            runtime,
            password,
        )
    finally:
        _admin_execute(admin, f"DROP USER IF EXISTS '{runtime}'@'%'")
        _admin_execute(admin, f"DROP USER IF EXISTS '{migrator}'@'%'")


@pytest.fixture
def logins(database: Database) -> Iterator[Logins]:
    """The migration user and the runtime login of the test database."""
    with two_logins(database) as pair:
        yield pair


@contextmanager
def recorded(engine: Engine) -> Iterator[list[str]]:
    """Every statement ``engine`` sends to the server in the block."""
    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def runtime_login_name(logins: Logins) -> str:
    """The runtime login as the server names it in privilege checks."""
    return logins.role if logins.database.backend.name == "postgresql" else f"{logins.role}@%"


@servers(SERVERS)
def test_the_printed_grants_are_enough_for_every_read_path(logins: Logins) -> None:
    """With only what db grants prints, the runtime login checks, reads and no-op upgrades, running no DDL."""
    assert upgrade_to_head(logins.migration) == head_revision()
    logins.grant_printed()
    url = logins.runtime_string
    assert current_revision(url) == head_revision()
    assert check_up_to_date(url) == head_revision()
    assert asyncio.run(migrations.upgrade_to_head_async(logins.runtime_async())) == head_revision()
    engine = create_engine(url, poolclass=NullPool)
    try:
        engine.connect().close()  # the dialect's own first queries are not the call's
        with recorded(engine) as sent:
            assert upgrade_to_head(engine) == head_revision()
        assert sent, "the no-op upgrade read nothing"
        assert all(s.lstrip().upper().startswith("SELECT") for s in sent), sent
        with engine.begin() as connection:
            assert require_revision(connection, "0001") == head_revision()
    finally:
        engine.dispose()


@servers(SERVERS)
def test_a_pending_upgrade_as_the_runtime_login_is_refused_and_changes_nothing(
    logins: Logins, environment_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Revisions pending: the runtime login's upgrade says it may not change the schema, and who should."""
    caplog.set_level(logging.DEBUG, logger="granite_assets")
    upgrade_to_head(logins.migration)
    logins.grant_printed()
    add_revision(
        environment_copy,
        "0002",
        "0001",
        f'op.create_table("{NEW_TABLE}", sa.Column("id", sa.Integer, primary_key=True))',
        f'op.drop_table("{NEW_TABLE}")',
        message="add a table",
    )
    before = snapshot(logins.database)
    caplog.clear()
    with pytest.raises(InsufficientPrivilegeError) as caught:
        _runner.upgrade(environment_copy, logins.runtime_string, LOCK_TIMEOUT)
    error = caught.value
    message = str(error)
    assert isinstance(error, MigrationFailedError)
    assert error.revision == "0002"
    assert error.login == runtime_login_name(logins)
    assert error.statement is not None
    assert error.statement.startswith(f"CREATE TABLE {NEW_TABLE}")
    assert f"granite-assets revision 0002 (add a table) failed on {display_url(logins.runtime)}" in message
    assert f"the login {runtime_login_name(logins)} may not change the schema" in message
    assert f"refused `{error.statement}`" in message
    assert "The database is at revision 0001" in message
    assert "Run the upgrade as the migration user, the owner of granite-assets' tables" in message
    assert snapshot(logins.database) == before
    assert lock_is_free(logins.database)
    logins.hidden(
        message, "".join(traceback.format_exception(error)), *(r.getMessage() for r in caplog.records)
    )

    with pytest.raises(InsufficientPrivilegeError, match="may not change the schema"):
        asyncio.run(_async.upgrade_async(environment_copy, logins.runtime_async(), LOCK_TIMEOUT))
    assert snapshot(logins.database) == before

    assert _runner.upgrade(environment_copy, logins.migration, LOCK_TIMEOUT) == "0002"
    assert _runner.check_up_to_date(environment_copy, logins.runtime_string, LOCK_TIMEOUT) == "0002"


@servers(SERVERS)
def test_a_pending_upgrade_in_the_runtime_logins_transaction_is_refused(
    logins: Logins, environment_copy: Path
) -> None:
    """On a connection of the caller's (in its transaction where the backend allows one), it is refused."""
    upgrade_to_head(logins.migration)
    logins.grant_printed()
    add_revision(
        environment_copy,
        "0002",
        "0001",
        f'op.create_table("{NEW_TABLE}", sa.Column("id", sa.Integer, primary_key=True))',
        f'op.drop_table("{NEW_TABLE}")',
    )
    before = snapshot(logins.database)
    engine = create_engine(logins.runtime_string, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            postgresql = logins.database.backend.name == "postgresql"
            if postgresql:  # MariaDB refuses a transaction with revisions pending, before anything
                connection.begin()
            with pytest.raises(InsufficientPrivilegeError) as caught:
                _runner.upgrade(environment_copy, connection, LOCK_TIMEOUT)
            connection.rollback()
    finally:
        engine.dispose()
    # The caller's aborted transaction is not asked who it is: the URL says.
    assert caught.value.login == (logins.role if postgresql else runtime_login_name(logins))
    assert "may not change the schema" in str(caught.value)
    assert snapshot(logins.database) == before


@servers(ONE_DRIVER_EACH)
def test_the_runtime_login_on_a_database_never_migrated_is_told_what_to_do(logins: Logins) -> None:
    """A first deploy run as the runtime login changes nothing, and says to run it as the migration user."""
    postgresql = logins.database.backend.name == "postgresql"
    if postgresql:  # before any table exists, the printed grants are USAGE and default privileges
        script = logins.grant_printed()
        assert "has no tables in the schema public yet" in script
    before = snapshot(logins.database)
    with pytest.raises(InsufficientPrivilegeError) as caught:
        upgrade_to_head(logins.runtime_string, lock_timeout=LOCK_TIMEOUT)
    error, message = caught.value, str(caught.value)
    assert snapshot(logins.database) == before
    logins.hidden(message, "".join(traceback.format_exception(error)))
    if postgresql:  # the table's absence shows: the version table cannot be created
        assert error.revision is None
        assert error.statement == f"CREATE TABLE {VERSION_TABLE} ("
        assert "may not change the schema" in message
        assert "Run the upgrade as the migration user" in message
        assert current_revision(logins.runtime_string) is None
        # The default privileges printed before cover the tables the migration user creates now.
        assert upgrade_to_head(logins.migration) == head_revision()
        assert check_up_to_date(logins.runtime_string) == head_revision()
    else:  # MariaDB refuses before it says whether the table exists
        assert f"may not read {VERSION_TABLE}" in message
        assert "the table may not exist yet" in message
        assert "run `granite-assets db upgrade` as the migration user first" in message
        assert f"`granite-assets db grants --role {logins.role}@%`" in message


@servers(POSTGRESQL)
def test_a_role_without_usage_on_the_schema_is_told_so(logins: Logins) -> None:
    """Without USAGE on public, PostgreSQL hides the tables: granite-assets says why, not "never migrated"."""
    upgrade_to_head(logins.migration)
    for call in (current_revision, check_up_to_date, upgrade_to_head):
        with pytest.raises(InsufficientPrivilegeError) as caught:
            call(logins.runtime_string)
        message = str(caught.value)
        assert f"The login {logins.role} may use no schema of its search_path" in message
        assert f"`granite-assets db grants --role {logins.role}`" in message
        logins.hidden(message)
    assert VERSION_TABLE in logins.database.table_names()


@servers(POSTGRESQL)
def test_a_login_refused_the_migration_lock_is_told_so_too(logins: Logins, environment_copy: Path) -> None:
    """Where a hardened server revokes the advisory-lock functions, the refusal is the login's, explained."""
    upgrade_to_head(logins.migration)
    logins.grant_printed()
    logins.apply("REVOKE EXECUTE ON FUNCTION pg_try_advisory_lock(bigint) FROM PUBLIC;")
    add_revision(environment_copy, "0002", "0001")
    before = snapshot(logins.database)
    with pytest.raises(InsufficientPrivilegeError) as caught:
        _runner.upgrade(environment_copy, logins.runtime_string, LOCK_TIMEOUT)
    message = str(caught.value)
    assert caught.value.revision is None
    assert caught.value.statement == "SELECT pg_try_advisory_lock(1735549294)"
    assert f"granite-assets' upgrade failed on {display_url(logins.runtime)}" in message
    assert "Nothing was changed. Run the upgrade as the migration user" in message
    assert snapshot(logins.database) == before


@servers(ONE_DRIVER_EACH)
def test_a_login_without_select_on_the_version_table_is_told_to_run_db_grants(logins: Logins) -> None:
    """At head, a login that may not read the version table is told which table and what prints the grants."""
    upgrade_to_head(logins.migration)
    if logins.database.backend.name == "postgresql":
        logins.apply(f"GRANT USAGE ON SCHEMA public TO {logins.role};")
    for call in (current_revision, check_up_to_date, upgrade_to_head):
        with pytest.raises(InsufficientPrivilegeError) as caught:
            call(logins.runtime_string)
        message = str(caught.value)
        assert f"may not read {VERSION_TABLE} on {display_url(logins.runtime)}" in message
        assert "`granite-assets db grants --role " in message
        assert caught.value.login == runtime_login_name(logins)
        logins.hidden(message)


@servers(ONE_DRIVER_EACH)
def test_the_grants_cover_the_compatibility_record_a_newer_release_creates(
    logins: Logins, environment_copy: Path
) -> None:
    """Ahead by a backward-compatible revision, the runtime login reads the record: by default privileges on
    PostgreSQL, and after db grants runs again on MariaDB, which has none."""
    upgrade_to_head(logins.migration)
    logins.grant_printed()
    path = add_revision(
        environment_copy,
        "0002",
        "0001",
        f'op.create_table("{NEW_TABLE}", sa.Column("id", sa.Integer, primary_key=True))',
        f'op.drop_table("{NEW_TABLE}")',
        manifest=False,
    )
    path.write_text(path.read_text(encoding="utf-8") + "\nbackward_compatible = True\n", encoding="utf-8")
    write_manifest(environment_copy)
    assert _runner.upgrade(environment_copy, logins.migration, LOCK_TIMEOUT) == "0002"
    assert COMPATIBILITY_TABLE in logins.database.table_names()
    if logins.database.backend.name == "mysql":
        with pytest.raises(DatabaseAheadError):
            check_up_to_date(logins.runtime_string)
        script = logins.grant_printed()
        assert f"GRANT SELECT ON `{logins.database.url.database}`.`{COMPATIBILITY_TABLE}`" in script
        assert (
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{logins.database.url.database}`.`{NEW_TABLE}`"
            in script
        )
    assert check_up_to_date(logins.runtime_string) == "0002"
    assert upgrade_to_head(logins.runtime_string) == "0002"


@pytest.mark.parametrize("read_only", [False, True], ids=["read-write", "read-only"])
@servers(ONE_DRIVER_EACH)
def test_the_runtime_login_may_write_the_asset_tables_and_never_the_records(
    logins: Logins, environment_copy: Path, *, read_only: bool
) -> None:
    """Granted before and after the upgrade, the runtime login writes granite-assets' tables (unless
    read-only) and never its version table, which PostgreSQL's default privileges had let it write."""
    add_revision(
        environment_copy,
        "0002",
        "0001",
        f'op.create_table("{NEW_TABLE}", sa.Column("id", sa.Integer, primary_key=True))',
        f'op.drop_table("{NEW_TABLE}")',
    )
    logins.grant_printed(read_only=read_only)  # before the first deploy: default privileges only
    _runner.upgrade(environment_copy, logins.migration, LOCK_TIMEOUT)
    logins.grant_printed(read_only=read_only)  # after it, as the deployment page says
    engine = create_engine(logins.runtime_string, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            assert connection.execute(text(f"SELECT count(*) FROM {NEW_TABLE}")).scalar() == 0
        insert = text(f"INSERT INTO {NEW_TABLE} (id) VALUES (1)")
        if read_only:
            with pytest.raises(DBAPIError, match="denied"), engine.begin() as connection:
                connection.execute(insert)
        else:
            with engine.begin() as connection:
                connection.execute(insert)
        for write in (f"UPDATE {VERSION_TABLE} SET version_num = '0001'", f"DELETE FROM {VERSION_TABLE}"):
            with pytest.raises(DBAPIError, match="denied"), engine.begin() as connection:
                connection.execute(text(write))
    finally:
        engine.dispose()


# -- The command line ------------------------------------------------------------------------


@pytest.mark.slow
@servers(ONE_DRIVER_EACH)
def test_the_command_line_grants_checks_and_refuses_as_an_operator_sees_it(
    logins: Logins, environment_copy: Path, tmp_path: Path
) -> None:
    """`db grants` prints what grants_sql() returns; as the runtime login, `db check` and `db current`
    succeed with those grants, and `db upgrade` with a revision pending exits 1 with command-line advice."""
    upgrade_to_head(logins.migration)
    migration = logins.migration.render_as_string(hide_password=False)
    run = granite_assets(
        tmp_path, "db", "grants", "--role", logins.role, env_url=migration, secret=logins.migration.password
    )
    assert run.code == EXIT_OK, run.err
    script = "".join(f"{line}\n" for line in run.out)
    assert script == grants_sql(logins.migration, logins.role)
    logins.apply(script)

    run = granite_assets(tmp_path, "db", "check", env_url=logins.runtime_string)
    assert (run.code, run.out) == (EXIT_OK, [f"up to date at {head_revision()}"]), run.err
    run = granite_assets(tmp_path, "db", "current", env_url=logins.runtime_string)
    assert (run.code, run.out) == (EXIT_OK, [head_revision()]), run.err
    add_revision(
        environment_copy,
        "0002",
        "0001",
        f'op.create_table("{NEW_TABLE}", sa.Column("id", sa.Integer, primary_key=True))',
        f'op.drop_table("{NEW_TABLE}")',
    )
    before = snapshot(logins.database)
    run = granite_assets(
        tmp_path, "db", "upgrade", env_url=logins.runtime_string, environment=environment_copy
    )
    assert run.code == EXIT_MIGRATION_ERROR
    assert run.out == []
    assert "may not change the schema" in run.err
    assert "Run the upgrade as the migration user" in run.err
    assert "only check the schema (`granite-assets db check`)" in run.err
    assert snapshot(logins.database) == before
    logins.hidden(run.err)


@pytest.mark.slow
def test_the_command_line_refuses_grants_it_cannot_write(tmp_path: Path) -> None:
    """No role, an empty one, both --url and --dialect, or --owner on MariaDB are usage errors (exit 2)."""
    url = "postgresql://app@localhost/app"
    for args, says in [
        (("--dialect", "postgresql"), "the following arguments are required: --role"),
        (("--role", "", "--dialect", "postgresql"), "the role name is empty"),
        (("--role", "app", "--dialect", "postgresql", "--url", url), "--url and --dialect go apart"),
        (("--role", "app", "--dialect", "mysql", "--owner", "mig"), "--owner is for PostgreSQL's default"),
        (("--role", "app"), "or name the database's dialect with --dialect"),
    ]:
        run = granite_assets(tmp_path, "db", "grants", *args)
        assert run.code == EXIT_USAGE, (args, run.err)
        assert says in run.err, (args, run.err)
    run = granite_assets(tmp_path, "db", "grants", "--role", "app", "--dialect", "mysql", "--read-only")
    assert run.code == EXIT_OK, run.err
    assert statements("\n".join(run.out) + "\n") == [f"GRANT SELECT ON `{VERSION_TABLE}` TO `app`"]


# -- The statements, without a database ------------------------------------------------------


def test_postgresql_grants_quote_the_role_and_name_the_owner() -> None:
    """A role that needs quotes gets them, and FOR ROLE names the migration user given."""
    script = grants_sql("postgresql", 'App "Runtime"', owner="Migrator")
    role = '"App ""Runtime"""'
    defaults = 'ALTER DEFAULT PRIVILEGES FOR ROLE "Migrator" IN SCHEMA public'
    assert statements(script) == [
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"{defaults} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
        f"{defaults} GRANT USAGE, SELECT ON SEQUENCES TO {role}",
        f"GRANT SELECT ON TABLE public.{VERSION_TABLE} TO {role}",
        f"REVOKE INSERT, UPDATE, DELETE ON TABLE public.{VERSION_TABLE} FROM {role}",
    ]
    assert "PostgreSQL cannot limit default privileges to the names that start with granite_assets_" in prose(
        script
    )
    assert all(len(line) <= 80 for line in script.splitlines())


def test_postgresql_grants_without_an_owner_are_for_the_migration_user_to_run() -> None:
    """Without an owner, the default privileges name none, and the script says who must run it; read-only
    grants SELECT alone."""
    script = grants_sql("postgresql", "app", read_only=True)
    assert statements(script) == [
        "GRANT USAGE ON SCHEMA public TO app",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO app",
        f"GRANT SELECT ON TABLE public.{VERSION_TABLE} TO app",
        f"REVOKE INSERT, UPDATE, DELETE ON TABLE public.{VERSION_TABLE} FROM app",
    ]
    assert "Run these as the migration user" in prose(script)


def test_mysql_grants_name_user_and_host_in_backticks() -> None:
    """NAME@HOST becomes `NAME`@`HOST`; the script says MariaDB has no default privileges."""
    script = grants_sql("mysql", "app`s@10.0.%")
    assert statements(script) == [f"GRANT SELECT ON `{VERSION_TABLE}` TO `app``s`@`10.0.%`"]
    assert "have no default privileges: run `granite-assets db grants` again" in prose(script)
    assert statements(grants_sql("mariadb", "'app'@'%'")) == [
        f"GRANT SELECT ON `{VERSION_TABLE}` TO `app`@`%`"
    ]
    assert statements(grants_sql("mysql", "app")) == [f"GRANT SELECT ON `{VERSION_TABLE}` TO `app`"]


def test_the_deployment_page_shows_what_db_grants_prints() -> None:
    """The script on the "Two database users" page is the one granite-assets writes for that database."""
    page = (Path(__file__).parents[1] / "docs" / "deployment.rst").read_text(encoding="utf-8")
    shown = page.split("``grants.sql`` then holds:\n\n.. code-block:: sql\n\n", 1)[1].split("\n\n", 1)[0]
    layout = Layout(
        where="postgresql+psycopg://app_migrate@db.internal/app",
        schema="public",
        tables=(VERSION_TABLE,),
        owner="app_migrate",
    )
    written = backend_for("postgresql").runtime_grants("app", layout, read_only=False)
    assert [line.removeprefix("   ") for line in shown.splitlines()] == written


@pytest.mark.parametrize(
    ("dialect", "role", "options", "error", "says"),
    [
        ("postgresql", "", {}, ValueError, "the role name is empty"),
        ("postgresql", "public", {}, ValueError, "PUBLIC is every role"),
        ("mysql", "PUBLIC", {}, ValueError, "PUBLIC is every role"),
        ("postgresql", "r" * 64, {}, ValueError, "longer than PostgreSQL's 63 bytes"),
        ("postgresql", "app", {"owner": "app"}, ValueError, "app is the migration user"),
        ("mysql", "app", {"owner": "mig"}, ValueError, "have none, so name no owner"),
        ("mysql", "@%", {}, ValueError, "names no user"),
        ("sqlite", "app", {}, migrations.InvalidURLError, "SQLite has no database users"),
    ],
)
def test_grants_refuse_what_would_grant_the_wrong_thing(
    dialect: str, role: str, options: dict[str, str], error: type[Exception], says: str
) -> None:
    """An empty or PUBLIC role, a name PostgreSQL would cut, the owner itself, and SQLite are refused."""
    with pytest.raises(error, match=says):
        grants_sql(dialect, role, **options)  # type: ignore[arg-type]
