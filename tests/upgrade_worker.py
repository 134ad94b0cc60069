"""A process that upgrades databases on command, standing in for one replica of a host application.

Usage: ``python upgrade_worker.py DIRECTORY LOCK_TIMEOUT [--announce]``. The worker imports
granite-assets, prints ``ready``, then for every database URL it reads on stdin it calls
``granite_assets.migrations._runner.upgrade(DIRECTORY, url, LOCK_TIMEOUT)`` and prints one JSON line:
``{"revision": ...}`` or ``{"error": "ExceptionName", "message": ...}``. Writing the URL to every
worker's stdin is the start barrier: the workers are idle and imported, and all start at once.

With ``--announce`` the worker prints ``locking`` when it has found work pending on the no-op
path and goes to take the migration lock, so a test knows it is past its first read. With
``--autocommit-connection`` it passes a connection of its own in AUTOCOMMIT instead of the URL,
as a host with such a connection does. ``--ddl-lock-timeout=SECONDS`` and ``--ddl-retries=N``
set the call's bounds on table-lock waits (the defaults otherwise).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from granite_assets.migrations import _runner
from granite_assets.migrations._timeouts import DEFAULT_LIMITS, DDLLimits


def announce_before_locking() -> None:
    """Print ``locking`` each time the upgrade goes to take the migration lock."""
    original = _runner.migrate_locked

    def migrate_locked(*args: Any, **kwargs: Any) -> str | None:
        print("locking", flush=True)
        return original(*args, **kwargs)

    _runner.migrate_locked = migrate_locked


def upgrade(
    directory: Path, url: str, lock_timeout: float, limits: DDLLimits, *, autocommit_connection: bool
) -> str | None:
    """Upgrade ``url``, or a connection in AUTOCOMMIT to it."""
    if not autocommit_connection:
        return _runner.upgrade(directory, url, lock_timeout, limits)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            return _runner.upgrade(directory, connection, lock_timeout, limits)
    finally:
        engine.dispose()


def ddl_limits(flags: list[str]) -> DDLLimits:
    """The call's bounds on table-lock waits that ``flags`` name, the defaults for the rest."""
    options = dict(flag.partition("=")[::2] for flag in flags if "=" in flag)
    return DDLLimits.checked(
        float(options.get("--ddl-lock-timeout", DEFAULT_LIMITS.lock_timeout)),
        int(options.get("--ddl-retries", DEFAULT_LIMITS.retries)),
        DEFAULT_LIMITS.statement_timeout,
    )


def main(argv: list[str]) -> int:
    """Serve upgrade requests read from stdin until it closes."""
    directory, lock_timeout = Path(argv[0]), float(argv[1])
    if "--announce" in argv[2:]:
        announce_before_locking()
    limits = ddl_limits(argv[2:])
    autocommit_connection = "--autocommit-connection" in argv
    print("ready", flush=True)
    for line in sys.stdin:
        url = line.strip()
        result: dict[str, str | None]
        try:
            revision = upgrade(
                directory, url, lock_timeout, limits, autocommit_connection=autocommit_connection
            )
            result = {"revision": revision}
        except Exception as exc:  # noqa: BLE001 - the test judges every failure
            result = {"error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
