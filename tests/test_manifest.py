"""The revision manifest: trusted only when it describes the revision files exactly; malformed, refused."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import add_revision
from support import add_table_revisions

from granite_assets.migrations._errors import MigrationError
from granite_assets.migrations._history import MANIFEST_NAME, load_history
from granite_assets.migrations._manifest import manifest_problems, write_manifest

WRITE_MANIFEST = Path(__file__).resolve().parent.parent / "scripts" / "write_manifest.py"


def _rewrite_manifest(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = directory / MANIFEST_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.fixture
def two_revisions(environment_copy: Path) -> Path:
    """The bundled environment plus an empty revision 0002."""
    add_revision(environment_copy, "0002", "0001", message="second")
    return environment_copy


def test_manifest_whose_chain_is_broken_is_not_trusted(
    two_revisions: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Entries that do not form one line (a down_revision edited by hand) send the loader to the scripts."""

    def break_chain(data: dict[str, Any]) -> None:
        data["revisions"][1]["down_revision"] = "0000"

    _rewrite_manifest(two_revisions, break_chain)
    with caplog.at_level(logging.WARNING, logger="granite_assets"):
        history = load_history(two_revisions)
    assert [r.down_revision for r in history.revisions] == [None, "0001"]
    assert any(MANIFEST_NAME in r.getMessage() for r in caplog.records)
    assert manifest_problems(two_revisions) == ["the manifest's entry for 0002 is out of date"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "JSONDecodeError"),
        ('{"note": "x"}', "KeyError"),
        ('{"revisions": {"0001": {}}}', "revisions is not a list"),
        ('{"revisions": [{"revision": "0001"}]}', "unexpected entry"),
        (
            (
                '{"revisions": [{"revision": "0001", "down_revision": null, "message": "m",'
                ' "file": "0001_baseline.py", "backward_compatible": "yes"}]}'
            ),
            "unexpected entry",
        ),
    ],
    ids=["not-json", "no-revisions", "not-a-list", "missing-keys", "wrong-type"],
)
def test_malformed_manifest_is_a_migration_error(environment_copy: Path, text: str, says: str) -> None:
    """A manifest that is not the generated document raises MigrationError saying how to regenerate it."""
    (environment_copy / MANIFEST_NAME).write_text(text, encoding="utf-8")
    with pytest.raises(MigrationError) as caught:
        load_history(environment_copy)
    assert says in str(caught.value)
    assert "make migrate-manifest" in str(caught.value)
    assert manifest_problems(environment_copy) == [str(caught.value)]


def test_backward_compatible_flag_travels_from_file_to_manifest(environment_copy: Path) -> None:
    """A revision's module-level backward_compatible reaches the manifest and the history read from it."""
    path = add_revision(environment_copy, "0002", "0001", message="second", manifest=False)
    path.write_text(path.read_text(encoding="utf-8") + "\nbackward_compatible = True\n", encoding="utf-8")

    write_manifest(environment_copy)
    flags = {r.revision: r.backward_compatible for r in load_history(environment_copy).revisions}
    assert flags == {"0001": False, "0002": True}
    assert manifest_problems(environment_copy) == []


def test_revision_with_a_non_boolean_flag_is_refused(environment_copy: Path) -> None:
    """backward_compatible must be a bool: a string such as "yes" is a MigrationError naming the revision."""
    path = add_revision(environment_copy, "0002", "0001", message="second", manifest=False)
    path.write_text(path.read_text(encoding="utf-8") + '\nbackward_compatible = "yes"\n', encoding="utf-8")

    with pytest.raises(MigrationError, match="Revision 0002 sets backward_compatible = 'yes'"):
        write_manifest(environment_copy)


def test_check_reports_entries_in_the_wrong_order(environment_copy: Path) -> None:
    """write_manifest.py --check exits 1 for a manifest listing the right revisions in the wrong order."""
    add_table_revisions(environment_copy, "o")

    def swap(data: dict[str, Any]) -> None:
        data["revisions"][1], data["revisions"][2] = data["revisions"][2], data["revisions"][1]

    _rewrite_manifest(environment_copy, swap)
    checked = subprocess.run(
        [sys.executable, str(WRITE_MANIFEST), "--check", "--directory", str(environment_copy)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "the manifest lists the revisions in the wrong order" in checked.stderr
