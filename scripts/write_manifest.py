"""Regenerate ``revisions.json``, the manifest of the bundled revisions, or check that it is current.

The manifest lets a database already at head be checked without importing Alembic (see
``granite_assets.migrations._history``). ``make migrate-create`` regenerates it after writing a revision; run
this after renaming, editing or deleting a revision file by hand.

Usage::

    python scripts/write_manifest.py            # regenerate
    python scripts/write_manifest.py --check    # exit 1, listing the differences, when stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENT = ROOT / "src" / "granite_assets" / "alembic"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when the manifest is stale")
    parser.add_argument(
        "--directory",
        type=Path,
        default=ENVIRONMENT,
        help="the Alembic environment (default: the bundled one)",
    )
    args = parser.parse_args(argv)
    # This checkout's code, not whichever granite_assets the virtual environment points at.
    sys.path.insert(0, str(ROOT / "src"))
    from granite_assets.migrations._history import MANIFEST_NAME
    from granite_assets.migrations._manifest import manifest_problems, write_manifest

    directory: Path = args.directory.resolve()
    manifest = directory / MANIFEST_NAME
    if args.check:
        problems = manifest_problems(directory)
        if problems:
            print(f"{manifest} does not match {directory / 'versions'}:", file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            print("Regenerate it with `make migrate-manifest`.", file=sys.stderr)
            return 1
        print(f"{manifest} is current.")
        return 0
    history = write_manifest(directory)
    print(f"Wrote {manifest}: {len(history.revisions)} revision(s), head {history.head or 'none'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
