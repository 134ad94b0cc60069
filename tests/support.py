"""Helpers for the deploy-safety tests: replica processes, lock holders, logins with passwords.

Test-only revisions record each run of their body by appending one line to a log file opened
with ``O_APPEND``: unlike a row in a table, the line survives a rolled-back transaction, so a
body that ran twice is seen even when one of its runs was undone.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from command_line import COMMAND_LINE, ForkedProcess
from conftest import Database, _admin_execute, add_revision, require_server
from sqlalchemy import URL, create_engine, text
from sqlalchemy.pool import NullPool

from granite_assets.migrations._backends.mysql import NamedLock
from granite_assets.migrations._backends.postgresql import LOCK_KEY as POSTGRESQL_LOCK_KEY
from granite_assets.migrations._names import VERSION_TABLE

WORKER = Path(__file__).with_name("upgrade_worker.py")
#: Environment variables that make a hold_body() revision signal it started and wait.
STARTED_VARIABLE = "GA_TEST_STARTED"
RELEASE_VARIABLE = "GA_TEST_RELEASE"

#: A host's own first revision, creating the host table ``host_orders``.
HOST_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "host1"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("host_orders", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("host_orders")
"""


def new_password() -> str:
    """A password no test has used before, to look for in messages and logs."""
    return f"Pw{uuid.uuid4().hex[:16]}"


def record_body(log: Path, revision: str) -> str:
    """Revision code that appends ``<database>\\t<revision>\\t<pid>`` to ``log``."""
    return (
        "import os\n"
        f"_fd = os.open({str(log)!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)\n"
        "_db = op.get_bind().engine.url.database\n"
        f'os.write(_fd, f"{{_db}}\\t{revision}\\t{{os.getpid()}}\\n".encode())\n'
        "os.close(_fd)"
    )


def hold_body() -> str:
    """Revision code that, in a process given the two variables, signals it started and waits.

    The process writes its pid to the file named by ``GA_TEST_STARTED``, then waits (two minutes
    at most) for the file named by ``GA_TEST_RELEASE`` to exist. Without the variables the code
    does nothing, so the same revision runs straight through in the test's own process.
    """
    return (
        "import os, time\n"
        "from pathlib import Path\n"
        f"if os.environ.get({STARTED_VARIABLE!r}):\n"
        f"    Path(os.environ[{STARTED_VARIABLE!r}]).write_text(str(os.getpid()))\n"
        "    _deadline = time.monotonic() + 120\n"
        f"    while not Path(os.environ[{RELEASE_VARIABLE!r}]).exists() and time.monotonic() < _deadline:\n"
        "        time.sleep(0.05)"
    )


def add_table_revisions(directory: Path, prefix: str, revisions: tuple[str, ...] = ("0002", "0003")) -> None:
    """Add revisions after 0001 to ``directory``, each creating (and dropping) a table of its own."""
    parent = "0001"
    for revision in revisions:
        table = f"granite_assets_{prefix}{revision}"
        add_revision(
            directory,
            revision,
            parent,
            f'op.create_table("{table}", sa.Column("id", sa.Integer, primary_key=True))',
            f'op.drop_table("{table}")',
            message=f"table {revision}",
        )
        parent = revision


def runs(log: Path) -> Counter[tuple[str, str]]:
    """How many times each (database, revision) body ran, from a record_body() log."""
    if not log.exists():
        return Counter()
    lines = log.read_text(encoding="utf-8").splitlines()
    return Counter((database, revision) for database, revision, _pid in (line.split("\t") for line in lines))


def version_rows(database: Database) -> list[str] | None:
    """The rows of the version table, or ``None`` when it does not exist."""
    if VERSION_TABLE not in database.table_names():
        return None
    return [str(row) for row in database.scalar_rows(f"SELECT version_num FROM {VERSION_TABLE}")]


def snapshot(database: Database) -> tuple[frozenset[str], list[str] | None]:
    """The database's tables and version-table rows (whatever their columns), to compare around a call."""
    tables = frozenset(database.table_names())
    if VERSION_TABLE not in tables:
        return tables, None
    return tables, sorted(str(row) for row in database.all_rows(f"SELECT * FROM {VERSION_TABLE}"))


def mysql_lock_name(database: Database) -> str:
    """The ``GET_LOCK`` name granite-assets uses for ``database``."""
    return NamedLock(str(database.url.database)).server_name


@contextmanager
def holding_lock(database: Database) -> Iterator[None]:
    """Hold the migration lock of ``database`` from another session, as a running migration does."""
    if database.backend.name == "sqlite":
        holder = sqlite3.connect(str(database.url.database), timeout=0, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            yield
            holder.execute("ROLLBACK")
        finally:
            holder.close()
        return
    engine = create_engine(database.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            if database.backend.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": POSTGRESQL_LOCK_KEY})
                release = text("SELECT pg_advisory_unlock(:key)").bindparams(key=POSTGRESQL_LOCK_KEY)
            else:
                name = mysql_lock_name(database)
                got = connection.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": name}).scalar()
                assert got == 1, f"could not take {name}"
                release = text("SELECT RELEASE_LOCK(:name)").bindparams(name=name)
            try:
                yield
            finally:
                connection.execute(release)
    finally:
        engine.dispose()


def lock_is_free(database: Database) -> bool:
    """Tell whether no session holds the migration lock of ``database`` (nor a stale trace of it)."""
    if database.backend.name == "sqlite":
        path = Path(str(database.url.database))
        if Path(f"{path}-journal").exists():
            return False
        probe = sqlite3.connect(str(path), timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
        except sqlite3.OperationalError:
            return False
        finally:
            probe.close()
        return True
    if database.backend.name == "postgresql":
        held = database.scalar_rows(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = "
            f"{POSTGRESQL_LOCK_KEY} AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())"
        )
        return held == [0]
    return database.scalar_rows(f"SELECT IS_USED_LOCK('{mysql_lock_name(database)}')") == [None]


@contextmanager
def login(database: Database, password: str, access: str, user: str | None = None) -> Iterator[URL]:
    """A server user for ``database`` whose URL carries ``password``; the user is dropped after.

    ``access`` is ``"owner"`` (may create tables), ``"read"`` (may read, not create), or
    ``"refused"`` (the server refuses the login: a PostgreSQL role without LOGIN, since the
    test server trusts local connections; a MariaDB user whose real password is another one).
    ``user`` names the user (default: a new random name).
    """
    backend = database.backend.name
    admin = require_server(backend)
    user = user or f"ga_user_{uuid.uuid4().hex[:10]}"
    if backend == "postgresql":
        can_login = "NOLOGIN" if access == "refused" else "LOGIN"
        _admin_execute(admin, f"CREATE ROLE {user} {can_login} PASSWORD '{password}'")
        try:
            if access == "owner":
                database.execute(
                    f"GRANT CREATE ON SCHEMA public TO {user}",
                    f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {user}",
                )
            yield database.url.set(username=user, password=password)
        finally:
            database.execute(f"DROP OWNED BY {user}")
            _admin_execute(admin, f"DROP ROLE IF EXISTS {user}")
        return
    real_password = new_password() if access == "refused" else password
    _admin_execute(admin, f"CREATE USER '{user}'@'%' IDENTIFIED BY '{real_password}'")
    try:
        grant = {"owner": "ALL PRIVILEGES", "read": "SELECT", "refused": "SELECT"}[access]
        _admin_execute(admin, f"GRANT {grant} ON `{database.url.database}`.* TO '{user}'@'%'")
        yield database.url.set(username=user, password=password)
    finally:
        _admin_execute(admin, f"DROP USER IF EXISTS '{user}'@'%'")


@contextmanager
def url_with_password(database: Database, password: str) -> Iterator[str]:
    """A URL of ``database`` for a user that may create tables, with ``password`` where one is possible.

    SQLite URLs cannot carry a password (SQLAlchemy refuses one), so there it is the plain URL.
    """
    if database.backend.name == "sqlite":
        yield database.url_string
        return
    with login(database, password, "owner") as url:
        yield url.render_as_string(hide_password=False)


class Workers:
    """Replica processes (tests/upgrade_worker.py) that upgrade a database when told to, all at once.

    Use as a context manager: on exit every worker is stopped, killed if it must be. A watchdog
    kills them all after ``deadline`` seconds, so that a hung worker fails the test instead of
    hanging it. ``worker`` runs another worker script with the same protocol, given ``flags``.
    """

    def __init__(
        self,
        count: int,
        directory: Path,
        lock_timeout: float,
        logs: Path,
        *,
        announce: bool = False,
        autocommit_connection: bool = False,
        env: dict[str, str] | None = None,
        deadline: float = 300,
        worker: Path = WORKER,
        flags: tuple[str, ...] = (),
    ) -> None:
        self.count = count
        self.worker = worker
        self.args = [
            str(directory),
            str(lock_timeout),
            *(["--announce"] if announce else []),
            *(["--autocommit-connection"] if autocommit_connection else []),
            *flags,
        ]
        self.logs = logs
        self.env = {**os.environ, **(env or {})}
        self.deadline = deadline
        self.processes: list[ForkedProcess] = []
        self._watchdog = threading.Timer(deadline, self.kill)

    def __enter__(self) -> Workers:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._watchdog.start()
        for i in range(self.count):  # forked from a process that imported granite-assets (command_line.py)
            with (self.logs / f"worker-{i}.stderr").open("w") as stderr:
                self.processes.append(
                    COMMAND_LINE.start(
                        [str(self.worker), *self.args],
                        env=self.env,
                        cwd=Path.cwd(),
                        script=self.worker,
                        stderr=stderr,
                    )
                )
        for i in range(self.count):
            self.expect(i, "ready")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._watchdog.cancel()
        for process in self.processes:
            if process.stdin is not None and not process.stdin.closed:
                with suppress(BrokenPipeError):
                    process.stdin.close()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()

    def kill(self) -> None:
        """Kill every worker still running."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)

    def readline(self, i: int) -> str:
        """The next line worker ``i`` printed; fails the test if the worker died."""
        stdout = self.processes[i].stdout
        assert stdout is not None
        line = stdout.readline()
        assert line, f"worker {i} ended; its stderr:\n{self.stderr(i)}"
        return line.strip()

    def expect(self, i: int, wanted: str) -> None:
        """Read worker ``i``'s next line and check that it is ``wanted``."""
        line = self.readline(i)
        assert line == wanted, f"worker {i} printed {line!r}, not {wanted!r}; stderr:\n{self.stderr(i)}"

    def stderr(self, i: int) -> str:
        """What worker ``i`` wrote to its stderr so far."""
        return (self.logs / f"worker-{i}.stderr").read_text(encoding="utf-8", errors="replace")

    def start(self, url: str, workers: range | None = None) -> None:
        """Release the barrier: tell the workers (all, by default) to upgrade ``url`` now."""
        chosen = [self.processes[i] for i in workers or range(self.count)]
        for process in chosen:  # every worker is imported and idle: this releases them at once
            assert process.stdin is not None
            process.stdin.write(url + "\n")
        for process in chosen:
            assert process.stdin is not None
            process.stdin.flush()

    def result(self, i: int) -> dict[str, Any]:
        """The outcome of worker ``i``'s last upgrade."""
        outcome: dict[str, Any] = json.loads(self.readline(i))
        return outcome

    def results(self, workers: range | None = None) -> list[dict[str, Any]]:
        """The outcomes of the last upgrade of every worker (or of ``workers``)."""
        return [self.result(i) for i in workers or range(self.count)]


def wait_for(path: Path, limit: float = 120) -> None:
    """Wait until ``path`` exists; fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
