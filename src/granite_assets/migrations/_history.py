"""The revision history of an Alembic environment, read cheaply from its manifest.

Alembic learns the history by importing every revision file, which costs more with every
revision ever shipped. The manifest, ``revisions.json`` beside ``env.py``, lists the revisions
in order so the common case (a database already at head) needs no Alembic at all.

The manifest is trusted only while it names exactly the ``*.py`` files in ``versions/`` and its
entries form one line (each entry's ``down_revision`` is the entry before it); otherwise the
history is read from the revision files instead and a warning says to regenerate the manifest
(``make migrate-manifest``). A manifest that is not the document the script writes is an error.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Final

from granite_assets.migrations._errors import MigrationError
from granite_assets.migrations._names import logger

MANIFEST_NAME = "revisions.json"
#: The limits a revision file may declare at module level, in seconds: what the revision needs at least.
DECLARED_LIMITS: Final = ("ddl_lock_timeout", "statement_timeout")
#: How the manifest writes ``math.inf``, which JSON has no portable spelling for.
NO_LIMIT: Final = "inf"


@dataclass(frozen=True)
class Revision:
    """One revision of the history.

    Attributes:
        revision: The revision id, such as ``"0001"``.
        down_revision: The id of the revision it builds on; ``None`` for the first.
        message: The revision's message: the first paragraph of its file's docstring.
        file: The name of its file in ``versions/``.
        backward_compatible: Whether every older release that worked with the database before
            this revision keeps working after it, so that it may run against a database this
            revision migrated: true only of additions (the revision file's module-level
            ``backward_compatible``; absent means ``False``). See :ref:`expand-contract`.
        ddl_lock_timeout: The seconds each of its statements needs to be allowed to wait for a table
            lock at least, when it declares that (``math.inf``: without limit); ``None`` otherwise.
        statement_timeout: The seconds each of its statements needs to be allowed to run at least,
            when it declares that (``math.inf``: without limit); ``None`` otherwise.
    """

    revision: str
    down_revision: str | None
    message: str
    file: str
    backward_compatible: bool = False
    ddl_lock_timeout: float | None = None
    statement_timeout: float | None = None


@dataclass(frozen=True)
class History:
    """The revisions of an environment, oldest first, forming one line."""

    revisions: tuple[Revision, ...]

    @property
    def head(self) -> str | None:
        """The newest revision, or ``None`` when there is none."""
        return self.revisions[-1].revision if self.revisions else None

    @cached_property
    def _position(self) -> dict[str, int]:
        return {r.revision: i for i, r in enumerate(self.revisions)}

    def knows(self, revision: str) -> bool:
        """Tell whether ``revision`` is part of this history."""
        return revision in self._position

    def get(self, revision: str) -> Revision:
        """The revision with the id ``revision``, which must be part of this history."""
        return self.revisions[self._position[revision]]

    def after(self, revision: str | None) -> tuple[Revision, ...]:
        """The revisions newer than ``revision`` (all of them for ``None``), oldest first."""
        if revision is None:
            return self.revisions
        return self.revisions[self._position[revision] + 1 :]

    def count_through(self, revision: str | None) -> int:
        """How many revisions, from the first, lead up to and include ``revision`` (0 for ``None``)."""
        return 0 if revision is None else self._position[revision] + 1

    def up_to(self, revision: str | None) -> tuple[Revision, ...]:
        """The revisions up to and including ``revision`` (none for ``None``), oldest first."""
        return self.revisions[: self.count_through(revision)]

    def reaches(self, current: str, revision: str) -> bool:
        """Tell whether ``current`` is ``revision`` or comes after it; both must be part of this history."""
        return self._position[current] >= self._position[revision]


@cache
def bundled_directory() -> Path:
    """The folder of the Alembic environment shipped inside the package."""
    from importlib.resources import files  # imported here: it is slow, and needed once

    location = files("granite_assets").joinpath("alembic")
    if not isinstance(location, Path):
        raise MigrationError(
            "granite-assets must be installed as files on disk (not inside a zip archive) "
            "for its migrations to run."
        )
    return location


def revision_files(directory: Path) -> list[str]:
    """The names of the revision files in ``directory/versions``, sorted."""
    versions = directory / "versions"
    # os.listdir, not Path.iterdir: this runs on every upgrade and must stay cheap.
    return sorted(name for name in os.listdir(versions) if name.endswith(".py"))  # noqa: PTH208


def read_manifest(directory: Path) -> History | None:
    """Read the manifest of ``directory``; ``None`` when it is missing or stale."""
    path = directory / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    history = parse_manifest(text, path)
    if sorted(r.file for r in history.revisions) != revision_files(directory):
        return None
    parents = [None, *(r.revision for r in history.revisions[:-1])]
    if [r.down_revision for r in history.revisions] != parents:
        return None
    return history


_ENTRY_TYPES: dict[str, tuple[type, ...]] = {
    "revision": (str,),
    "down_revision": (str, type(None)),
    "message": (str,),
    "file": (str,),
    "backward_compatible": (bool,),
}


def parse_manifest(text: str, path: Path) -> History:
    """The history a manifest's text describes; a :class:`MigrationError` if it is malformed.

    The declared limits are optional keys, written only for a revision that declares them: a
    manifest older than them is read as declaring none.
    """
    try:
        entries = json.loads(text)["revisions"]
        if not isinstance(entries, list):
            raise TypeError("revisions is not a list")  # noqa: TRY301 - reported below like the rest
        revisions = []
        for entry in entries:
            if (
                not isinstance(entry, dict)
                or not set(_ENTRY_TYPES) <= set(entry) <= {*_ENTRY_TYPES, *DECLARED_LIMITS}
                or not all(isinstance(entry[key], types) for key, types in _ENTRY_TYPES.items())
            ):
                raise TypeError(f"unexpected entry {entry!r}")  # noqa: TRY301
            limits = {key: _manifest_limit(entry[key], entry) for key in DECLARED_LIMITS if key in entry}
            revisions.append(Revision(**{**entry, **limits}))
    except (ValueError, TypeError, KeyError) as exc:
        raise MigrationError(
            f"The revision manifest {path} is malformed ({type(exc).__name__}: {exc}). "
            "Maintainers: regenerate it with `make migrate-manifest`."
        ) from None
    return History(tuple(revisions))


def _manifest_limit(value: object, entry: dict[str, object]) -> float:
    """A declared limit as the manifest writes it: a number above 0, or ``"inf"``."""
    if value == NO_LIMIT:
        return math.inf
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise TypeError(f"unexpected entry {entry!r}")
    return float(value)


def declared_limit(revision: str, name: str, value: object) -> float | None:
    """A limit a revision file declares, in seconds (``None``: it declares none); else a MigrationError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value <= 0:
        raise MigrationError(
            f"Revision {revision} sets {name} = {value!r}; it must be a number, more than 0 seconds "
            "(math.inf for no limit)."
        )
    return float(value)


def history_from_scripts(directory: Path) -> History:
    """Read the history by loading every revision file with Alembic (slow, always right)."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    script = ScriptDirectory(str(directory))
    try:
        head = script.get_current_head()
    except CommandError as exc:
        raise MigrationError(f"The revision history in {directory} is not one line: {exc}") from exc
    chain = []
    for sc in script.walk_revisions("base", head) if head else ():
        down = sc.down_revision
        if not (down is None or isinstance(down, str)):
            raise MigrationError(f"Revision {sc.revision} merges several parents: not supported.")
        compatible = getattr(sc.module, "backward_compatible", False)
        if not isinstance(compatible, bool):
            raise MigrationError(
                f"Revision {sc.revision} sets backward_compatible = {compatible!r}; it must be True or False."
            )
        chain.append(
            Revision(
                revision=sc.revision,
                down_revision=down,
                message=(sc.doc or "").strip(),
                file=Path(sc.path).name,
                backward_compatible=compatible,
                ddl_lock_timeout=declared_limit(
                    sc.revision, "ddl_lock_timeout", getattr(sc.module, "ddl_lock_timeout", None)
                ),
                statement_timeout=declared_limit(
                    sc.revision, "statement_timeout", getattr(sc.module, "statement_timeout", None)
                ),
            )
        )
    return History(tuple(reversed(chain)))


_cache: dict[Path, tuple[tuple[int, int], History]] = {}


def load_history(directory: Path) -> History:
    """The history of ``directory``: from the manifest when it is current, else from the scripts.

    The result is cached until the ``versions`` folder or the manifest changes on disk.
    """
    stamp = (_mtime(directory / "versions"), _mtime(directory / MANIFEST_NAME))
    cached = _cache.get(directory)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    history = read_manifest(directory)
    if history is None:
        logger.warning(
            "The revision manifest %s does not match %s; reading every revision file instead. "
            "Maintainers: run `make migrate-manifest`.",
            directory / MANIFEST_NAME,
            directory / "versions",
        )
        history = history_from_scripts(directory)
    _cache[directory] = (stamp, history)
    return history


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns  # noqa: PTH116 (cheaper than Path.stat on the hot path)
    except FileNotFoundError:
        return -1


def forget(directory: Path) -> None:
    """Drop the cached history of ``directory``, whose revision files or manifest were rewritten."""
    _cache.pop(directory, None)
