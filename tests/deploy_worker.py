"""A process that runs the docs' deploy script on command, standing in for one replica of a host.

Usage: ``python deploy_worker.py HOST_FOLDER LOCK_TIMEOUT``. The worker loads
``docs/examples/migrate.py`` (the script the host-integration page shows), prints ``ready``, then
for every line it reads on stdin, a database URL, calls the script's
``migrate(url, HOST_FOLDER / "alembic.ini")`` and prints one JSON line: ``{"revision": "host"}``
or ``{"error": "ExceptionName", "message": ...}``. Writing the line to every worker's stdin is the
start barrier (see ``support.Workers``).

A line of the form ``URL without-lock`` runs the script with its ``migration_lock`` replaced by a
block that holds nothing, to show what the lock prevents. ``LOCK_TIMEOUT`` is the lock's timeout.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "examples" / "migrate.py"


WITHOUT_LOCK = "without-lock"


def load_script(lock_timeout: float) -> tuple[ModuleType, list[bool]]:
    """The deploy script as a module, its lock given ``lock_timeout``; and the switch that removes it."""
    spec = importlib.util.spec_from_file_location("host_migrate", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = vars(module)
    real_lock = names["migration_lock"]
    without_lock = [False]

    @contextlib.contextmanager
    def lock(url: str, *, name: str, **_options: Any) -> Iterator[None]:
        if without_lock[0]:
            yield
            return
        with real_lock(url, name=name, timeout=lock_timeout):
            yield

    names["migration_lock"] = lock
    return module, without_lock


def main(argv: list[str]) -> int:
    """Serve deploy requests read from stdin until it closes."""
    folder, lock_timeout = Path(argv[0]), float(argv[1])
    script, without_lock = load_script(lock_timeout)
    print("ready", flush=True)
    for line in sys.stdin:
        url, _, mode = line.strip().partition(" ")
        without_lock[0] = mode == WITHOUT_LOCK
        result: dict[str, str | None]
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the script prints; stdout is ours
                script.migrate(url, folder / "alembic.ini")
            result = {"revision": "host"}
        except Exception as exc:  # noqa: BLE001 - the test judges every failure
            result = {"error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
