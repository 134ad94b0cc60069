"""Shared fixtures: one freshly created database per test, on every backend CI runs.

Servers come from environment variables (the Makefile sets them to the local services):

- ``GRANITE_ASSETS_TEST_POSTGRESQL_URL``: an admin URL of a PostgreSQL server;
- ``GRANITE_ASSETS_TEST_MYSQL_URL``: an admin URL of a MariaDB or MySQL server;
- ``GRANITE_ASSETS_TEST_REQUIRE``: comma-separated backends (``postgresql,mysql``) whose absence
  is an error rather than a skip, and ``chromium`` for the docs layout check's tests; CI sets it.

Without a server's variable, or when the server does not answer or refuses the login, its tests
are skipped with the driver's reason (password hidden), and the summary at the end of the run
says which backends were tested and which were skipped.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from filelock import FileLock
from sqlalchemy import URL, create_engine, make_url, text
from sqlalchemy.pool import NullPool

from granite_assets.migrations._history import bundled_directory
from granite_assets.migrations._manifest import write_manifest

SERVER_VARIABLES = {
    "postgresql": "GRANITE_ASSETS_TEST_POSTGRESQL_URL",
    "mysql": "GRANITE_ASSETS_TEST_MYSQL_URL",
}


@dataclass(frozen=True)
class Backend:
    """A database backend reached through one driver."""

    name: str  # sqlite, postgresql or mysql
    driver: str  # the SQLAlchemy driver name

    @property
    def id(self) -> str:
        return f"{self.name}-{self.driver}"


BACKENDS = [
    Backend("sqlite", "pysqlite"),
    Backend("postgresql", "psycopg2"),
    Backend("postgresql", "psycopg"),
    Backend("mysql", "pymysql"),
]
ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg", "mysql": "aiomysql"}


def required_backends() -> set[str]:
    """The backends whose absence must fail the run."""
    return {b.strip() for b in os.environ.get("GRANITE_ASSETS_TEST_REQUIRE", "").split(",") if b.strip()}


@cache
def server_url(name: str) -> URL | None:
    """The admin URL of the ``name`` server, or ``None`` when it is not configured or not up."""
    raw = os.environ.get(SERVER_VARIABLES[name])
    if not raw:
        _unavailable[name] = f"{SERVER_VARIABLES[name]} is not set"
        return None
    url = make_url(raw)
    reason = server_problem(url)
    if reason is not None:
        _unavailable[name] = f"{url.render_as_string()} cannot be used: {reason}"
        return None
    return url


def server_problem(url: URL) -> str | None:
    """Why the server at ``url`` cannot be used (the driver's own words, password hidden), or ``None``."""
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the driver's reason says it
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split()) or type(exc).__name__
        return reason.replace(url.password, "***") if url.password else reason
    finally:
        engine.dispose()
    return None


_unavailable: dict[str, str] = {}
#: The backends (``Backend.id``) that at least one test ran against in this run.
_tested: set[str] = set()


def require_server(name: str) -> URL:
    """The server's admin URL; skips the test, or fails it when CI requires the backend."""
    url = server_url(name)
    if url is None:
        reason = f"{name} unavailable: {_unavailable[name]}"
        if name in required_backends():
            pytest.fail(f"{reason} (and GRANITE_ASSETS_TEST_REQUIRE requires it)", pytrace=False)
        pytest.skip(reason)
    return url


def require_chromium() -> str:
    """The Chromium that the docs layout check drives; skips, or fails when required, without one."""
    from importlib.util import find_spec

    from check_docs_layout import find_chromium

    chromium = find_chromium()
    if chromium is None:
        _unavailable["chromium"] = "no Chromium found (apt-get install chromium, or set CHROMIUM)"
    elif find_spec("playwright") is None:
        _unavailable["chromium"] = "playwright is not installed (make docs-check installs it)"
    else:
        return chromium
    reason = f"chromium unavailable: {_unavailable['chromium']}"
    if "chromium" in required_backends():
        pytest.fail(f"{reason} (and GRANITE_ASSETS_TEST_REQUIRE requires it)", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Database:
    """A database created for one test."""

    backend: Backend
    url: URL

    @property
    def url_string(self) -> str:
        """The URL as a string, password included, to hand to the code under test."""
        return self.url.render_as_string(hide_password=False)

    def with_driver(self, driver: str) -> URL:
        """The same database through another driver (an async one, say)."""
        return self.url.set(drivername=f"{self.backend.name}+{driver}")

    def table_names(self) -> set[str]:
        """The tables the database holds now."""
        from sqlalchemy import inspect

        engine = create_engine(self.url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return set(inspect(connection).get_table_names())
        finally:
            engine.dispose()

    def column_names(self, table: str) -> set[str]:
        """The columns ``table`` has now."""
        from sqlalchemy import inspect

        engine = create_engine(self.url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return {str(column["name"]) for column in inspect(connection).get_columns(table)}
        finally:
            engine.dispose()

    def scalar_rows(self, sql: str) -> list[object]:
        """Run a query and return the first column of every row."""
        engine = create_engine(self.url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return [row[0] for row in connection.execute(text(sql))]
        finally:
            engine.dispose()

    def all_rows(self, sql: str) -> list[tuple[object, ...]]:
        """Run a query and return every row as a tuple."""
        engine = create_engine(self.url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(text(sql))]
        finally:
            engine.dispose()

    def execute(self, *statements: str) -> None:
        """Run statements in one committed transaction."""
        engine = create_engine(self.url, poolclass=NullPool)
        try:
            with engine.begin() as connection:
                for statement in statements:
                    connection.execute(text(statement))
        finally:
            engine.dispose()


@contextmanager
def fresh_database(backend: Backend, directory: Path) -> Iterator[Database]:
    """Create an empty database for ``backend`` with a random name; drop it afterwards.

    SQLite databases are files in ``directory``; PostgreSQL's are made ahead and dropped behind
    the test, on a thread of their own (see :class:`DatabasesAhead`).
    """
    if backend.name == "sqlite":
        _tested.add(backend.id)
        name = f"{new_database_name()}.db"
        yield Database(backend, URL.create("sqlite+pysqlite", database=str(directory / name)))
        return
    admin = require_server(backend.name)
    ahead = backend.name == "postgresql"
    name = _databases_ahead.take(admin) if ahead else create_database(admin)
    _tested.add(backend.id)
    try:
        yield Database(backend, admin.set(drivername=f"{backend.name}+{backend.driver}", database=name))
    finally:
        if ahead:
            _databases_ahead.drop(admin, name)
        else:
            drop_database(admin, name)


def new_database_name() -> str:
    """A name no other test's database has."""
    return f"ga_test_{uuid.uuid4().hex[:12]}"


def create_database(admin: URL) -> str:
    """Create an empty database with a new name on the server of ``admin``; return its name."""
    name = new_database_name()
    _admin_execute(admin, f"CREATE DATABASE {name}")
    return name


def drop_database(admin: URL, name: str) -> None:
    """Drop the database ``name``, ending its sessions on PostgreSQL (a test's leftovers are not its own)."""
    force = " WITH (FORCE)" if admin.get_backend_name() == "postgresql" else ""
    _admin_execute(admin, f"DROP DATABASE IF EXISTS {name}{force}")


class DatabasesAhead:
    """Databases created one test ahead and dropped behind the tests, on one thread beside them.

    PostgreSQL's ``CREATE DATABASE`` copies a template and syncs it to disk, about half a second
    on the test machines, and ``DROP DATABASE`` syncs too: done in line, that was the slowest
    part of most PostgreSQL tests. Done on a thread, it overlaps with the test before. Each
    database is still new for the test that takes it: created empty, named at random, for one
    test alone.
    """

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-databases")
        self._ready: dict[URL, Future[str]] = {}
        self._drops: list[Future[None]] = []

    def take(self, admin: URL) -> str:
        """A new empty database on the server of ``admin``; the next one starts being created."""
        ready = self._ready.pop(admin, None) or self._thread.submit(create_database, admin)
        name = ready.result()
        self._ready[admin] = self._thread.submit(create_database, admin)
        return name

    def drop(self, admin: URL, name: str) -> None:
        """Drop ``name`` once the thread gets to it; :meth:`close` reports a drop that failed."""
        self._drops = [d for d in self._drops if not d.done() or d.exception() is not None]
        self._drops.append(self._thread.submit(drop_database, admin, name))

    def close(self) -> None:
        """Drop the databases made ahead, wait for every drop, and raise the first that failed."""
        for admin, ready in self._ready.items():
            self.drop(admin, ready.result())
        self._ready.clear()
        self._thread.shutdown(wait=True)
        for dropped in self._drops:
            dropped.result()


_databases_ahead = DatabasesAhead()


def _admin_execute(url: URL, statement: str) -> None:
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


def backend_params(backends: list[Backend] = BACKENDS) -> list[object]:
    """``pytest.param`` for each backend, marked with its backend's marker."""
    return [pytest.param(b, id=b.id, marks=getattr(pytest.mark, b.name)) for b in backends]


@pytest.fixture(params=backend_params())
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend and driver CI runs: SQLite, PostgreSQL (psycopg2, psycopg 3), MariaDB."""
    value: Backend = request.param
    return value


@pytest.fixture
def database(backend: Backend, tmp_path: Path) -> Iterator[Database]:
    """A database created for this test alone, on each backend."""
    with fresh_database(backend, tmp_path) as db:
        yield db


@pytest.fixture
def environment_copy(tmp_path: Path) -> Path:
    """A private copy of the bundled Alembic environment, for tests that add revisions."""
    target = tmp_path / "environment"
    shutil.copytree(bundled_directory(), target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def add_revision(
    directory: Path,
    revision: str,
    down_revision: str | None,
    upgrade: str = "pass",
    downgrade: str = "pass",
    *,
    message: str | None = None,
    manifest: bool = True,
    declares: str = "",
) -> Path:
    """Write a revision file into ``directory/versions``; regenerate the manifest unless told not to.

    ``declares`` holds module-level lines of the revision's own, such as ``ddl_lock_timeout = 30.0``.
    """
    body_up = "\n".join("    " + line for line in upgrade.splitlines())
    body_down = "\n".join("    " + line for line in downgrade.splitlines())
    own_lines = f"{declares}\n" if declares else ""
    path = directory / "versions" / f"{revision}_{(message or 'test').replace(' ', '_')}.py"
    path.write_text(
        f'''"""{message or "test revision " + revision}"""

import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = {down_revision!r}
branch_labels = None
depends_on = None
{own_lines}

def upgrade() -> None:
{body_up}


def downgrade() -> None:
{body_down}
''',
        encoding="utf-8",
    )
    if manifest:
        write_manifest(directory)
    return path


def once_per_run(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    make: Callable[[Path], object],
) -> Path:
    """The folder ``name``, made by ``make(folder)`` once per run and shared by every worker.

    Under pytest-xdist the first worker to get here makes it in the run's shared temporary folder
    (the parent of the workers' own), under a file lock that the others wait on, as
    pytest-xdist's documentation recommends for session fixtures. It appears whole or not at
    all: a worker that failed half-way leaves nothing for the next to take as made.
    """
    shared = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):
        shared = shared.parent
    out = shared / name
    with FileLock(str(shared / f"{name}.lock")):
        if not out.exists():
            scratch = shared / f"{name}.partial"
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            make(scratch)
            scratch.rename(out)
    return out


@pytest.fixture(scope="session")
def built_wheel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from its sdist as ``make check-wheel`` builds it, once per run."""
    from check_wheel import ROOT, build

    (wheel,) = once_per_run(
        request, tmp_path_factory, "granite-assets-build", lambda out: build(ROOT, out)
    ).glob("*.whl")
    return wheel


@pytest.fixture(scope="session")
def docs_site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML site, built as ``make docs`` builds it (warnings are errors), once per run."""
    from test_docs import sphinx

    def build(out: Path) -> None:
        result = sphinx("html", out)
        (out / "sphinx.log").write_text(
            f"{result.returncode}\n{result.stdout}{result.stderr}", encoding="utf-8"
        )
        (out / "sphinx.stderr").write_text(result.stderr, encoding="utf-8")

    out = once_per_run(request, tmp_path_factory, "granite-assets-docs", build)
    code, log = (out / "sphinx.log").read_text(encoding="utf-8").split("\n", 1)
    assert code == "0", log
    stderr = (out / "sphinx.stderr").read_text(encoding="utf-8")
    assert "WARNING" not in stderr, stderr
    return out / "html"


def backend_summary(tested: set[str], unavailable: dict[str, str]) -> list[str]:
    """The closing lines of a run: the backends tested, and each skipped server with its reason."""
    lines = [f"granite-assets: backends tested: {', '.join(sorted(tested)) or 'none'}"]
    lines += [
        f"granite-assets: {name} tests skipped: {reason}" for name, reason in sorted(unavailable.items())
    ]
    return lines


#: The key of :data:`_tested` and :data:`_unavailable` in a pytest-xdist worker's ``workeroutput``.
WORKER_OUTPUT_KEY = "granite_assets_backends"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Drop the databases made ahead; in a pytest-xdist worker, hand its backends to the controller."""
    _databases_ahead.close()
    workeroutput: dict[str, object] | None = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[WORKER_OUTPUT_KEY] = {"tested": sorted(_tested), "unavailable": dict(_unavailable)}


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: the controller hears from each worker
def pytest_testnodedown(node: object, error: object) -> None:  # noqa: ARG001 - the hook's signature
    """Add a finished worker's backends to the controller's, which its summary reports."""
    output = getattr(node, "workeroutput", None) or {}
    backends = output.get(WORKER_OUTPUT_KEY)
    if backends is not None:
        _tested.update(backends["tested"])
        _unavailable.update(backends["unavailable"])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which backends the run used and which it skipped, so a skip is never silent.

    Under pytest-xdist the controller says it, for every worker (see :func:`pytest_testnodedown`).
    """
    if hasattr(terminalreporter.config, "workerinput"):
        return
    for line in backend_summary(_tested, _unavailable):
        terminalreporter.write_line(line, yellow="skipped" in line)


# -- Scheduling under pytest-xdist -----------------------------------------------------------

#: Modules whose tests share a module fixture too costly to build on every worker (sixteen
#: replica processes; a project copy that runs migrate-create once per kind of change): one
#: worker runs each. (``--dist loadgroup`` would do it, but pytest-xdist 3.8 cannot mark groups
#: under pytest 9.)
ONE_WORKER_MODULES = frozenset({"tests/test_host_deploy.py", "tests/test_compat_proposal.py"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests marked ``heavy`` first, so that a parallel run never ends waiting on one alone.

    Every worker collects, and must find the same order: the sort is stable and depends on
    nothing but the items.
    """
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook, on the controller
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """Hand tests out one at a time, in order, keeping each of :data:`ONE_WORKER_MODULES` on one worker.

    Only for the default ``--dist load``; any other mode asked for is pytest-xdist's own.
    """
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class OneTestAtATime(LoadScopeScheduling):  # type: ignore[misc]  # pytest-xdist has no types
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER_MODULES else nodeid

    return OneTestAtATime(config, log)
