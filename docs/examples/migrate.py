"""Bring the application's database up to date: granite-assets' tables first, then ours.

Usage: DATABASE_URL=postgresql+psycopg://app@db.internal/app python scripts/migrate.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from granite_assets.migrations import MigrationError, migration_lock, upgrade_to_head

# The application's own Alembic configuration, found from this file,
# not from the current directory.
ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


def migrate(url: str, alembic_ini: Path = ALEMBIC_INI) -> None:
    """Upgrade granite-assets' tables, then the application's, at ``url``."""
    # granite-assets first: the application's revisions may refer to its tables.
    print(f"granite-assets is at revision {upgrade_to_head(url)}")
    config = Config(str(alembic_ini))
    # env.py imports myapp from the application's folder, which alembic.ini's
    # "prepend_sys_path = ." names only when run from there.
    sys.path.insert(0, str(alembic_ini.parent))
    # The ini parser reads "%" as interpolation, and a password may contain one.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    # Replicas deploying at once apply the application's revisions one process at a time;
    # granite-assets' upgrade above takes a lock of its own.
    with migration_lock(url, name="myapp"):
        command.upgrade(config, "head")


def main() -> int:
    """Run the migrations; return the exit code."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("Set DATABASE_URL to the database to migrate.", file=sys.stderr)
        return 2
    try:
        migrate(url)
    except MigrationError as exc:
        print(f"granite-assets could not migrate the database: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
