"""Running the bundled migrations against a target database (needs the ``db`` extra).

The no-op path, a database already at head, reads the version table once and compares it with
the history read from the manifest: no Alembic, no lock. Only when work is pending is the
migration lock taken, the version re-read under it, and Alembic run, one run at a time in the
process (:mod:`granite_assets.migrations._inprocess`).

A caller's connection with a transaction open is migrated inside that transaction where that
can be made safe, and refused where it cannot (see :func:`refuse_unsafe_connection`). One with
no transaction open, or in AUTOCOMMIT, is migrated as a connection of our own is, revision by
revision under the session lock, and handed back as it came.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, event
from sqlalchemy.exc import DBAPIError

from granite_assets.migrations._database import Database
from granite_assets.migrations._errors import (
    DatabaseBehindError,
    DDLLockTimeoutError,
    MigrationError,
    MigrationLockTimeoutError,
    UnsupportedConnectionError,
)
from granite_assets.migrations._failures import (
    behind_error,
    changes_nothing,
    in_bookkeeping,
    names_bookkeeping,
    refused_privilege,
    revision_failed,
    unknown_revision,
)
from granite_assets.migrations._history import History, Revision, load_history
from granite_assets.migrations._inprocess import alembic_run, refuse_nested
from granite_assets.migrations._isolation import borrowing, in_autocommit, transactional, use_autocommit
from granite_assets.migrations._messages import advice, first_line, seconds
from granite_assets.migrations._names import logger
from granite_assets.migrations._plan import Job, Plan, downgrade_plan, pending, plan
from granite_assets.migrations._progress import ProgressCallback, ProgressCallbackError, Tracker
from granite_assets.migrations._revision_limits import limits_for
from granite_assets.migrations._target import Target, connect, resolve
from granite_assets.migrations._timeouts import DEFAULT_LIMITS, DDLLimits, check_lock_timeout
from granite_assets.migrations._urls import is_async, parse_url
from granite_assets.migrations._version_table import stored_revision
from granite_assets.migrations._waiting import pause

# -- Entry points ----------------------------------------------------------------------------


def current_revision(target: Target, lock_timeout: float) -> str | None:
    """The database's revision, read from granite-assets' version table only."""
    with resolve(target, lock_timeout) as db:
        if no_file(db):
            return None
        with reading(db) as (connection, keep):
            return stored_revision(connection, db, keep_transaction=keep)


def check_up_to_date(directory: Path, target: Target, lock_timeout: float) -> str | None:
    """Return the database's revision when this release needs nothing applied to it, else raise."""
    history = load_history(directory)
    with resolve(target, lock_timeout) as db:
        if no_file(db):
            current, todo = None, history.revisions
        else:
            with reading(db) as (connection, keep):
                current = stored_revision(connection, db, keep_transaction=keep)
                todo = pending(history, current, db, connection)
    if todo:
        raise _pending_error(db, current, todo)
    return current


def upgrade(
    directory: Path,
    target: Target,
    lock_timeout: float,
    limits: DDLLimits = DEFAULT_LIMITS,
    *,
    on_progress: ProgressCallback | None = None,
) -> str | None:
    """Bring the database to head; return the revision it is at."""
    lock_timeout = check_lock_timeout(lock_timeout)
    history = load_history(directory)
    with resolve(target, lock_timeout) as db:
        return migrate_target(
            db, Job(directory, history, "head", lock_timeout, limits, on_progress=on_progress)
        )


def upgrade_to(
    directory: Path,
    target: Target,
    revision: str,
    lock_timeout: float,
    limits: DDLLimits = DEFAULT_LIMITS,
    *,
    on_progress: ProgressCallback | None = None,
) -> str | None:
    """Bring the database up to ``revision`` and no further; return the revision it is at."""
    lock_timeout = check_lock_timeout(lock_timeout)
    history = load_history(directory)
    if revision not in {"base", "head"} and not history.knows(revision):
        raise unknown_revision(history, revision)
    with resolve(target, lock_timeout) as db:
        job = Job(directory, history, revision, lock_timeout, limits, upward=True, on_progress=on_progress)
        return migrate_target(db, job)


def downgrade(
    directory: Path,
    target: Target,
    revision: str,
    lock_timeout: float,
    limits: DDLLimits = DEFAULT_LIMITS,
    *,
    on_progress: ProgressCallback | None = None,
) -> str | None:
    """Step the database down to ``revision`` (or ``"base"``) under the migration lock."""
    lock_timeout = check_lock_timeout(lock_timeout)
    history = load_history(directory)
    if revision != "base" and not history.knows(revision):
        raise unknown_revision(history, revision)
    with resolve(target, lock_timeout) as db:
        if no_file(db):  # opening it would create it: an empty database has nothing to revert
            return downgrade_plan(history, None, revision, db).destination
        return migrate_target(
            db, Job(directory, history, revision, lock_timeout, limits, on_progress=on_progress)
        )


def stamp(directory: Path, target: Target, revision: str, lock_timeout: float) -> str | None:
    """Record ``revision`` (``"base"``: none) as the database's, running nothing; return the one it replaced.

    Under the migration lock, in one transaction with the compatibility record, which is made to
    hold the revisions up to ``revision`` and no others.
    """
    lock_timeout = check_lock_timeout(lock_timeout)
    history = load_history(directory)
    if revision != "base" and not history.knows(revision):
        raise unknown_revision(history, revision)
    with resolve(target, lock_timeout) as db:
        given = db.connection
        if given is not None and in_callers_transaction(given):  # theirs to commit
            with db.backend.callers_migration(given, db, lock_timeout):
                return _stamp(db, given, directory, history, revision)
        own = replace(db, connection=None)
        if given is None:
            with connect(own) as connection:
                return _stamp_locked(own, connection, directory, history, revision, lock_timeout)
        with borrowing(given):
            return _stamp_locked(own, given, directory, history, revision, lock_timeout)


def _stamp_locked(  # noqa: PLR0917 - a private step of stamp(), called twice
    db: Database,
    connection: Connection,
    directory: Path,
    history: History,
    revision: str,
    lock_timeout: float,
) -> str | None:
    """Stamp on a connection outside any transaction, under the session lock, committing the change."""
    if connection.in_transaction():
        connection.rollback()
    use_autocommit(connection, on=True)
    with db.backend.own_migration(connection, db, lock_timeout):
        if db.backend.migrates_in_one_transaction:  # in the lock's own transaction, committed with it
            return _stamp(db, connection, directory, history, revision)
        transactional(connection)
        with connection.begin():
            before = _stamp(db, connection, directory, history, revision)
        use_autocommit(connection, on=True)
        return before


def _stamp(
    db: Database, connection: Connection, directory: Path, history: History, revision: str
) -> str | None:
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from granite_assets.migrations import _compatibility
    from granite_assets.migrations._names import VERSION_TABLE

    before = stored_revision(connection, db, keep_transaction=True)
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    if before is not None and not history.knows(before):  # a newer release's: Alembic cannot step from it
        connection.exec_driver_sql(f"DELETE FROM {VERSION_TABLE}")
    context.stamp(ScriptDirectory(str(directory)), revision)
    after = None if revision == "base" else revision
    _compatibility.ensure(connection, history, after)
    logger.info(
        "Stamped %s at granite-assets revision %s (it was at %s); no revision ran.",
        db.where,
        after or "base",
        before or "none",
    )
    return before


@dataclass(frozen=True)
class Status:
    """Where a database stands against this release, for a report; nothing is raised for it.

    ``state`` is ``"up_to_date"``, ``"behind"``, ``"ahead_compatible"``, ``"ahead_incompatible"``
    or ``"ahead_unrecorded"``; ``verdict`` is the error :func:`check_up_to_date` raises in that state.
    """

    current: str | None
    history: History
    pending: tuple[Revision, ...]
    newer: tuple[tuple[str, bool | None], ...]
    state: str
    verdict: MigrationError | None


def status(directory: Path, target: Target, lock_timeout: float) -> Status:
    """Read where the database stands: its revision, what is pending, what is newer than this release."""
    from granite_assets.migrations import _compatibility
    from granite_assets.migrations._plan import ahead_error

    history = load_history(directory)
    with resolve(target, lock_timeout) as db:
        current, ahead = None, None
        if not no_file(db):
            with reading(db) as (connection, keep):
                current = stored_revision(connection, db, keep_transaction=keep)
                if current is not None and not history.knows(current):
                    ahead = _compatibility.examine(connection, history, current)
    if ahead is None:
        todo = history.after(current)
        verdict = _pending_error(db, current, todo) if todo else None
        return Status(current, history, todo, (), "behind" if todo else "up_to_date", verdict)
    if ahead.reason == "unrecorded":
        newer: tuple[tuple[str, bool | None], ...] = ((ahead.revision, None),)
    else:
        newer = tuple(zip(ahead.newer, ahead.compatible, strict=True))
    state = f"ahead_{ahead.reason}" if ahead.reason else "ahead_compatible"
    refusal = ahead_error(history, ahead, db) if ahead.reason else None
    return Status(current, history, (), newer, state, refusal)


def _pending_error(db: Database, current: str | None, todo: tuple[Revision, ...]) -> DatabaseBehindError:
    names = ", ".join(f"{r.revision} ({r.message})" for r in todo)
    return behind_error(
        f"The database {db.where} is at revision {current or 'none'}; "
        f"{len(todo)} granite-assets revision(s) are pending: {names}. "
        "Run `granite-assets db upgrade` (or granite_assets.migrations.upgrade_to_head()).",
        current=current,
        pending=todo,
    )


def migrate_target(db: Database, job: Job) -> str | None:
    """Migrate ``db`` as ``job`` says: the cheap read first, the lock only when there is work."""
    given = db.connection
    if given is not None and in_callers_transaction(given):
        current, work = read_and_plan(db, given, job, keep_transaction=True)
        if not work:
            return current
        db.backend.refuse_callers_transaction(given, db)
        return migrate_on_callers_connection(db, given, job)
    own = replace(db, connection=None)  # committed revision by revision, as on a connection of ours
    if given is not None:
        # No transaction of the caller's to join (none is open, or AUTOCOMMIT), and none left
        # open after, where Alembic's begin_transaction() in the caller's env.py would take it for
        # the caller's and commit nothing. The session is the caller's: it may have moved to another
        # database (USE) or schema (search_path), and may be the engine's only connection; so it is
        # migrated as is, and handed back as it came.
        with borrowing(given):
            if in_begin_block(given):  # in AUTOCOMMIT: its transaction commits nothing, but is theirs
                return read_in_begin_block(db, given, job)
            return migrate_outside_transactions(own, given, job)
    with connect(own) as connection:
        return migrate_outside_transactions(own, connection, job)


def read_and_plan(
    db: Database, connection: Connection, job: Job, *, keep_transaction: bool
) -> tuple[str | None, bool]:
    """The database's revision, and whether the job has work there (refused inside a run of ours)."""
    current = stored_revision(connection, db, keep_transaction=keep_transaction)
    if not plan(job.history, current, job.destination, db, connection, upward=job.upward).steps:
        return current, False
    refuse_nested(db.where)
    return current, True


def in_begin_block(connection: Connection) -> bool:
    """Tell whether the caller's connection is inside a ``with connection.begin()`` block.

    Such a block's transaction must be left to it; one SQLAlchemy began by itself may be ended.
    """
    return connection._trans_context_manager is not None  # noqa: SLF001 - SQLAlchemy 2.0 and 2.1


def read_in_begin_block(db: Database, connection: Connection, job: Job) -> str | None:
    """The revision of a database at the job's destination; a refusal when there is work to do.

    Revisions need real transactions, and SQLAlchemy lets no isolation level change while a
    ``begin()`` block is open, even one in AUTOCOMMIT, which commits nothing of its own.
    """
    current, work = read_and_plan(db, connection, job, keep_transaction=True)
    if not work:
        return current
    raise UnsupportedConnectionError(
        f"granite-assets has revisions to apply to {db.where}, but your connection is in AUTOCOMMIT "
        "inside a begin() block: each revision needs a real transaction, which SQLAlchemy cannot begin "
        "on that connection until the block ends. Nothing was changed. Call it outside the begin() "
        "block (on a connection from engine.connect()), or pass the Engine."
    )


def in_callers_transaction(connection: Connection) -> bool:
    """Tell whether the caller's connection has a transaction open for the call to work in."""
    return connection.in_transaction() and not in_autocommit(connection)


def migrate_outside_transactions(db: Database, connection: Connection, job: Job) -> str | None:
    """Read the revision outside any transaction; when there is work, migrate under the session lock."""
    use_autocommit(connection, on=True)
    current, work = read_and_plan(db, connection, job, keep_transaction=False)
    return migrate_locked(db, connection, job) if work else current


def upgrade_database(
    directory: Path,
    db: Database,
    history: History,
    lock_timeout: float,
    limits: DDLLimits = DEFAULT_LIMITS,
    *,
    on_progress: ProgressCallback | None = None,
) -> str | None:
    """Upgrade a database reached through an engine (the async entry point's way in)."""
    job = Job(directory, history, "head", check_lock_timeout(lock_timeout), limits, on_progress=on_progress)
    return migrate_target(db, job)


def no_file(db: Database) -> bool:
    """Tell, and log, that a URL names a database file that does not exist: reading it would create it.

    Reads and downgrades call this; an upgrade creates the file on purpose.
    """
    missing = db.backend.missing_file(db)
    if missing is not None:
        logger.warning(
            "There is no %s database at %s; nothing was created. Check the path in the URL.",
            db.backend.title,
            missing,
        )
    return missing is not None


@contextmanager
def reading(db: Database) -> Iterator[tuple[Connection, bool]]:
    """A connection to read on: the caller's (whose transaction must survive), or one of our own."""
    if db.connection is not None:
        with borrowing(db.connection):  # a read of ours leaves no transaction open
            yield db.connection, True
        return
    with connect(db) as connection:
        use_autocommit(connection, on=True)
        yield connection, False


# -- The caller's connection -----------------------------------------------------------------


def migrate_on_callers_connection(db: Database, connection: Connection, job: Job) -> str | None:
    """Migrate inside the caller's transaction, beginning one if none is open; commit nothing.

    A revision that times out waiting for a table lock is not retried: the caller's transaction
    is spoilt (PostgreSQL) and only the caller can begin another.
    """
    limits = job.limits
    with (
        set_up_refusals(db, connection, job),
        db.backend.callers_migration(connection, db, job.lock_timeout),
        db.backend.ddl_limits(connection, limits.lock_timeout, limits.statement_timeout, in_transaction=True),
    ):
        return migrate(db, connection, job, Tracker(job.on_progress), own=False)


@contextmanager
def set_up_refusals(db: Database, connection: Connection, job: Job) -> Iterator[None]:
    """Explain a refusal of what a migration runs before any revision: the lock, the lock timeouts.

    Every login may call them on a server's defaults, but a hardened server may revoke them
    (``EXECUTE`` on PostgreSQL's advisory-lock functions, say); the refusal is then the login's.
    """
    try:
        yield
    except DBAPIError as exc:
        if not refused_privilege(db, exc):
            raise
        verb = "upgrade" if job.destination == "head" else "downgrade"
        left = (
            "Nothing was changed."
            if db.connection is None
            else "Nothing was changed: roll back your transaction."
        )
        raise revision_failed(
            db, None, exc, left, connection=connection, verb=verb, what=f"granite-assets' {verb}"
        ) from exc


def reread_in_callers_transaction(connection: Connection, db: Database) -> str | None:
    """The revision, re-read under the lock in the caller's transaction, as other sessions committed it.

    At READ COMMITTED the re-read sees every commit. A REPEATABLE READ or SERIALIZABLE
    transaction sees the database as it was when it began: if another process migrated since,
    the transaction cannot build on that, and the caller must begin a new one.
    """
    seen = stored_revision(connection, db, keep_transaction=True)
    if not db.backend.sees_a_snapshot(connection):
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


def migrate_locked(db: Database, connection: Connection, job: Job) -> str | None:
    """Take the migration lock on our own ``connection``, re-read the revision, run what is left.

    The lock is session-level and taken on the connection that migrates: it outlives the
    per-revision commits, is released when done, and dies with the session if the process does.
    """
    if connection.in_transaction():
        connection.rollback()
    use_autocommit(connection, on=True)
    limits = job.limits
    with (
        set_up_refusals(db, connection, job),
        db.backend.own_migration(connection, db, job.lock_timeout),
        db.backend.ddl_limits(
            connection, limits.lock_timeout, limits.statement_timeout, in_transaction=False
        ),
    ):
        return migrate_with_retries(db, connection, job)


def migrate_with_retries(db: Database, connection: Connection, job: Job) -> str | None:
    """Migrate on our own connection, trying a revision that timed out on a table lock again.

    Between tries nothing of ours waits on the table, so the host's queries run; the pause grows,
    with jitter, so that replicas retrying at once spread out. A revision part of which is in the
    database already (MariaDB's DDL commits statement by statement) is not tried again.
    """
    attempt = 1
    tracker = Tracker(job.on_progress)
    while True:
        try:
            return migrate(db, connection, job, tracker, own=True, attempt=attempt)
        except DDLLockTimeoutError as error:
            if error.applied or attempt > job.limits.retries:
                raise
            wait = retry_pause(attempt)
            logger.warning(
                "granite-assets revision %s waited more than %s for a table lock on %s (try %d of %d), "
                "so it was rolled back and nothing of it kept; %s. Trying again in %.1f seconds.",
                error.revision,
                lock_wait_bound(db, job, error.revision),
                db.where,
                attempt,
                job.limits.retries + 1,
                held_by(error.blockers),
                wait,
            )
            pause(wait)
            attempt += 1


def lock_wait_bound(db: Database, job: Job, revision: str | None) -> str:
    """How long, in words, ``revision`` was allowed to wait for a table lock: its limit, or the call's."""
    known = job.history.get(revision) if revision is not None and job.history.knows(revision) else None
    return seconds(db.backend.lock_wait_bound(limits_for(job.limits, known).lock_timeout))


def retry_pause(attempt: int) -> float:
    """Seconds to pause after try number ``attempt``: half a second, doubling up to 10, plus jitter."""
    base = min(0.5 * 2.0 ** (attempt - 1), 10.0)
    jitter = 1 + 0.5 * random.random()  # noqa: S311 - jitter, not a secret
    return float(base * jitter)


def held_by(blockers: tuple[str, ...]) -> str:
    """Who held the locks, in words."""
    if not blockers:
        return "the sessions that held the lock had ended by the time granite-assets looked"
    return "other sessions hold locks on granite-assets' tables: " + "; ".join(blockers)


# -- Running Alembic -------------------------------------------------------------------------


def migrate(
    db: Database, connection: Connection, job: Job, tracker: Tracker, *, own: bool, attempt: int = 1
) -> str | None:
    """Run Alembic to the job's destination unless the database, re-read under the lock, is there.

    ``own`` says the connection is ours, whose work is committed revision by revision (SQLite:
    in one transaction committed by the caller of this function); otherwise it is the caller's,
    and nothing is committed.

    An exception of the caller's ``on_progress`` callback is raised as it is, with the revision
    that was running rolled back: the tracker calls it only between revisions.
    """
    per_revision = own and not db.backend.migrates_in_one_transaction
    if own:
        current = stored_revision(connection, db, keep_transaction=not per_revision)
    else:
        current = reread_in_callers_transaction(connection, db)
    the_plan = plan(job.history, current, job.destination, db, connection, upward=job.upward)
    if not the_plan.steps:
        return the_plan.destination
    if per_revision:
        transactional(connection)
    config = alembic_config(
        job.directory,
        connection,
        granite_assets_history=job.history,
        granite_assets_limits=job.limits,
        granite_assets_progress=tracker,
    )
    statements: list[tuple[int, str]] = []
    try:
        with (
            alembic_run(job.lock_timeout, db.where),
            _statements_of_each_step(db, connection, config, statements),
        ):
            _alembic_command("upgrade" if the_plan.upgrade else "downgrade")(config, job.destination)
    except MigrationLockTimeoutError:
        raise
    except ProgressCallbackError as exc:
        if per_revision:
            roll_back_to_autocommit(connection)
        raise exc.error from None
    except Exception as exc:
        cannot_wait = None if own else db.backend.cannot_wait(exc, db)
        if cannot_wait is not None:
            raise cannot_wait from exc
        done = len(config.attributes.get("granite_assets_steps", []))
        timed_out = isinstance(exc, DBAPIError) and bool(db.backend.lock_wait_timed_out.matches(exc.orig))
        applied = [
            s
            for step, s in statements
            if step == done and not names_bookkeeping(s) and not changes_nothing(s)
        ]
        failed, left = aftermath(
            db,
            connection,
            the_plan,
            exc,
            before=current,
            done=done,
            per_revision=per_revision,
            nothing_applied=timed_out and not applied,
        )
        if timed_out:
            raise lock_wait_timed_out(
                db, connection, job, failed, left, applied=applied, attempts=attempt
            ) from exc
        verb = "upgrade" if the_plan.upgrade else "downgrade"
        raise revision_failed(db, failed, exc, left, connection=connection, verb=verb) from exc
    if per_revision:
        if connection.in_transaction():
            connection.commit()
        use_autocommit(connection, on=True)
    return the_plan.destination


def roll_back_to_autocommit(connection: Connection) -> None:
    """End what a run stopped between revisions left open, and put our connection back in AUTOCOMMIT."""
    if connection.in_transaction():
        connection.rollback()
    use_autocommit(connection, on=True)


@contextmanager
def _statements_of_each_step(
    db: Database, connection: Connection, config: Any, statements: list[tuple[int, str]]
) -> Iterator[None]:
    """Record, where DDL commits statement by statement, each statement run and the step it ran in."""
    if not db.backend.ddl_commits_itself:
        yield
        return

    def record(*args: Any) -> None:
        statements.append((len(config.attributes.get("granite_assets_steps", [])), str(args[2])))

    event.listen(connection, "after_cursor_execute", record)
    try:
        yield
    finally:
        event.remove(connection, "after_cursor_execute", record)


def lock_wait_timed_out(
    db: Database,
    connection: Connection,
    job: Job,
    failed: Revision | None,
    left: str,
    *,
    applied: list[str],
    attempts: int,
) -> DDLLockTimeoutError:
    """The error for a revision that waited too long for a table lock, naming who held it."""
    blockers = _blockers(db, connection)
    what = f"granite-assets revision {failed.revision} ({failed.message})" if failed else "granite-assets"
    tries = "once" if attempts == 1 else f"on each of {attempts} tries"
    ran = ""
    if applied:
        listed = "; ".join(f"{n}. {first_line(s, 200)}" for n, s in enumerate(applied, 1))
        ran = f" These statements of it ran before and are in the database: {listed}."
    raise_it = advice("ddl_lock_timeout or ddl_retries", "--ddl-lock-timeout or --ddl-retries")
    return DDLLockTimeoutError(
        f"{what} waited more than {lock_wait_bound(db, job, failed.revision if failed else None)} for a "
        f"table lock on {db.where}, "
        f"{tries}; {held_by(blockers)}. Each wait was bounded, so your application's queries never "
        f"queued behind it for longer. {left}{ran} To go on: {db.backend.end_session_hint(blockers)}, "
        f"then run it again; or raise {raise_it}.",
        revision=failed.revision if failed else None,
        blockers=blockers,
        attempts=attempts,
        applied=applied,
    )


def _blockers(db: Database, connection: Connection) -> tuple[str, ...]:
    """The sessions holding locks on granite-assets' tables, asked on a connection that can still ask."""
    try:
        if db.connection is None:  # ours, rolled back and in AUTOCOMMIT by aftermath()
            return db.backend.blockers(connection)
        with connect(replace(db, connection=None)) as fresh:  # the caller's transaction may be aborted
            return db.backend.blockers(fresh)
    except Exception:  # noqa: BLE001 - naming the blockers is a courtesy; the timeout is the error
        logger.debug("Could not list the sessions holding locks on %s.", db.where, exc_info=True)
        return ()


def aftermath(
    db: Database,
    connection: Connection,
    the_plan: Plan,
    exc: Exception,
    *,
    before: str | None,
    done: int,
    per_revision: bool,
    nothing_applied: bool = False,
) -> tuple[Revision | None, str]:
    """The revision that failed, and what the failed run left behind, in words.

    ``nothing_applied`` says the failed revision ran no statement (its first one timed out), so
    that not even a backend whose DDL commits itself holds part of it.

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
            return _step(the_plan, index, exc), left
        arrived_at = [before, *(s.revision if the_plan.upgrade else s.down_revision for s in the_plan.steps)]
        index = arrived_at.index(reached) if reached in arrived_at else done
    else:
        reached = before
    failed = _step(the_plan, index, exc)
    left = db.backend.aftermath(
        db, verb, before=before, reached=reached, failed=None if nothing_applied else failed
    )
    return failed, left


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


def offline_sql(
    directory: Path, url_or_dialect: str | URL, start: str | None, end: str, *, downgrade: bool
) -> str:
    """The SQL script from ``start`` (``None``: an empty database) to ``end``, in the URL's dialect."""
    import io

    url = parse_url(
        url_or_dialect
        if isinstance(url_or_dialect, URL) or "://" in url_or_dialect
        else f"{url_or_dialect}://"
    )
    is_async(url)  # refuses an unknown dialect
    history = load_history(directory)
    for revision in (start, end):
        if revision not in {None, "base", "head"} and not history.knows(revision):
            raise unknown_revision(history, str(revision))
    if downgrade and not _reverts_something(history, str(start), end):
        return ""
    if not downgrade and not _applies_something(history, start, end):
        return ""
    dialect_only = URL.create(url.drivername)  # no credentials can reach the script
    buffer = io.StringIO()
    config = alembic_config(directory, granite_assets_offline_url=dialect_only.render_as_string())
    config.output_buffer = buffer
    span = f"{start}:{end}" if start else end
    _alembic_command("downgrade" if downgrade else "upgrade")(config, span, sql=True)
    return buffer.getvalue()


def _reverts_something(history: History, start: str, end: str) -> bool:
    """Tell whether a downgrade from ``start`` to ``end`` reverts anything; refuse one that would go up."""
    at = {"base": None, "head": history.head}
    have, keep = (history.count_through(at.get(r, r)) for r in (start, end))
    if keep > have:
        raise behind_error(
            f"Revision {end} is above {start}: from {start} there is nothing to downgrade. "
            "For the SQL that goes up, use upgrade_sql() (`granite-assets db upgrade --sql`).",
            current=at.get(start, start),
            pending=history.revisions[have:keep],
        )
    return keep < have


def _applies_something(history: History, start: str | None, end: str) -> bool:
    """Tell whether an upgrade from ``start`` to ``end`` applies anything; refuse one that would go down."""
    at = {"base": None, "head": history.head}
    have, want = (history.count_through(at.get(r, r) if r else None) for r in (start, end))
    if want < have:
        raise behind_error(
            f"Revision {end} is below {start}: from {start} there is nothing to upgrade. "
            "For the SQL that goes down, use downgrade_sql() (`granite-assets db downgrade --sql`).",
            current=start,
            pending=(),
        )
    return want > have
