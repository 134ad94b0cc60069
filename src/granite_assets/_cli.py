"""The ``granite-assets`` command line, for operators: ``granite-assets db upgrade`` and friends.

Results (a revision, the SQL script) go to standard output, and everything else (progress,
warnings, errors, help asked for by mistake) to standard error, so that output redirected to a
file holds only the result: ``granite-assets db upgrade --sql > upgrade.sql`` is pure SQL.

Exit codes: 0 success, 1 migration error (a login that may not change the schema included), 2 usage
error (no command included), 3 database behind (``check``; ``downgrade`` to a revision above the
database's; ``upgrade`` to one below it), 4 database ahead of this release by a revision that is
not backward compatible (``check``).

``--format json`` documents are versioned by their ``"format"`` key (:data:`JSON_FORMAT`); a change
that could break a reader raises it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from granite_assets import migrations
from granite_assets._cli_progress import PrinterHandler, ProgressPrinter
from granite_assets.migrations._errors import (
    DatabaseAheadError,
    DatabaseBehindError,
    DatabaseConnectionError,
    MigrationError,
)
from granite_assets.migrations._messages import read_at_the_command_line
from granite_assets.migrations._passwords import hide_passwords
from granite_assets.migrations._timeouts import check_ddl_retries, check_lock_timeout, check_statement_timeout

if TYPE_CHECKING:
    from granite_assets.migrations._runner import Status

EXIT_OK = 0
EXIT_MIGRATION_ERROR = 1
EXIT_USAGE = 2
EXIT_BEHIND = 3
EXIT_AHEAD = 4
URL_VARIABLE = "GRANITE_ASSETS_DATABASE_URL"
SHELL_UPGRADE = "granite-assets db upgrade"
DB_COMMANDS = ("upgrade", "downgrade", "stamp", "current", "check", "grants", "heads", "history")
GRANT_DIALECTS = ("postgresql", "mysql", "mariadb")
JSON_FORMAT = 1
WAIT_POLL = 0.5  # seconds between the reads of check --wait


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``granite-assets``; each command's parser is its ``command_parser`` default."""
    parser = _Parser(
        prog="granite-assets",
        description="Manage the database tables of granite-assets.",
        epilog=f"The database URL comes from --url or ${URL_VARIABLE}. Run with no command for this help.",
    )
    parser.add_argument("--version", action=_Version, help="print the version of granite-assets and exit")
    groups = parser.add_subparsers(dest="group", metavar="{db}")
    db = groups.add_parser("db", help="database migrations", description="Database migrations.")
    db.set_defaults(command_parser=db)
    commands = db.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_: str, *, url: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_)
        sub.set_defaults(command_parser=sub)
        if url:
            sub.add_argument("--url", help=f"database URL (default: ${URL_VARIABLE})")
        return sub

    def offline_options(sub: argparse.ArgumentParser, from_help: str) -> None:
        sub.add_argument(
            "--sql", action="store_true", help="print the SQL instead of running it (default: run it)"
        )
        sub.add_argument("--from", dest="from_revision", metavar="REVISION", help=from_help)
        sub.add_argument(
            "--lock-timeout",
            type=_seconds,
            metavar="SECONDS",
            help="how long to wait for a migration running in another process "
            f"(default: {migrations.DEFAULT_LOCK_TIMEOUT:g})",
        )
        sub.add_argument(
            "--ddl-lock-timeout",
            type=_seconds,
            metavar="SECONDS",
            help="how long each statement may wait for a table lock another session holds, the longest your "
            f"application's queries queue behind it (default: {migrations.DEFAULT_DDL_LOCK_TIMEOUT:g})",
        )
        sub.add_argument(
            "--ddl-retries",
            type=_retries,
            metavar="N",
            help="how many more times a revision that timed out on a table lock is tried "
            f"(default: {migrations.DEFAULT_DDL_RETRIES})",
        )
        sub.add_argument(
            "--statement-timeout",
            type=_statement_seconds,
            metavar="SECONDS",
            help="how long each statement may run, on PostgreSQL and MariaDB (default: the session's own)",
        )

    def output_format(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--format",
            choices=("text", "json"),
            default="text",
            help="text for people, or one JSON document for tools (default: text)",
        )

    upgrade = command("upgrade", "Apply every pending revision, or those up to REVISION.")
    upgrade.add_argument(
        "revision", metavar="REVISION", nargs="?", help="stop at this revision (default: head)"
    )
    offline_options(
        upgrade,
        "with --sql: the revision the database is at (default: read from the database the URL names, "
        "or an empty database)",
    )
    downgrade = command("downgrade", "Revert revisions down to REVISION (or base).")
    downgrade.add_argument("revision", metavar="REVISION", help="a revision id, or base to revert them all")
    offline_options(downgrade, "with --sql: the revision the database is at (no default: required)")
    for sub in (upgrade, downgrade):
        sub.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            help="print nothing on standard error but errors "
            "(default: the plan, each revision as it starts and ends, and the total)",
        )
    stamp = command("stamp", "Record REVISION as the database's revision, running nothing.")
    stamp.add_argument("revision", metavar="REVISION", help="a revision id, or base to empty the record")
    stamp.add_argument(
        "--lock-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="how long to wait for a migration running in another process "
        f"(default: {migrations.DEFAULT_LOCK_TIMEOUT:g})",
    )
    output_format(command("current", "Print the revision the database is at."))
    check = command(
        "check",
        "Exit 0 if the database is at head (or ahead by backward-compatible revisions only), "
        "3 if behind, 4 if ahead.",
    )
    check.add_argument(
        "--wait",
        type=_seconds,
        metavar="SECONDS",
        help="read again every half second until the database is at head or SECONDS have passed; an "
        "unreachable database is read again too (default: read once)",
    )
    output_format(check)
    grants = command(
        "grants",
        "Print the GRANT statements that give the application's database user what it needs on "
        "granite-assets' tables, and no right to create or alter them.",
    )
    grants.add_argument(
        "--role",
        required=True,
        type=_role,
        metavar="NAME",
        help="the database user the application runs as, NAME or on MariaDB and MySQL NAME@HOST "
        "(no default: required)",
    )
    grants.add_argument(
        "--dialect",
        choices=GRANT_DIALECTS,
        help="write the statements for this database without connecting, for the tables this release "
        "creates (default: read the tables from the database of the URL)",
    )
    grants.add_argument(
        "--owner",
        type=_role,
        metavar="NAME",
        help="PostgreSQL: the migration user, whose future tables the default privileges cover "
        "(default: the owner of granite-assets' version table, else the URL's user; with --dialect, "
        "the user who runs the statements)",
    )
    grants.add_argument(
        "--read-only",
        action="store_true",
        help="grant SELECT only (default: also INSERT, UPDATE and DELETE on granite-assets' tables other "
        "than its own records)",
    )
    output_format(command("heads", "Print the newest revision this release ships.", url=False))
    history = command("history", "List the revisions this release ships, oldest first.", url=False)
    history.add_argument(
        "--url",
        help=f"mark the revisions this database has (default: none; ${URL_VARIABLE} is not read)",
    )
    output_format(history)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    if given and given[0] in DB_COMMANDS:  # the group left out: say the command that was meant
        parser.error(f"{given[0]} is a command of the db group: run `granite-assets db {given[0]}`")
    args, unknown = parser.parse_known_args(given)
    if unknown:  # said by the command that was given them, with its usage
        (getattr(args, "command_parser", None) or parser).error(
            f"unrecognized arguments: {' '.join(unknown)}"
        )
    if getattr(args, "command", None) is None:  # no command: show what there is to run
        (getattr(args, "command_parser", None) or parser).print_help(sys.stderr)
        return EXIT_USAGE
    url = _checked(args)
    printer = ProgressPrinter(sys.stderr, live=sys.stderr.isatty())
    _show_progress(printer, quiet=getattr(args, "quiet", False))
    try:
        with read_at_the_command_line():
            return _run(args, url or "", None if getattr(args, "quiet", False) else printer)
    except DatabaseBehindError as exc:  # check's verdict, or nothing to do in the direction asked
        print(
            _behind(exc, url or "") if args.command == "check" else hide_passwords(str(exc)), file=sys.stderr
        )
        return EXIT_BEHIND
    except DatabaseAheadError as exc:
        if args.command == "check":  # a verdict, not a failure of the command
            print(hide_passwords(str(exc)), file=sys.stderr)
            return EXIT_AHEAD
        print(f"error: {hide_passwords(str(exc))}", file=sys.stderr)
        return EXIT_MIGRATION_ERROR
    except MigrationError as exc:  # its URLs hide their passwords; a revision typed in may not
        print(f"error: {hide_passwords(str(exc))}", file=sys.stderr)
        return EXIT_MIGRATION_ERROR
    finally:
        printer.close()


def _checked(args: argparse.Namespace) -> str | None:
    """Refuse option combinations that would mislead (exit 2); return the database URL, if any."""
    usage = args.command_parser
    url = getattr(args, "url", None)
    if args.command != "history":  # history reads a database only when told which
        url = url or os.environ.get(URL_VARIABLE)
    offline = getattr(args, "sql", False)
    revision = getattr(args, "revision", None) or ""
    if "://" in revision:  # a URL typed without --url: say so, rather than call it an unknown revision
        usage.error(f"{revision} is a database URL, not a revision: pass it with --url")
    if getattr(args, "url", None) == "":  # an unset variable in `--url "$URL"`, most likely
        usage.error(f"--url is empty: pass a database URL, or leave --url out to use ${URL_VARIABLE}")
    if getattr(args, "dialect", None) is not None:  # grants without a database
        if getattr(args, "url", None):
            usage.error("--url and --dialect go apart: --dialect writes the statements without a database")
        return None
    if hasattr(args, "url") and not url and args.command != "history":
        if os.environ.get("DATABASE_URL"):  # the application's, most likely: never migrated by accident
            usage.error(
                f"no database URL: DATABASE_URL is set, but granite-assets deliberately does not read it "
                f"(it may name another database than the one you mean); pass --url or set ${URL_VARIABLE}"
            )
        also = ", or name the database's dialect with --dialect" if args.command == "grants" else ""
        usage.error(f"no database URL: pass --url or set ${URL_VARIABLE}{also}")
    if offline and args.lock_timeout is not None:
        usage.error("--lock-timeout goes without --sql: offline SQL takes no lock")
    if offline and (args.ddl_lock_timeout, args.ddl_retries, args.statement_timeout) != (None, None, None):
        usage.error(
            "--ddl-lock-timeout, --ddl-retries and --statement-timeout go without --sql: "
            "offline SQL runs nothing"
        )
    if getattr(args, "lock_timeout", 0) is None:
        args.lock_timeout = migrations.DEFAULT_LOCK_TIMEOUT
    if getattr(args, "from_revision", None) and not offline:
        usage.error("--from goes with --sql: online, the database says where it is")
    if args.command == "downgrade" and offline and not args.from_revision:
        usage.error("downgrade --sql needs --from REVISION: offline SQL cannot read the database")
    return url


def _run(args: argparse.Namespace, url: str, progress: ProgressPrinter | None) -> int:
    handler = _handler(args, url)
    if handler is not None:
        return handler(args, url)
    if args.command == "heads":
        print(migrations.head_revision() or "(no revisions)")
    elif args.command == "history":
        head = migrations.head_revision()
        for rev in migrations.revisions():
            print(f"{rev.revision}  {rev.message}{'  (head)' if rev.revision == head else ''}")
    elif args.command == "current":
        print(migrations.current_revision(url) or "(none)")
    elif args.command == "check":
        _run_check_once(url)
    elif args.command == "grants":
        print(_grants(args, url), end="")
    elif args.command == "upgrade":  # to head, or up to REVISION and no further
        options = {"lock_timeout": args.lock_timeout, "on_progress": progress, **_ddl_limits(args)}
        if args.revision:
            reached = migrations.upgrade_to(url, args.revision, **options)
        else:
            reached = migrations.upgrade_to_head(url, **options)
        _print_total(progress)
        print(f"at {reached or 'base'}")
    elif args.sql:
        script = migrations.downgrade_sql(url, args.from_revision, args.revision)
        print(script or f"-- Nothing to do: the database is at {args.revision} already.\n", end="")
    else:
        reached = migrations.downgrade(
            url, args.revision, lock_timeout=args.lock_timeout, on_progress=progress, **_ddl_limits(args)
        )
        _print_total(progress)
        print(f"at {reached or 'base'}")
    return EXIT_OK


def _handler(args: argparse.Namespace, url: str) -> Callable[[argparse.Namespace, str], int] | None:
    """The function that runs a command or form of one that ``_run`` does not run itself, if any."""
    if getattr(args, "format", "text") == "json":
        return _json
    if args.command == "stamp":
        return _stamp
    if args.command == "check" and args.wait is not None:
        return _check_waiting
    if args.command == "history" and url:
        return lambda _args, url: _history_of_database(url)
    if args.command == "upgrade" and args.sql:
        return _upgrade_sql
    return None


def _upgrade_sql(args: argparse.Namespace, url: str) -> int:
    """``upgrade --sql``: from ``--from``, else from where the database the URL names is, else from empty.

    Reading the database's revision takes no lock and changes nothing.
    """
    start, target = args.from_revision, args.revision or "head"
    header = ""
    if start is None and _names_a_database(url):
        start = migrations.current_revision(url)
        if start is not None and start not in {r.revision for r in migrations.revisions()}:
            raise DatabaseAheadError(
                f"The database is at revision {start}, which this release does not ship: there is no "
                "SQL this release can write for it. Use the release that ships it.",
                revision=start,
            )
    elif start is None:
        note = (
            "assuming an empty database (no granite-assets revision applied); to start elsewhere, "
            "pass --from REVISION, or a --url that names the database to read it from there"
        )
        print(f"granite-assets: {note}.", file=sys.stderr)
        header = f"-- granite-assets: {note}.\n"
    script = migrations.upgrade_sql(url, start, target)
    if not script and target in {"head", migrations.head_revision()}:
        script = f"-- Nothing to do: {start} is the head revision.\n"
    elif not script:
        script = f"-- Nothing to do: the database is at {target} already.\n"
    print(header + script, end="")
    return EXIT_OK


def _names_a_database(url: str) -> bool:
    """Tell whether ``url`` names a database to read, rather than a dialect alone (``postgresql://``)."""
    from granite_assets.migrations._urls import parse_url

    parsed = parse_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite":
        return database not in {"", ":memory:"} and not database.startswith("file::memory:")
    return bool(parsed.host or database)


def _stamp(args: argparse.Namespace, url: str) -> int:
    """``stamp REVISION``: say what changed, as ``stamped 0003; was 0002``."""
    before = migrations.stamp(url, args.revision, lock_timeout=args.lock_timeout)
    print(f"stamped {args.revision}; was {before or 'none'}")
    return EXIT_OK


def _check_waiting(args: argparse.Namespace, url: str) -> int:
    """``check --wait``: read until the database is at head, or the time is up; then check's verdict.

    A database that is behind, ahead or unreachable may change while an init container waits (the
    server starts, another process upgrades), so each is read again; other errors end the wait.
    """
    _say_waiting(args, url)
    deadline = time.monotonic() + args.wait
    with _each_warning_once():
        while True:
            try:
                return _run_check_once(url)
            except (DatabaseBehindError, DatabaseAheadError, DatabaseConnectionError):
                if time.monotonic() >= deadline:
                    _say_gave_up(args)
                    raise
            time.sleep(min(WAIT_POLL, max(deadline - time.monotonic(), 0.0)))


def _say_waiting(args: argparse.Namespace, url: str) -> None:
    from granite_assets.migrations._messages import seconds
    from granite_assets.migrations._urls import display_url, parse_url

    print(
        f"Waiting up to {seconds(args.wait)} for {display_url(parse_url(url))} to reach granite-assets "
        f"revision {migrations.head_revision()} (or newer, backward-compatible ones).",
        file=sys.stderr,
    )


def _say_gave_up(args: argparse.Namespace) -> None:
    from granite_assets.migrations._messages import seconds

    print(f"Gave up after {seconds(args.wait)}; the last read said:", file=sys.stderr)


@contextmanager
def _each_warning_once() -> Iterator[None]:
    """Log each distinct message once while the block reads the same database again and again."""
    seen: set[str] = set()

    def first_time(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in seen:
            return False
        seen.add(message)
        return True

    handlers = logging.getLogger("granite_assets").handlers  # a logger's filter misses its children's records
    for handler in handlers:
        handler.addFilter(first_time)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(first_time)


def _run_check_once(url: str) -> int:
    """Check once; print the verdict when the database is one this release works with, else raise it."""
    current, head = migrations.check_up_to_date(url), migrations.head_revision()
    if current == head:
        print(f"up to date at {current}")
    else:  # ahead, since behind raised: every newer revision is backward compatible
        print(
            f"ahead, compatible with this release: the database is at {current}, "
            f"this release's head is {head}"
        )
    return EXIT_OK


def _history_of_database(url: str) -> int:
    """``history --url``: each revision marked ``[X]`` when the database has it, as showmigrations does."""
    from granite_assets.migrations import _runner

    found = _runner.status(_environment(), url, migrations.DEFAULT_LOCK_TIMEOUT)
    applied = _applied(found)
    head = found.history.head
    for rev in found.history.revisions:
        marks = [
            m for m, on in (("head", rev.revision == head), ("current", rev.revision == found.current)) if on
        ]
        suffix = f"  ({', '.join(marks)})" if marks else ""
        print(f"[{'X' if rev.revision in applied else ' '}] {rev.revision}  {rev.message}{suffix}")
    for revision, _compatible in found.newer:
        print(f"[X] {revision}  (newer than this release{', current' if revision == found.current else ''})")
    return EXIT_OK


def _applied(found: Status) -> set[str]:
    """The revisions of this release that the database has."""
    if found.state.startswith("ahead"):
        return {r.revision for r in found.history.revisions}
    return {r.revision for r in found.history.up_to(found.current)}


def _json(args: argparse.Namespace, url: str) -> int:
    """``--format json``: one document on standard output; for ``check``, the exit code of its state."""
    if args.command == "heads":
        head = migrations.head_revision()
        document: dict[str, Any] = {"format": JSON_FORMAT, "head": head, "heads": [head] if head else []}
        return _emit(document)
    if args.command == "history":
        return _json_history(url)
    return _json_state(args, url)


def _json_history(url: str) -> int:
    """``history --format json``: every revision, marked applied or not when a URL was given."""
    from granite_assets.migrations import _runner
    from granite_assets.migrations._history import load_history

    directory = _environment()
    found = _runner.status(directory, url, migrations.DEFAULT_LOCK_TIMEOUT) if url else None
    history = found.history if found else load_history(directory)
    document: dict[str, Any] = {"format": JSON_FORMAT, "head": history.head, "revisions": []}
    if found is not None:
        document["database_revision"] = found.current
    applied = _applied(found) if found else set()
    for rev in history.revisions:
        entry: dict[str, Any] = {
            "revision": rev.revision,
            "down_revision": rev.down_revision,
            "message": rev.message,
            "backward_compatible": rev.backward_compatible,
            "head": rev.revision == history.head,
        }
        if found is not None:
            entry["applied"] = rev.revision in applied
            entry["current"] = rev.revision == found.current
        document["revisions"].append(entry)
    return _emit(document)


def _json_state(args: argparse.Namespace, url: str) -> int:
    """``current`` and ``check`` with ``--format json``: the database's state; check exits by it."""
    from granite_assets.migrations import _runner

    waiting = args.command == "check" and args.wait is not None
    if waiting:
        _say_waiting(args, url)
    deadline = time.monotonic() + (args.wait if waiting else 0)
    with _each_warning_once():
        while True:
            try:
                found = _runner.status(_environment(), url, migrations.DEFAULT_LOCK_TIMEOUT)
            except DatabaseConnectionError:
                if time.monotonic() >= deadline:
                    if waiting:
                        _say_gave_up(args)
                    raise
            else:
                if found.verdict is None or args.command != "check" or time.monotonic() >= deadline:
                    if waiting and found.verdict is not None:
                        _say_gave_up(args)
                    break
            time.sleep(min(WAIT_POLL, max(deadline - time.monotonic(), 0.0)))
    _emit(
        {
            "format": JSON_FORMAT,
            "database_revision": found.current,
            "head": found.history.head,
            "state": found.state,
            "pending": [
                {"revision": r.revision, "message": r.message, "backward_compatible": r.backward_compatible}
                for r in found.pending
            ],
            "newer": [{"revision": r, "backward_compatible": c} for r, c in found.newer],
        }
    )
    if args.command == "check" and found.verdict is not None:
        raise found.verdict
    return EXIT_OK


def _environment() -> Path:
    """The bundled Alembic environment, looked up through the package (where the tests replace it)."""
    directory: Path = migrations.bundled_directory()  # type: ignore[attr-defined]
    return directory


def _emit(document: dict[str, Any]) -> int:
    print(json.dumps(document, indent=2))
    return EXIT_OK


def _grants(args: argparse.Namespace, url: str) -> str:
    """The statements of ``db grants``; a role the backend cannot take is a usage error (exit 2)."""
    try:
        return migrations.grants_sql(
            args.dialect or url, args.role, owner=args.owner, read_only=args.read_only
        )
    except ValueError as exc:
        if isinstance(exc, MigrationError):
            raise
        usage: argparse.ArgumentParser = args.command_parser
        usage.error(str(exc))


def _print_total(progress: ProgressPrinter | None) -> None:
    """Print the run's total on standard error (unless quiet), before the result goes to standard output."""
    if progress is not None:
        progress.total()


def _ddl_limits(args: argparse.Namespace) -> dict[str, Any]:
    """The table-lock bounds the options name; those left out keep the library's defaults."""
    given = {
        "ddl_lock_timeout": args.ddl_lock_timeout,
        "ddl_retries": args.ddl_retries,
        "statement_timeout": args.statement_timeout,
    }
    return {name: value for name, value in given.items() if value is not None}


def _retries(text: str) -> int:
    """Parse ``--ddl-retries``: a whole number, zero or more."""
    try:
        return check_ddl_retries(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, zero or more, not {text!r}") from None


def _statement_seconds(text: str) -> float:
    """Parse ``--statement-timeout``: more than zero seconds, ``inf`` for no limit."""
    try:
        checked = check_statement_timeout(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected more than 0 seconds, or inf, not {text!r}") from None
    return math.inf if checked is None else checked


def _role(text: str) -> str:
    """Parse ``--role`` and ``--owner``: a name a GRANT may give privileges to."""
    from granite_assets.migrations._privileges import check_role

    try:
        return check_role(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    """Parse ``--lock-timeout``: zero or more seconds, ``inf`` for no limit."""
    try:
        return check_lock_timeout(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected zero or more seconds, or inf, not {text!r}") from None


def _behind(exc: DatabaseBehindError, url: str) -> str:
    """The verdict of ``check`` on a database that lacks revisions, worded for a shell."""
    from granite_assets.migrations._urls import display_url, parse_url

    messages = {rev.revision: rev.message for rev in migrations.revisions()}
    pending = "".join(f"  {revision} ({messages.get(revision, '?')})\n" for revision in exc.pending)
    return (
        f"The database {display_url(parse_url(url))} is at revision {exc.current or 'none'}.\n"
        f"Pending granite-assets revisions:\n{pending}"
        f"Run `{SHELL_UPGRADE}` to apply them, or upgrade_to_head() from Python."
    )


def _show_progress(printer: ProgressPrinter, *, quiet: bool) -> None:
    """Show every warning (and, unless quiet, every notice) on standard error, keeping stdout for results.

    Each revision's own INFO record is left out: ``printer`` shows those, as the revision runs.
    This is a program, so unlike the library it may configure its own output.
    """
    handler = PrinterHandler(printer)
    handler.setLevel(logging.ERROR if quiet else logging.INFO)
    handler.setFormatter(logging.Formatter("%(message)s"))
    package_logger = logging.getLogger("granite_assets")
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors never repeat a password (argparse quotes arguments)."""

    def error(self, message: str) -> NoReturn:
        """Print the usage and ``message``, passwords hidden, and exit with status 2."""
        super().error(hide_passwords(message))


class _Version(argparse.Action):
    """``--version``, reading the installed version only when asked (importlib.metadata is slow)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:  # noqa: A002
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import version

        print(f"{parser.prog} {version('granite-assets')}")
        parser.exit()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
