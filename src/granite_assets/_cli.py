"""The ``granite-assets`` command line, for operators: ``granite-assets db upgrade`` and friends.

Exit codes: 0 success, 1 migration error, 2 usage error, 3 database behind (``check``),
4 database ahead (``check``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from granite_assets import migrations
from granite_assets._errors import DatabaseAheadError, DatabaseBehindError, MigrationError

EXIT_OK = 0
EXIT_MIGRATION_ERROR = 1
EXIT_USAGE = 2
EXIT_BEHIND = 3
EXIT_AHEAD = 4
URL_VARIABLE = "GRANITE_ASSETS_DATABASE_URL"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``granite-assets``."""
    parser = argparse.ArgumentParser(
        prog="granite-assets",
        description="Manage the database tables of granite-assets.",
        epilog=f"The database URL comes from --url or ${URL_VARIABLE}.",
    )
    groups = parser.add_subparsers(dest="group", required=True, metavar="{db}")
    db = groups.add_parser("db", help="database migrations", description="Database migrations.")
    commands = db.add_subparsers(dest="command", required=True)

    def command(name: str, help_: str, *, url: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_)
        if url:
            sub.add_argument("--url", help=f"database URL (default: ${URL_VARIABLE})")
        return sub

    upgrade = command("upgrade", "Apply every pending revision.")
    upgrade.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    upgrade.add_argument("--from", dest="from_revision", help="with --sql: the revision to start from")
    upgrade.add_argument(
        "--lock-timeout", type=float, default=migrations.DEFAULT_LOCK_TIMEOUT, help="seconds"
    )
    downgrade = command("downgrade", "Revert revisions down to REVISION (or base).")
    downgrade.add_argument("revision", help="a revision id, or base")
    downgrade.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    downgrade.add_argument("--from", dest="from_revision", help="with --sql: the revision to start from")
    downgrade.add_argument(
        "--lock-timeout", type=float, default=migrations.DEFAULT_LOCK_TIMEOUT, help="seconds"
    )
    command("current", "Print the revision the database is at.")
    command("check", "Exit 0 if the database is at head, 3 if behind, 4 if ahead.")
    command("heads", "Print the newest revision this release ships.", url=False)
    command("history", "List the revisions this release ships, oldest first.", url=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    url = getattr(args, "url", None) or os.environ.get(URL_VARIABLE)
    offline = getattr(args, "sql", False)
    if hasattr(args, "url") and not url:
        parser.error(f"no database URL: pass --url or set ${URL_VARIABLE}")
    if getattr(args, "from_revision", None) and not offline:
        parser.error("--from goes with --sql: online, the database says where it is")
    if args.command == "downgrade" and offline and not args.from_revision:
        parser.error("downgrade --sql needs --from REVISION: offline SQL cannot read the database")
    _show_progress()
    try:
        return _run(args, url or "")
    except DatabaseBehindError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BEHIND
    except DatabaseAheadError as exc:
        if args.command == "check":  # a verdict, not a failure of the command
            print(exc, file=sys.stderr)
            return EXIT_AHEAD
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MIGRATION_ERROR
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MIGRATION_ERROR


def _run(args: argparse.Namespace, url: str) -> int:
    if args.command == "heads":
        print(migrations.head_revision() or "(no revisions)")
    elif args.command == "history":
        head = migrations.head_revision()
        for rev in migrations.revisions():
            print(f"{rev.revision}  {rev.message}{'  (head)' if rev.revision == head else ''}")
    elif args.command == "current":
        print(migrations.current_revision(url) or "(none)")
    elif args.command == "check":
        print(f"up to date at {migrations.check_up_to_date(url)}")
    elif args.command == "upgrade" and args.sql:
        print(migrations.upgrade_sql(url, args.from_revision), end="")
    elif args.command == "upgrade":
        print(f"at {migrations.upgrade_to_head(url, lock_timeout=args.lock_timeout)}")
    elif args.sql:
        print(migrations.downgrade_sql(url, args.from_revision, args.revision), end="")
    else:
        print(f"at {migrations.downgrade(url, args.revision, lock_timeout=args.lock_timeout) or 'base'}")
    return EXIT_OK


def _show_progress() -> None:
    """Print each applied revision: this is a program, so it may configure its own output."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    package_logger = logging.getLogger("granite_assets")
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
