"""Running the bundled migrations against a target database (needs the ``db`` extra).

The no-op path, a database already at head, reads the version table once and compares it with
the history read from the manifest: no Alembic, no lock. Only when work is pending is the
migration lock taken, the version re-read under it, and Alembic run, one run at a time in the
process (:mod:`granite_assets._inprocess`).

A caller's connection is migrated inside the caller's transaction where that can be made safe,
and refused where it cannot (see :func:`refuse_unsafe_connection`); a connection in AUTOCOMMIT
has no transaction to run in, so it is migrated as a connection of our own is, revision by
revision under the session lock.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection
from sqlalchemy.exc import DBAPIError

from granite_assets import _compat, _locking
from granite_assets._errors import (
    DatabaseAheadError,
    DatabaseBehindError,
    MigrationFailedError,
    MigrationLockTimeoutError,
    UnsupportedConnectionError,
)
from granite_assets._failures import (
    aftermath,
    in_bookkeeping,
    revision_failed,
    unknown_revision,
)
from granite_assets._history import History, Revision, load_history
from granite_assets._inprocess import alembic_run
from granite_assets._target import Database, Target, connect, missing_sqlite_file, resolve
from granite_assets._timeouts import check_lock_timeout
from granite_assets._urls import is_async, parse_url
from granite_assets._version_table import stored_revision

logger = logging.getLogger("granite_assets.migrations")


# -- Deciding what to do ---------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One call's work: which environment, to which revision, waiting how long for the lock."""

    directory: Path
    history: History
    destination: str  # "head", "base" or a revision id
    lock_timeout: float


@dataclass(frozen=True)
class Plan:
    """The revisions a call runs, in the order it runs them, and where the database ends up."""

    steps: tuple[Revision, ...]
    destination: str | None
    upgrade: bool


def pending(
    history: History, current: str | None, db: Database, connection: Connection
) -> tuple[Revision, ...]:
    """The revisions to apply after ``current``.

    A database at a revision this release does not ship is left alone when its record says
    every newer revision is backward compatible (a warning names them); otherwise it is refused.
    """
    if current is None or history.knows(current):
        return history.after(current)
    ahead = _compat.examine(connection, history, current)
    if ahead.reason is not None:
        raise ahead_error(history, ahead, db)
    logger.warning(
        "The database %s is at granite-assets revision %s, newer than this release's %s; the newer "
        "revisions (%s) are backward compatible, so this release works with it unchanged.",
        db.where,
        current,
        history.head,
        ", ".join(ahead.newer),
    )
    return ()


def ahead_error(
    history: History, ahead: _compat.Ahead, db: Database, *, downgrading: bool = False
) -> DatabaseAheadError:
    """The error for a database whose newer revisions this release cannot work with (or revert)."""
    where = (
        f"The database {db.where} is at granite-assets revision {ahead.revision}, which this release "
        f"does not ship (its newest is {history.head})"
    )
    ways_out = (
        "roll forward to a release that ships it, or downgrade the database to "
        f"{history.head} with the newer release first (`granite-assets db downgrade {history.head}`)"
    )
    if downgrading:
        message = (
            f"{where}: only a release that ships {ahead.revision} holds the downgrade() that reverts "
            f"it. Nothing was changed. Downgrade with the newer release (`granite-assets db downgrade "
            f"{history.head}` run with it installed), then with this one if you need to go further."
        )
    elif ahead.reason == "incompatible":
        message = (
            f"{where}, and the newer revision {ahead.blocking} is not backward compatible: this "
            f"release's code may not work with the schema. Upgrade the granite-assets package: {ways_out}."
        )
    else:
        message = (
            f"{where}, and nothing this release can read says the newer revisions are backward "
            "compatible (a release that keeps no such record migrated it, or the record is "
            "missing, unreadable or does not lead back to this release's revisions), so they are "
            "treated as if they were not. The database is newer than this granite-assets: "
            f"upgrade the granite-assets package ({ways_out})."
        )
    return DatabaseAheadError(
        message, revision=ahead.revision, reason=ahead.reason or "compatible", blocking=ahead.blocking
    )


def plan(
    history: History, current: str | None, destination: str, db: Database, connection: Connection
) -> Plan:
    """What it takes to bring a database at ``current`` to ``destination`` (``head``, ``base`` or an id)."""
    if destination == "head":
        steps = pending(history, current, db, connection)
        return Plan(steps, history.head if steps else current, upgrade=True)
    if current is not None and not history.knows(current):
        raise ahead_error(history, _compat.examine(connection, history, current), db, downgrading=True)
    target = None if destination == "base" else destination
    keep, have = _count_through(history, target), _count_through(history, current)
    if keep > have:
        between = history.revisions[have:keep]
        raise DatabaseBehindError(
            f"The database {db.where} is at revision {current or 'none'}"
            f"{'' if current else ' (granite-assets never migrated it)'}, below {destination}: "
            "there is nothing to downgrade. To move it up, run `granite-assets db upgrade`.",
            current=current,
            pending=[r.revision for r in between],
        )
    steps = tuple(reversed(history.revisions[keep:have]))
    return Plan(steps, target if steps else current, upgrade=False)


def _count_through(history: History, revision: str | None) -> int:
    """How many revisions, from the first, lead up to and include ``revision``."""
    return 0 if revision is None else len(history.revisions) - len(history.after(revision))


# -- Entry points ----------------------------------------------------------------------------


def current_revision(target: Target, lock_timeout: float) -> str | None:
    """The database's revision, read from granite-assets' version table only."""
    with resolve(target, lock_timeout) as db:
        if no_sqlite_file(db):
            return None
        with reading(db) as (connection, keep):
            return stored_revision(connection, db, keep_transaction=keep)


def check_up_to_date(directory: Path, target: Target, lock_timeout: float) -> str | None:
    """Return the database's revision when this release needs nothing applied to it, else raise."""
    history = load_history(directory)
    with resolve(target, lock_timeout) as db:
        if no_sqlite_file(db):
            current, todo = None, history.revisions
        else:
            with reading(db) as (connection, keep):
                current = stored_revision(connection, db, keep_transaction=keep)
                todo = pending(history, current, db, connection)
    if todo:
        names = ", ".join(f"{r.revision} ({r.message})" for r in todo)
        raise DatabaseBehindError(
            f"The database {db.where} is at revision {current or 'none'}; "
            f"{len(todo)} granite-assets revision(s) are pending: {names}. "
            "Run `granite-assets db upgrade` (or granite_assets.migrations.upgrade_to_head()).",
            current=current,
            pending=[r.revision for r in todo],
        )
    return current


def upgrade(directory: Path, target: Target, lock_timeout: float) -> str | None:
    """Bring the database to head; return the revision it is at."""
    lock_timeout = check_lock_timeout(lock_timeout)
    history = load_history(directory)
    with resolve(target, lock_timeout) as db:
        return migrate_target(db, Job(directory, history, "head", lock_timeout))


def downgrade(directory: Path, target: Target, revision: str, lock_timeout: float) -> str | None:
    """Step the database down to ``revision`` (or ``"base"``) under the migration lock."""
    lock_timeout = check_lock_timeout(lock_timeout)
    history = load_history(directory)
    if revision != "base" and not history.knows(revision):
        raise unknown_revision(history, revision)
    with resolve(target, lock_timeout) as db:
        return migrate_target(db, Job(directory, history, revision, lock_timeout))


def migrate_target(db: Database, job: Job) -> str | None:
    """Migrate ``db`` as ``job`` says: the cheap read first, the lock only when there is work."""
    given = db.connection
    if given is not None and not in_autocommit(given):
        current = stored_revision(given, db, keep_transaction=True)
        if not plan(job.history, current, job.destination, db, given).steps:
            return current
        refuse_unsafe_connection(given, db)
        return migrate_on_callers_connection(db, given, job)
    own = replace(db, connection=None)  # committed revision by revision, as on a connection of ours
    if given is not None:
        # In AUTOCOMMIT there is no transaction to run in, but the session is the caller's: it may
        # have moved to another database (USE) or schema (search_path), and may be the engine's
        # only connection. So it is migrated as is, and handed back in AUTOCOMMIT.
        with autocommit_kept(given):
            return migrate_on_own_terms(own, given, job)
    with connect(own) as connection:
        return migrate_on_own_terms(own, connection, job)


def migrate_on_own_terms(db: Database, connection: Connection, job: Job) -> str | None:
    """Read the revision outside any transaction; when there is work, migrate under the session lock."""
    use_autocommit(connection, on=True)
    current = stored_revision(connection, db, keep_transaction=False)
    if not plan(job.history, current, job.destination, db, connection).steps:
        return current
    return migrate_locked(db, connection, job)


def upgrade_database(directory: Path, db: Database, history: History, lock_timeout: float) -> str | None:
    """Upgrade a database reached through an engine (the async entry point's way in)."""
    return migrate_target(db, Job(directory, history, "head", check_lock_timeout(lock_timeout)))


def no_sqlite_file(db: Database) -> bool:
    """Tell, and log, that a SQLite URL names no file: reading it would create an empty one.

    Only the functions that read call this: an upgrade creates the file on purpose.
    """
    missing = missing_sqlite_file(db)
    if missing is not None:
        logger.warning(
            "There is no SQLite database at %s; nothing was created. Check the path in the URL.", missing
        )
    return missing is not None


@contextmanager
def reading(db: Database) -> Iterator[tuple[Connection, bool]]:
    """A connection to read on: the caller's (whose transaction must survive), or one of our own."""
    if db.connection is not None:
        yield db.connection, True
        return
    with connect(db) as connection:
        use_autocommit(connection, on=True)
        yield connection, False


# -- The caller's connection -----------------------------------------------------------------


def in_autocommit(connection: Connection) -> bool:
    """Tell whether ``connection`` runs in AUTOCOMMIT, set on it or on its engine."""
    # SQLAlchemy's own test (2.0 and 2.1): get_isolation_level() never reports AUTOCOMMIT.
    return bool(connection._is_autocommit_isolation())  # noqa: SLF001


def refuse_unsafe_connection(connection: Connection, db: Database) -> None:
    """Refuse a caller's connection whose transaction cannot hold the migration safely."""
    backend = connection.dialect.name
    if backend in {"mysql", "mariadb"}:
        raise UnsupportedConnectionError(
            f"granite-assets has revisions to apply to {db.where}, but not inside your transaction: "
            "MariaDB and MySQL commit every DDL statement on their own, taking your transaction's "
            "work with them, and the migration lock would end before your commit. Nothing was "
            "changed. Pass the Engine instead (upgrade_to_head(connection.engine)): granite-assets "
            "then migrates on a connection of its own, committing each revision."
        )
    if backend == "sqlite" and connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise UnsupportedConnectionError(
            f"granite-assets has revisions to apply to {db.where}, but not inside your transaction: "
            "PRAGMA foreign_keys is ON on this connection, and the table rebuilds of SQLite "
            "migrations need it OFF (or they delete the rows that refer to the rebuilt table), which "
            "SQLite only allows outside a transaction. Nothing was changed. Pass the Engine instead "
            "(upgrade_to_head(connection.engine)): granite-assets then switches the pragma off for "
            "the migration, checks the foreign keys before committing, and switches it back on."
        )


def migrate_on_callers_connection(db: Database, connection: Connection, job: Job) -> str | None:
    """Migrate inside the caller's transaction, beginning one if none is open; commit nothing."""
    if connection.dialect.name == "sqlite":
        with _locking.sqlite_write_lock(connection, db, job.lock_timeout, callers=True):
            return migrate(db, connection, job, own=False)
    if not connection.in_transaction():
        connection.begin()
    lock = _locking.lock_for(connection, transactional=True)
    with _locking.holding(lock, connection, job.lock_timeout, db.where):
        return migrate(db, connection, job, own=False)


_SNAPSHOT_LEVELS = {"REPEATABLE READ", "SERIALIZABLE"}


def reread_in_callers_transaction(connection: Connection, db: Database) -> str | None:
    """The revision, re-read under the lock in the caller's transaction, as other sessions committed it.

    At READ COMMITTED the re-read sees every commit. A REPEATABLE READ or SERIALIZABLE
    transaction sees the database as it was when it began: if another process migrated since,
    the transaction cannot build on that, and the caller must begin a new one.
    """
    seen = stored_revision(connection, db, keep_transaction=True)
    if connection.dialect.name != "postgresql" or connection.get_isolation_level() not in _SNAPSHOT_LEVELS:
        return seen
    with connect(replace(db, connection=None)) as fresh:
        use_autocommit(fresh, on=True)
        committed = stored_revision(fresh, db, keep_transaction=False)
    if committed != seen:
        raise UnsupportedConnectionError(
            f"Another process migrated {db.where} to revision {committed or 'none'} after your "
            f"{connection.get_isolation_level()} transaction began, which still sees revision "
            f"{seen or 'none'}. Nothing was changed: roll back your transaction and call again "
            "in a new one (or pass the Engine)."
        )
    return seen


# -- Our own connection ----------------------------------------------------------------------


def use_autocommit(connection: Connection, *, on: bool) -> None:
    """On PostgreSQL, run our own reads and lock calls outside transactions, or stop doing so.

    There every transaction costs a BEGIN and a ROLLBACK round trip of its own, which would
    double the cost of the no-op path; the setting is only a flag on the driver's connection,
    and the pool restores the connection's level when it is returned. Alembic always runs with
    the normal level (:func:`transactional`), so each revision keeps its own transaction.
    """
    if connection.dialect.name != "postgresql":
        return
    wanted = "AUTOCOMMIT" if on else connection.default_isolation_level
    if (
        connection.get_execution_options().get("isolation_level", connection.default_isolation_level)
        == wanted
    ):
        return
    if connection.in_transaction():
        connection.rollback()
    connection.execution_options(isolation_level=wanted)


@contextmanager
def autocommit_kept(connection: Connection) -> Iterator[None]:
    """Hand a caller's AUTOCOMMIT connection back as it came: in AUTOCOMMIT, no transaction begun by us."""
    began = connection.in_transaction()  # in AUTOCOMMIT, only SQLAlchemy's marker of one
    try:
        yield
    finally:
        if not connection.closed and not connection.invalidated:
            if connection.in_transaction() and (not began or not in_autocommit(connection)):
                connection.rollback()
            if not in_autocommit(connection):
                connection.execution_options(isolation_level="AUTOCOMMIT")


def transactional(connection: Connection) -> None:
    """Give Alembic real transactions on our own connection, even from an engine in AUTOCOMMIT.

    Otherwise a failed revision's data changes would stay committed. SQLite needs nothing: its
    migration is one explicit transaction (``BEGIN IMMEDIATE``).
    """
    if connection.in_transaction():
        connection.rollback()  # hand Alembic a connection with no transaction open
    if connection.dialect.name != "sqlite" and in_autocommit(connection):
        connection.execution_options(isolation_level=connection.default_isolation_level)


def migrate_locked(db: Database, connection: Connection, job: Job) -> str | None:
    """Take the migration lock on our own ``connection``, re-read the revision, run what is left.

    The lock is session-level and taken on the connection that migrates: it outlives the
    per-revision commits, is released when done, and dies with the session if the process does.
    """
    if connection.in_transaction():
        connection.rollback()
    if connection.dialect.name == "sqlite":
        with (
            sqlite_foreign_keys_off(connection) as checking,
            _locking.sqlite_write_lock(connection, db, job.lock_timeout),
        ):
            before: Counter[tuple[str, ...]] = foreign_key_violations(connection) if checking else Counter()
            result = migrate(db, connection, job, own=True)
            if checking:
                refuse_new_violations(connection, db, before)
            commit_sqlite(connection, db)
            return result
    use_autocommit(connection, on=True)
    lock = _locking.lock_for(connection, transactional=False)
    with _locking.holding(lock, connection, job.lock_timeout, db.where):
        try:
            return migrate(db, connection, job, own=True)
        except BaseException:
            if connection.in_transaction():
                connection.rollback()  # so that releasing the lock can run
            raise


# -- SQLite's foreign keys -------------------------------------------------------------------


@contextmanager
def sqlite_foreign_keys_off(connection: Connection) -> Iterator[bool]:
    """Switch SQLite's foreign keys off for the migration when they are on; say whether they were.

    A table rebuild (Alembic's batch mode) drops the old table, and with foreign keys on, that
    deletes every row referring to it through ``ON DELETE CASCADE``. The pragma can only change
    outside a transaction, so this wraps the write lock's transaction.
    """
    was_on = bool(connection.exec_driver_sql("PRAGMA foreign_keys").scalar())
    if connection.in_transaction():
        connection.rollback()
    if not was_on:
        yield False
        return
    connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
    try:
        yield True
    finally:
        if connection.in_transaction():
            connection.rollback()
        connection.exec_driver_sql("PRAGMA foreign_keys = ON")
        connection.rollback()


def foreign_key_violations(connection: Connection) -> Counter[tuple[str, ...]]:
    """Count the rows that break a foreign key, by table, referred table and key."""
    rows = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    return Counter((str(r[0]), str(r[2]), str(r[3])) for r in rows)


def refuse_new_violations(connection: Connection, db: Database, before: Counter[tuple[str, ...]]) -> None:
    """Fail the migration, before its commit, if it left rows breaking foreign keys that did not before."""
    new = foreign_key_violations(connection) - before
    if new:
        found = "; ".join(
            f"{n} row(s) of {table} referring to {parent}" for (table, parent, _), n in new.items()
        )
        raise MigrationFailedError(
            f"granite-assets' migration of {db.where} would leave rows that break foreign keys ({found}), "
            "so the whole migration was rolled back (SQLite migrates in one transaction) and the "
            "database is as it was. Run PRAGMA foreign_key_check to see them.",
            None,
        )


def commit_sqlite(connection: Connection, db: Database) -> None:
    """Commit SQLite's one migration transaction, saying plainly when that fails."""
    try:
        connection.commit()
    except DBAPIError as exc:
        raise MigrationFailedError(
            f"granite-assets could not commit the migration of {db.where}: "
            f"{db.explain(exc)} The whole migration was rolled back (SQLite "
            "migrates in one transaction): the database is as it was. Fix the cause and run it again.",
            None,
        ) from None


# -- Running Alembic -------------------------------------------------------------------------


def migrate(db: Database, connection: Connection, job: Job, *, own: bool) -> str | None:
    """Run Alembic to the job's destination unless the database, re-read under the lock, is there.

    ``own`` says the connection is ours, whose work is committed revision by revision (SQLite:
    in one transaction committed by the caller of this function); otherwise it is the caller's,
    and nothing is committed.
    """
    per_revision = own and connection.dialect.name != "sqlite"
    if own:
        current = stored_revision(connection, db, keep_transaction=not per_revision)
    else:
        current = reread_in_callers_transaction(connection, db)
    the_plan = plan(job.history, current, job.destination, db, connection)
    if not the_plan.steps:
        return the_plan.destination
    if per_revision:
        transactional(connection)
    config = alembic_config(job.directory, connection, granite_assets_history=job.history)
    try:
        with alembic_run(job.lock_timeout, db.where):
            _alembic_command("upgrade" if the_plan.upgrade else "downgrade")(config, job.destination)
    except MigrationLockTimeoutError:
        raise
    except Exception as exc:
        done = len(config.attributes.get("granite_assets_steps", []))
        raise failure(
            db, connection, the_plan, exc, before=current, done=done, per_revision=per_revision
        ) from exc
    if per_revision:
        if connection.in_transaction():
            connection.commit()
        use_autocommit(connection, on=True)
    return the_plan.destination


def failure(
    db: Database,
    connection: Connection,
    the_plan: Plan,
    exc: Exception,
    *,
    before: str | None,
    done: int,
    per_revision: bool,
) -> MigrationFailedError:
    """The error for a failed run, naming the revision that failed and the one the database is at.

    Where each revision commits on its own, a step counts as done only once its commit went
    through, which only the version table, read back, can tell (an error raised by the commit
    itself, a deferred foreign key say, comes after Alembic counted the step). Elsewhere nothing
    was committed, and the step that failed is the one after the last that completed.
    """
    verb = "upgrade" if the_plan.upgrade else "downgrade"
    index = done
    if per_revision:
        if connection.in_transaction():
            connection.rollback()
        try:
            use_autocommit(connection, on=True)
            reached = stored_revision(connection, db, keep_transaction=False)
        except Exception:  # noqa: BLE001 - the read-back is a courtesy; the original error matters
            left = (
                "granite-assets could not read back which revision the database is at now: run "
                f"`granite-assets db current` to see it, fix the cause and run the {verb} again."
            )
            return revision_failed(db, _step(the_plan, index, exc), exc, left)
        arrived_at = [before, *(s.revision if the_plan.upgrade else s.down_revision for s in the_plan.steps)]
        index = arrived_at.index(reached) if reached in arrived_at else done
    else:
        reached = before
    failed = _step(the_plan, index, exc)
    left = aftermath(db, connection, verb, before=before, reached=reached, failed=failed)
    return revision_failed(db, failed, exc, left)


def _step(the_plan: Plan, index: int, exc: Exception) -> Revision | None:
    """The step at ``index``, unless the error came from the bookkeeping or after the last step."""
    if in_bookkeeping(exc) or not 0 <= index < len(the_plan.steps):
        return None
    return the_plan.steps[index]


def _alembic_command(name: str) -> Callable[..., None]:
    from alembic import command

    fn: Callable[..., None] = getattr(command, name)
    return fn


def alembic_config(directory: Path, connection: Connection | None = None, **attributes: Any) -> Any:
    """An in-memory Alembic configuration for ``directory``; reads no ini, configures no logging."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(directory).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    config.attributes.update(attributes)
    return config


def offline_sql(directory: Path, url_or_dialect: str | URL, revision_range: str, *, downgrade: bool) -> str:
    """The SQL script for ``revision_range`` in the dialect of ``url_or_dialect``."""
    import io

    url = parse_url(
        url_or_dialect
        if isinstance(url_or_dialect, URL) or "://" in url_or_dialect
        else f"{url_or_dialect}://"
    )
    is_async(url)  # refuses an unknown dialect
    history = load_history(directory)
    for revision in revision_range.split(":"):
        if revision not in {"base", "head"} and not history.knows(revision):
            raise unknown_revision(history, revision)
    dialect_only = URL.create(url.drivername)  # no credentials can reach the script
    buffer = io.StringIO()
    config = alembic_config(directory, granite_assets_offline_url=dialect_only.render_as_string())
    config.output_buffer = buffer
    _alembic_command("downgrade" if downgrade else "upgrade")(config, revision_range, sql=True)
    return buffer.getvalue()
