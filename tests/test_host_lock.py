"""migration_lock(): the host's own lock around its Alembic upgrade, on every backend."""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import BACKENDS, Backend, Database, backend_params, fresh_database, require_server
from sqlalchemy import create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool, StaticPool
from support import holding_lock, lock_is_free, new_password, url_with_password, wait_for

from granite_assets.migrations import (
    InvalidURLError,
    MigrationLockTimeoutError,
    _host_lock,
    head_revision,
    migration_lock,
    upgrade_to_head,
)
from granite_assets.migrations._backends import sqlite
from granite_assets.migrations._backends.base import ServerLock
from granite_assets.migrations._backends.mysql import NamedLock
from granite_assets.migrations._backends.postgresql import HOST_NAMESPACE as POSTGRESQL_HOST_NAMESPACE
from granite_assets.migrations._backends.postgresql import AdvisoryLock
from granite_assets.migrations._database import Database as ResolvedDatabase

SERVER_BACKENDS = [b for b in BACKENDS if b.name != "sqlite"]

# A process that holds the lock until its stdin closes, or waits for it, logging to stderr.
HOLDER = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from granite_assets.migrations import migration_lock
with migration_lock(sys.argv[1], name=sys.argv[2], timeout=float(sys.argv[3])):
    print("held", flush=True)
    sys.stdin.read()
"""


@contextmanager
def holder(url: str, name: str, stderr: Path, timeout: float = 60) -> Iterator[subprocess.Popen[str]]:
    """Another process that takes the lock ``name`` (waiting up to ``timeout`` s) and holds it."""
    with stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, url, name, str(timeout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def held_by(process: subprocess.Popen[str], stderr: Path) -> None:
    """Wait until ``process`` says it holds the lock; fail showing its stderr if it ended instead."""
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line == "held", stderr.read_text(encoding="utf-8")


def can_take(url: str, name: str) -> bool:
    """Tell whether another thread could take the lock ``name`` right now."""
    outcome: list[bool] = []

    def attempt() -> None:
        try:
            with migration_lock(url, name=name, timeout=0):
                outcome.append(True)
        except MigrationLockTimeoutError:
            outcome.append(False)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join()
    return outcome == [True]


@pytest.mark.slow
def test_timeout_names_the_lock_and_how_to_find_its_holder(database: Database, tmp_path: Path) -> None:
    """Held by another process, the lock times out with a message naming it, whose holder query works."""
    password = new_password()
    with url_with_password(database, password) as url, holder(url, "myapp", tmp_path / "holder") as other:
        held_by(other, tmp_path / "holder")
        with (
            pytest.raises(MigrationLockTimeoutError) as caught,
            migration_lock(url, name="myapp", timeout=0.5),
        ):
            pytest.fail("the lock was taken while another process held it")
        message = str(caught.value)
        if database.backend.name == "postgresql":
            query = re.search(r"SELECT pid, .*? AND granted\)", message)
            assert query, message
            assert len(database.scalar_rows(query.group())) == 1
            assert f"advisory lock {POSTGRESQL_HOST_NAMESPACE}," in message
        elif database.backend.name == "mysql":
            name = NamedLock(str(database.url.database), name="myapp").server_name
            assert f"SELECT IS_USED_LOCK('{name}')" in message
            assert database.scalar_rows(f"SELECT IS_USED_LOCK('{name}')") != [None]
        else:
            assert f"fuser -v {database.url.database}.granite-assets-myapp.lock" in message
    assert "'myapp'" in message
    assert "for more than 0.5 seconds" in message
    assert "migration_lock()'s timeout" in message
    assert password not in "".join(traceback.format_exception(caught.value))


@pytest.mark.slow
def test_a_killed_holder_leaves_the_lock_free(database: Database, tmp_path: Path) -> None:
    """A holder killed with SIGKILL takes its lock with it: the next caller gets it."""
    url = database.url_string
    with holder(url, "myapp", tmp_path / "holder") as other:
        held_by(other, tmp_path / "holder")
        assert not can_take(url, "myapp")
        other.send_signal(signal.SIGKILL)
        assert other.wait() == -signal.SIGKILL
    with migration_lock(url, name="myapp", timeout=60):
        pass


@pytest.mark.slow
def test_ctrl_c_interrupts_the_wait(database: Database, tmp_path: Path) -> None:
    """A process waiting for the lock, without limit, stops at once on Ctrl-C (SIGINT)."""
    url = database.url_string
    stderr = tmp_path / "waiter"
    with migration_lock(url, name="myapp"), holder(url, "myapp", stderr, timeout=math.inf) as waiter:
        wait_for_text(stderr, "Waiting for the migration lock 'myapp'")
        waiter.send_signal(signal.SIGINT)
        # The wait bounds a hang: an uninterrupted waiter would wait for ever.
        assert waiter.wait(timeout=60) == -signal.SIGINT
        assert waiter.stdout is not None
        assert waiter.stdout.read() == ""  # it never held the lock
    assert "KeyboardInterrupt" in stderr.read_text(encoding="utf-8")
    assert can_take(url, "myapp")


def wait_for_text(path: Path, text: str) -> None:
    """Wait until the file ``path`` holds ``text``."""
    marker = path.with_suffix(".seen")

    def watch() -> None:
        while text not in path.read_text(encoding="utf-8"):
            threading.Event().wait(0.05)
        marker.touch()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    wait_for(marker, limit=60)


def test_released_when_the_block_ends_even_by_an_exception(database: Database) -> None:
    """The lock is held inside the block only, and an exception from the block goes through."""
    url = database.url_string
    with migration_lock(url, name="myapp"):
        assert not can_take(url, "myapp")
    assert can_take(url, "myapp")
    with pytest.raises(RuntimeError, match="the host's upgrade failed"), migration_lock(url, name="myapp"):
        raise RuntimeError("the host's upgrade failed")
    assert can_take(url, "myapp")


def test_nesting_the_block_does_not_wait_for_itself(database: Database) -> None:
    """A nested block for the same lock runs under the outer one's; the lock ends with the outer block."""
    url = database.url_string
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        with migration_lock(url, name="myapp"):
            with migration_lock(engine, name="myapp", timeout=0):  # the same database, named otherwise
                assert not can_take(url, "myapp")
            assert not can_take(url, "myapp")  # the inner block's end released nothing
        assert can_take(url, "myapp")
    finally:
        engine.dispose()


def test_names_and_databases_are_separate_locks(database: Database, tmp_path: Path) -> None:
    """Another name is another lock; so is the same name on another database."""
    url = database.url_string
    with migration_lock(url, name="myapp"):
        assert can_take(url, "otherapp")
        if database.backend.name == "sqlite":
            assert can_take(f"sqlite:///{tmp_path / 'other.db'}", "myapp")


def test_independent_of_granite_assets_own_lock(database: Database) -> None:
    """The host's lock is never granite-assets' own: each is taken while the other is held."""
    url = database.url_string
    with holding_lock(database), migration_lock(url, name="granite_assets", timeout=0):
        pass
    with migration_lock(url, name="granite_assets"):
        assert upgrade_to_head(url, lock_timeout=30) == head_revision()
        assert lock_is_free(database)


def test_an_engine_is_borrowed_and_left_as_it_was(database: Database) -> None:
    """With an Engine, the lock's connection goes back to its pool unlocked, in its usual isolation level."""
    engine = create_engine(database.url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            usual = connection.get_isolation_level()
        with migration_lock(engine, name="myapp"):
            assert not can_take(database.url_string, "myapp")
        assert can_take(database.url_string, "myapp")
        with engine.connect() as connection:  # the pool's one connection, used by the lock before
            assert connection.get_isolation_level() == usual
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", backend_params(SERVER_BACKENDS), indirect=True)
def test_a_url_leaves_no_connection_open(database: Database) -> None:
    """A URL's engine is disposed after the block: the server has no session of it left."""
    if database.backend.name == "postgresql":
        count = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    else:
        count = (
            "SELECT count(*) FROM information_schema.processlist "
            "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
        )
    with migration_lock(database.url_string, name="myapp"):
        assert database.scalar_rows(count) == [1]
    assert database.scalar_rows(count) == [0]


@pytest.mark.sqlite
def test_sqlite_lock_file_sits_beside_the_database(tmp_path: Path) -> None:
    """On SQLite the lock is a file beside the database's, named after it; the database is not opened."""
    database = tmp_path / "app.db"
    with migration_lock(f"sqlite:///{database}", name="myapp"):
        assert (tmp_path / "app.db.granite-assets-myapp.lock").exists()
    assert not database.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db.granite-assets-myapp.lock"]


@pytest.mark.sqlite
def test_sqlite_relative_url_and_uri_name_the_same_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative path, an absolute one and a file: URI of one database share one lock file."""
    monkeypatch.chdir(tmp_path)
    with migration_lock("sqlite:///app.db", name="myapp"):
        assert not can_take(f"sqlite:///{tmp_path / 'app.db'}", "myapp")
        assert not can_take(f"sqlite:///file:{tmp_path / 'app.db'}?uri=true", "myapp")


@pytest.mark.sqlite
def test_sqlite_engine_with_a_creator_locks_its_file(tmp_path: Path) -> None:
    """An engine whose URL names no file (a ``creator`` opens it) locks the file it opens."""
    database = tmp_path / "app.db"
    engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(database))
    try:
        with migration_lock(engine, name="myapp"):
            assert not can_take(f"sqlite:///{database}", "myapp")
    finally:
        engine.dispose()
    assert (tmp_path / "app.db.granite-assets-myapp.lock").exists()


@pytest.mark.sqlite
def test_sqlite_database_with_a_long_file_name_still_gets_a_lock_file(tmp_path: Path) -> None:
    """A lock file name longer than the file system allows is shortened, the same in every process."""
    database = tmp_path / ("a" * 240 + ".db")
    name = "n" * 64
    with migration_lock(f"sqlite:///{database}", name=name):
        assert not can_take(f"sqlite:///{database}", name)
        assert can_take(f"sqlite:///{database}", "other")
    lock_files = [p.name for p in tmp_path.iterdir()]  # the database itself is not opened
    assert len(lock_files) == 2  # one per lock name
    assert all(len(f.encode()) <= 255 and "granite-assets" in f for f in lock_files)


@pytest.mark.sqlite
def test_in_memory_sqlite_is_refused(tmp_path: Path) -> None:
    """An in-memory database has no file to lock beside, and no other process to wait for."""
    with pytest.raises(InvalidURLError, match="in-memory"), migration_lock("sqlite://", name="myapp"):
        pass
    engine = create_engine("sqlite://", poolclass=StaticPool)
    try:
        with pytest.raises(InvalidURLError, match="in-memory"), migration_lock(engine, name="myapp"):
            pass
    finally:
        engine.dispose()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["", " ", "my app", "../x", "-x", ".x", "a" * 65, "naïve", "a/b", 42, None])
def test_a_bad_name_is_refused_saying_what_is_allowed(name: object, tmp_path: Path) -> None:
    """A name that could not name a lock everywhere is a ValueError listing the allowed characters."""
    lock = migration_lock(f"sqlite:///{tmp_path / 'app.db'}", name=name)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("letters, digits, '_', '-' and '.'")), lock:
        pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["myapp", "My_App-2.0", "a" * 64, "0"])
def test_good_names(name: str) -> None:
    """Letters, digits, '_', '-' and '.', beginning with a letter or digit, up to 64 characters."""
    assert _host_lock.check_name(name) == name


def test_a_connection_is_refused_saying_why(tmp_path: Path) -> None:
    """A Connection cannot hold the lock beside Alembic's: the TypeError says to pass its engine."""
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    try:
        with engine.connect() as connection:
            lock = migration_lock(connection, name="myapp")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=r"connection\.engine"), lock:
                pass
    finally:
        engine.dispose()
    lock = migration_lock(42, name="myapp")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="URL or an Engine"), lock:
        pass


@pytest.mark.parametrize("timeout", [-1, math.nan, "soon"])
def test_a_bad_timeout_is_refused(timeout: object, tmp_path: Path) -> None:
    """A negative, NaN or non-numeric timeout is a ValueError."""
    lock = migration_lock(f"sqlite:///{tmp_path / 'app.db'}", name="myapp", timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"migration_lock\(\)'s timeout must be .* seconds"), lock:
        pass


def test_the_lock_keys_of_a_name() -> None:
    """PostgreSQL's keys are the host namespace and the name's CRC-32; MySQL's name carries both names."""
    lock = AdvisoryLock(name="myapp")
    namespace, key = (int(k) for k in lock.keys.split(", "))
    assert namespace == POSTGRESQL_HOST_NAMESPACE == 1752134516
    assert -(2**31) <= key < 2**31
    assert NamedLock("app", name="myapp").server_name == "granite_assets_host.myapp.app"
    assert (
        os.path.basename(  # noqa: PTH119
            sqlite.lock_file(_sqlite_database("/srv/app.db"), "myapp")
        )
        == "app.db.granite-assets-myapp.lock"
    )


def _sqlite_database(path: str) -> ResolvedDatabase:
    from sqlalchemy import make_url

    url = make_url(f"sqlite:///{path}")
    return ResolvedDatabase(url, create_engine(url, poolclass=NullPool))  # never connects


@pytest.mark.parametrize("backend", backend_params(SERVER_BACKENDS), indirect=True)
def test_the_lock_connection_leaves_no_transaction_open(database: Database) -> None:
    """The lock's session sits idle outside any transaction, so it holds no snapshot or row lock."""
    if database.backend.name == "postgresql":
        states = (
            "SELECT state FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        with migration_lock(database.url_string, name="myapp"):
            assert database.scalar_rows(states) == ["idle"]
    else:
        transactions = (
            "SELECT count(*) FROM information_schema.innodb_trx t JOIN information_schema.processlist p "
            "ON t.trx_mysql_thread_id = p.id WHERE p.db = DATABASE()"
        )
        with migration_lock(database.url_string, name="myapp"):
            assert database.scalar_rows(transactions) == [0]


@pytest.mark.parametrize("backend", backend_params(SERVER_BACKENDS), indirect=True)
def test_a_lock_whose_session_died_in_the_block_ends_quietly(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A lock whose session is killed in the block: the block ends with a warning, no error, the lock free."""
    engine = create_engine(database.url, pool_size=1, max_overflow=0)
    if database.backend.name == "postgresql":
        kill = (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    else:
        kill = "SELECT id FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID()"
    try:
        with caplog.at_level(logging.WARNING, logger="granite_assets"), migration_lock(engine, name="myapp"):
            found = database.scalar_rows(kill)
            if database.backend.name == "mysql":
                database.execute(*(f"KILL {session}" for session in found))
            assert len(found) == 1
        assert "Could not release the migration lock 'myapp'" in caplog.text
        assert can_take(database.url_string, "myapp")
        with engine.connect() as connection:  # the pool holds no broken connection
            assert connection.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", backend_params(SERVER_BACKENDS), indirect=True)
def test_a_lock_that_cannot_be_released_goes_with_its_session(
    database: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """When releasing fails, the session is closed rather than handed back to the pool still locked."""

    def refuse(_lock: ServerLock, _connection: object) -> None:
        raise DBAPIError("SELECT pg_advisory_unlock(...)", None, RuntimeError("the server said no"))

    engine = create_engine(database.url, pool_size=1, max_overflow=0)
    try:
        with caplog.at_level(logging.WARNING, logger="granite_assets"):
            with migration_lock(engine, name="myapp"):
                monkeypatch.setattr(
                    AdvisoryLock if database.backend.name == "postgresql" else NamedLock, "release", refuse
                )
            monkeypatch.undo()
        assert "the server said no" in caplog.text
        assert can_take(database.url_string, "myapp")
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(SERVER_BACKENDS), indirect=True)
def test_a_server_that_ends_idle_sessions_does_not_end_the_lock(database: Database) -> None:
    """The lock's session sits idle all through the block: a server that ends idle sessions spares it.

    Some servers end sessions idle for a while (PostgreSQL's ``idle_session_timeout``, MySQL's
    ``wait_timeout``, often lowered on managed servers). Ending the lock's session would hand the
    lock to another replica while the host's upgrade still runs on its own connection.
    """
    if database.backend.name == "postgresql":
        database.execute(f"ALTER DATABASE {database.url.database} SET idle_session_timeout = '1s'")
        url = database.url_string
    else:  # wait_timeout is server-wide: lower it for this URL's sessions only
        url = database.url.update_query_dict(
            {"init_command": "SET SESSION wait_timeout = 1"}
        ).render_as_string(hide_password=False)
    with migration_lock(url, name="myapp"):
        time.sleep(3)  # the host's upgrade, on a connection of its own, outlasts the idle timeout
        assert not can_take(url, "myapp")


# Holds the lock, forks a long-lived child inside the block (a worker pool, say), and leaves the
# block; says "left" and waits for stdin to close, the child still alive.
FORKS_AND_LEAVES = """
import os, sys
from granite_assets.migrations import migration_lock
read, write = os.pipe()
with migration_lock(sys.argv[1], name="myapp"):
    if os.fork() == 0:
        os.close(write)
        os.read(read, 1)
        os._exit(0)
print("left", flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
@pytest.mark.sqlite
def test_sqlite_lock_ends_with_the_block_though_a_forked_child_lives_on(tmp_path: Path) -> None:
    """A child forked in the block shares the lock file's descriptor; the lock still ends with the block."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    with subprocess.Popen(
        [sys.executable, "-c", FORKS_AND_LEAVES, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as parent:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "left"
        try:
            assert can_take(url, "myapp")
        finally:
            parent.communicate("")


# Holds the lock and forks a child inside the block, which tries the lock itself: it is another
# process, so it must wait (exit 0), not take the parent's lock for its own (exit 1).
FORKS_AND_TRIES = """
import os, sys
from granite_assets.migrations import MigrationLockTimeoutError, migration_lock
with migration_lock(sys.argv[1], name="myapp"):
    child = os.fork()
    if child == 0:
        try:
            with migration_lock(sys.argv[1], name="myapp", timeout=0):
                os._exit(1)
        except MigrationLockTimeoutError:
            os._exit(0)
    _, status = os.waitpid(child, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.slow
def test_a_process_forked_in_the_block_does_not_hold_the_lock(database: Database) -> None:
    """A forked child is another process: its own block waits for the lock instead of counting as nested."""
    done = subprocess.run(
        [sys.executable, "-c", FORKS_AND_TRIES, database.url_string],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"the child took the lock its parent holds\n{done.stderr}"


@pytest.mark.parametrize("backend", backend_params(SERVER_BACKENDS), indirect=True)
def test_the_hosts_pooled_connection_gets_its_idle_timeout_back(database: Database) -> None:
    """The idle-timeout exemption the lock's session needs is undone before the connection goes back."""
    postgresql = database.backend.name == "postgresql"
    engine = create_engine(database.url, pool_size=1, max_overflow=0)

    @event.listens_for(engine, "connect")
    def host_setting(dbapi_connection: Any, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET idle_session_timeout = '60s'" if postgresql else "SET SESSION wait_timeout = 60")
        cursor.close()
        dbapi_connection.commit()

    show = "SHOW idle_session_timeout" if postgresql else "SELECT @@session.wait_timeout"
    try:
        with engine.connect() as connection:
            before = connection.exec_driver_sql(show).scalar()
        with migration_lock(engine, name="myapp"):
            pass
        with engine.connect() as connection:  # the pool's only connection, the one the lock used
            after = connection.exec_driver_sql(show).scalar()
    finally:
        engine.dispose()
    assert after == before


# Holds the lock and forks a child inside the block; the child leaves the block as any code in it
# would, then exits normally (its interpreter cleans up). The parent, still in its block, waits.
CHILD_LEAVES_THE_BLOCK = """
import os, sys
from granite_assets.migrations import migration_lock
with migration_lock(sys.argv[1], name="myapp"):
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        print("child gone", flush=True)
        sys.stdin.read()
if child == 0:
    sys.exit(0)
print("left", flush=True)
"""


@pytest.mark.slow
def test_a_child_that_leaves_the_block_keeps_its_parents_lock(database: Database) -> None:
    """A child forked in the block that leaves it normally releases nothing: the parent keeps the lock."""
    assert_the_parent_keeps_its_lock(database.url_string, CHILD_LEAVES_THE_BLOCK)


def test_a_nested_block_on_another_database_takes_its_own_lock(database: Database, tmp_path: Path) -> None:
    """Nesting is keyed by the database too: an inner block for the same name elsewhere is locked there."""
    (tmp_path / "other").mkdir()
    with fresh_database(database.backend, tmp_path / "other") as second:
        other = second.url_string
        with (
            migration_lock(database.url_string, name="myapp"),
            migration_lock(other, name="myapp", timeout=0),
        ):
            assert not can_take(other, "myapp")
            assert not can_take(database.url_string, "myapp")
        assert can_take(other, "myapp")


@pytest.mark.sqlite
def test_sqlite_symlink_to_the_database_shares_its_lock(tmp_path: Path) -> None:
    """A symlink to the database file names the same lock as the file itself."""
    real = tmp_path / "data" / "app.db"
    real.parent.mkdir()
    upgrade_to_head(f"sqlite:///{real}")
    link = tmp_path / "app-link.db"
    link.symlink_to(real)
    with migration_lock(f"sqlite:///{real}", name="myapp"):
        assert not can_take(f"sqlite:///{link}", "myapp")


@pytest.mark.mysql
def test_mysql_url_naming_no_database_is_refused() -> None:
    """A MariaDB URL (or engine) that names no database gets InvalidURLError, not a server-wide lock."""
    admin = require_server("mysql")
    engine = create_engine(admin, poolclass=NullPool)
    try:
        for target in (admin.render_as_string(hide_password=False), engine):
            with (
                pytest.raises(InvalidURLError, match="names no database"),
                migration_lock(target, name="myapp"),
            ):
                pytest.fail("the block ran")
    finally:
        engine.dispose()


def creator_engine(url: str) -> Any:
    """An engine built with a creator: its URL names neither the server nor the database."""
    real = create_engine(url, poolclass=NullPool)
    args, kwargs = real.dialect.create_connect_args(real.url)
    dbapi = real.dialect.loaded_dbapi
    backend = real.url.get_backend_name()
    return create_engine(
        f"{backend}+{real.url.get_driver_name()}://", creator=lambda: dbapi.connect(*args, **kwargs)
    )


@pytest.mark.parametrize("backend", backend_params(SERVER_BACKENDS), indirect=True)
def test_engines_with_a_creator_on_two_databases_are_two_locks(database: Database, tmp_path: Path) -> None:
    """A nested block on another database through a creator engine takes that database's lock."""
    (tmp_path / "other").mkdir()
    with fresh_database(database.backend, tmp_path / "other") as second:
        engines = [
            creator_engine(url) for url in (database.url_string, second.url_string, database.url_string)
        ]
        first, other, again = engines
        try:
            with migration_lock(first, name="myapp"), migration_lock(other, name="myapp", timeout=0):
                assert not can_take(second.url_string, "myapp")
            with migration_lock(first, name="myapp"), migration_lock(again, name="myapp", timeout=0):
                assert not can_take(database.url_string, "myapp")  # the same database: nested, no wait
        finally:
            for engine in engines:
                engine.dispose()


# Nested blocks on an engine whose one connection both use (StaticPool): a child forked after the
# inner block ends, still inside the outer one, must leave the parent's session alone too.
FORKS_AFTER_A_NESTED_BLOCK = """
import os, sys
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool
from granite_assets.migrations import migration_lock
engine = create_engine(sys.argv[1], poolclass=StaticPool)
with migration_lock(engine, name="myapp"):
    with migration_lock(engine, name="other"):
        pass
    child = os.fork()
    if child == 0:
        sys.exit(0)
    os.waitpid(child, 0)
    print("child gone", flush=True)
    sys.stdin.read()
print("left", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", backend_params(SERVER_BACKENDS), indirect=True)
def test_a_child_forked_after_a_nested_block_on_one_connection_keeps_the_lock(database: Database) -> None:
    """The connection stays the process's own until the outermost block that uses it ends."""
    assert_the_parent_keeps_its_lock(database.url_string, FORKS_AFTER_A_NESTED_BLOCK)


@pytest.mark.slow
@pytest.mark.postgresql
def test_a_pg8000_child_that_leaves_the_block_keeps_its_parents_lock(tmp_path: Path) -> None:
    """pg8000's socket is found too: its child leaving the block releases nothing of the parent's."""
    with fresh_database(Backend("postgresql", "pg8000"), tmp_path) as database:
        assert_the_parent_keeps_its_lock(database.url_string, CHILD_LEAVES_THE_BLOCK)


def assert_the_parent_keeps_its_lock(url: str, script: str) -> None:
    """Run ``script``, which forks inside migration_lock(url, "myapp"); the lock stays the parent's."""
    with subprocess.Popen(
        [sys.executable, "-c", script, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as parent:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "child gone"
        try:
            assert not can_take(url, "myapp"), "the child released its parent's lock"
        finally:
            out, err = parent.communicate("", timeout=60)
    assert parent.returncode == 0, err
    assert out.strip() == "left"
    assert can_take(url, "myapp")
