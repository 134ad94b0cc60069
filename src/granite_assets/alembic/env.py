"""The Alembic environment bundled with granite-assets.

Alembic loads this file; library code never imports it. It serves three callers:

- :mod:`granite_assets.migrations`, which passes a live connection in
  ``config.attributes["connection"]`` and the call's limits in ``granite_assets_limits`` (or a
  dialect URL for offline SQL);
- maintainers running the ``alembic`` command with ``alembic.ini``, on the database named with
  ``-x url=...`` or, with none named, on a scratch SQLite database brought to head, which is what
  ``revision --autogenerate`` and ``check`` need;
- ``scripts/migrate_create.py``, which sets ``config.attributes["granite_assets_skip_empty"]``.

It never configures logging when called as a library: only the ``alembic`` command line (which
sets ``cmd_opts``) gets the ini's logging setup, and that leaves existing loggers enabled.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.util import find_spec
from logging.config import fileConfig
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import context
from alembic.migration import MigrationContext, MigrationInfo
from alembic.operations import Operations
from alembic.script import write_hooks
from alembic.util import CommandError
from sqlalchemy import Connection, create_engine, make_url, pool

from granite_assets.migrations import _compatibility
from granite_assets.migrations._backends import backend_for
from granite_assets.migrations._history import History, load_history
from granite_assets.migrations._manifest import write_manifest
from granite_assets.migrations._names import COMPATIBILITY_TABLE, LOGGER_NAME, TABLE_PREFIX, VERSION_TABLE
from granite_assets.migrations._naming import names_without_prefix, refusal
from granite_assets.migrations._progress import Tracker
from granite_assets.migrations._revision_limits import revisions_bounded
from granite_assets.models import Base

if TYPE_CHECKING:
    from alembic.operations.ops import MigrationScript
    from alembic.runtime.environment import NameFilterParentNames, NameFilterType
    from alembic.runtime.migration import RevisionStep

    from granite_assets.migrations._compatibility_proposal import Proposal

config = context.config
logger = logging.getLogger(LOGGER_NAME)

if config.cmd_opts is not None and config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def include_name(name: str | None, type_: NameFilterType, parent_names: NameFilterParentNames) -> bool:
    """Let autogenerate see only granite-assets' tables, never the host's."""
    if type_ == "schema":
        return name is None
    if type_ == "table":  # the compatibility record is bookkeeping, as the version table is
        return name is not None and name.startswith(TABLE_PREFIX) and name != COMPATIBILITY_TABLE
    return True


def process_revision_directives(
    ctx: MigrationContext,
    revision: str | Iterable[str | None] | Iterable[str],
    directives: list[MigrationScript],
) -> None:
    """Number new revisions in sequence, drop empty ones when asked to, and propose the flag.

    The proposed ``backward_compatible`` value, with the reasons for it, is left in
    ``config.attributes["granite_assets_proposal"]`` for ``script.py.mako`` to write and
    ``scripts/migrate_create.py`` to print; the indexes built on existing tables, in
    ``config.attributes["granite_assets_index_builds"]``, for it to point at
    ``create_index_concurrently()``.
    """
    if not directives:  # another hook (the caller's) already dropped the revision
        return
    problems = names_without_prefix(Base.metadata)
    if problems:
        raise CommandError(refusal(problems))
    script = directives[0]
    upgrade_ops = getattr(script, "upgrade_ops", None)
    if (
        config.attributes.get("granite_assets_skip_empty")
        and upgrade_ops is not None
        and upgrade_ops.is_empty()
    ):
        directives[:] = []
        config.attributes["granite_assets_empty"] = True
        return
    explicit = getattr(config.cmd_opts, "rev_id", None)
    if not explicit:
        count = sum(1 for _ in context.script.walk_revisions())
        script.rev_id = f"{count + 1:04d}"
    config.attributes["granite_assets_proposal"] = propose_backward_compatible(script)
    config.attributes["granite_assets_index_builds"] = indexes_on_existing_tables(script)


def propose_backward_compatible(script: MigrationScript) -> Proposal:
    """Propose the new revision's ``backward_compatible`` from the operations of its ``upgrade()``."""
    from granite_assets.migrations._compatibility_proposal import propose  # only revision writing needs it

    return propose(script.upgrade_ops_list)


def indexes_on_existing_tables(script: MigrationScript) -> list[str]:
    """The plain index builds of the new revision's ``upgrade()`` on tables that exist already."""
    from granite_assets.migrations import _compatibility_proposal  # only revision writing needs it

    return _compatibility_proposal.indexes_on_existing_tables(script.upgrade_ops_list)


def history() -> History:
    """The history being run: the caller's copy, or read from this folder."""
    given: History | None = config.attributes.get("granite_assets_history")
    return given if given is not None else load_history(Path(context.script.dir))


def record_step(ctx: MigrationContext, step: MigrationInfo, heads: Iterable[str], run_args: Any) -> None:
    """Record each applied or reverted revision, in its transaction (the tracker logs it once committed)."""
    if step.is_stamp or ctx.as_sql:  # offline SQL applies nothing, and its output must stay SQL
        return
    revision = history().get(str(step.up_revision_id))
    if config.attributes.get("granite_assets_keeps_record") and ctx.connection is not None:
        _compatibility.record_step(ctx.connection, revision, applied=step.is_upgrade)
    config.attributes.setdefault("granite_assets_steps", []).append(revision.revision)


StepsFn = Callable[..., Iterable["RevisionStep"]]


def tracked(steps_of: StepsFn, tracker: Tracker) -> StepsFn:
    """Wrap Alembic's step function so that the tracker sees each revision start and finish.

    ``MigrationContext.run_migrations`` takes each step from this generator, then runs it in its
    own transaction (``transaction_per_migration``) and calls ``on_version_apply`` inside it. So a
    step is started when it is handed out, before its transaction begins, and finished when the
    next one is asked for, after its transaction committed: a callback that raises then stops the
    run between two revisions, never inside one.
    """

    def steps(heads: Any, ctx: MigrationContext) -> Iterator[RevisionStep]:
        planned = list(steps_of(heads, ctx))
        revisions = [str(step.info.up_revision_id) for step in planned if not step.info.is_stamp]
        known = history()
        upgrade = all(step.is_upgrade for step in planned)
        tracker.plan([(r, known.get(r).message) for r in revisions], upgrade=upgrade)
        for step in planned:
            if step.info.is_stamp:
                yield step
                continue
            tracker.started(str(step.info.up_revision_id))
            yield step
            tracker.finished()

    return steps


@write_hooks.register("granite_assets_revision")
def after_revision_written(path: str, options: Mapping[str, str]) -> None:
    """Format a new revision file with ruff, then regenerate ``revisions.json``."""
    if find_spec("ruff") is not None:
        # Format, fix (unused imports), and format what the fixes left.
        for args in (["format", "--quiet"], ["check", "--fix", "--quiet"], ["format", "--quiet"]):
            subprocess.run([sys.executable, "-m", "ruff", *args, path], check=False)
    else:
        logger.warning("ruff is not installed: %s was not formatted", path)
    write_manifest(Path(path).resolve().parent.parent)


def configure(connection: Connection | None = None, **options: Any) -> None:
    """Configure the migration context with the options every caller shares."""
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        # One transaction per revision: the version row tracks every applied revision, also on
        # MySQL and MariaDB where DDL commits on its own.
        transaction_per_migration=True,
        compare_type=True,
        include_name=include_name,
        render_as_batch=rebuilds_tables(connection, options.get("url")),
        process_revision_directives=process_revision_directives,
        on_version_apply=record_step,
        **options,
    )


def rebuilds_tables(connection: Connection | None, url: str | None) -> bool:
    """Whether the database alters tables by rebuilding them (SQLite), so Alembic must batch its changes."""
    dialect = (
        connection.dialect.name if connection is not None else make_url(url).get_backend_name() if url else ""
    )
    return backend_for(dialect).rebuilds_tables


def run_migrations_offline() -> None:
    """Write SQL for the dialect named by the caller instead of running it."""
    url = config.attributes.get("granite_assets_offline_url") or named_url()
    if not url:
        raise SystemExit("Offline mode needs a database URL or dialect: -x url=postgresql://")
    configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_on(connection: Connection) -> None:
    """Run the requested command on ``connection``, with the compatibility record made current first.

    A revision that declares it needs longer limits than the call's gets them while it runs.
    """
    configure(connection)
    ctx = context.get_context()
    current = ctx.get_current_revision()
    config.attributes["granite_assets_keeps_record"] = _compatibility.ensure(connection, history(), current)
    tracker: Tracker | None = config.attributes.get("granite_assets_progress")
    if tracker is None:  # the alembic command line: its revisions are logged too
        tracker = Tracker(None)
    if ctx._migrations_fn is not None:  # Alembic keeps the command's step function only there
        ctx._migrations_fn = tracked(ctx._migrations_fn, tracker)
    try:
        limits = config.attributes.get("granite_assets_limits")
        with revisions_bounded(context.script, history(), connection, limits), context.begin_transaction():
            context.run_migrations()
    except BaseException:  # Ctrl-C too: the revision that was running did not finish
        tracker.failed()
        raise


def named_url() -> str | None:
    """The database the maintainer named with ``-x url=...``, if any."""
    return context.get_x_argument(as_dictionary=True).get("url")


def bring_to_head(connection: Connection) -> None:
    """Upgrade a scratch database to head so autogenerate compares against the full history."""
    script = context.script
    migration = MigrationContext.configure(
        connection,
        opts={
            "version_table": VERSION_TABLE,
            "render_as_batch": True,
            # The same steps `alembic upgrade head` runs.
            "fn": lambda rev, _ctx: script._upgrade_revs("heads", rev),
        },
    )
    with Operations.context(migration):
        migration.run_migrations()
    connection.commit()


def run_migrations_online() -> None:
    """Run on the caller's connection, the named database, or a scratch SQLite database."""
    given = config.attributes.get("connection")
    if given is not None:
        run_on(given)
        return
    url = named_url()
    if url is None and config.cmd_opts is not None:  # say so, or `alembic current` would mislead
        logger.info("No database named (-x url=...): using a scratch SQLite database brought to head.")
    with tempfile.TemporaryDirectory(prefix="granite-assets-scratch-") as scratch:
        engine = create_engine(url or f"sqlite:///{Path(scratch) / 'scratch.db'}", poolclass=pool.NullPool)
        try:
            with engine.connect() as connection:
                if url is None:
                    bring_to_head(connection)
                run_on(connection)
                connection.commit()
        finally:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
