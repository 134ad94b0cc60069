"""The revision manifest: trusted only when it describes the revision files exactly; malformed, refused."""

from __future__ import annotations

import json
import logging
import math
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


def test_declared_limits_travel_from_file_to_manifest_and_back(environment_copy: Path) -> None:
    """A revision's ddl_lock_timeout and statement_timeout reach the manifest (math.inf as "inf") and back."""
    add_revision(environment_copy, "0002", "0001", message="second", declares="ddl_lock_timeout = 30")
    add_revision(
        environment_copy,
        "0003",
        "0002",
        message="third",
        declares="import math\n\nstatement_timeout = math.inf\nddl_lock_timeout = 2.5",
    )

    entries = json.loads((environment_copy / MANIFEST_NAME).read_text(encoding="utf-8"))["revisions"]
    assert [{k: e[k] for k in e if k.endswith("timeout")} for e in entries] == [
        {},
        {"ddl_lock_timeout": 30},
        {"ddl_lock_timeout": 2.5, "statement_timeout": "inf"},
    ]
    limits = {
        r.revision: (r.ddl_lock_timeout, r.statement_timeout)
        for r in load_history(environment_copy).revisions
    }
    assert limits == {"0001": (None, None), "0002": (30.0, None), "0003": (2.5, math.inf)}
    assert manifest_problems(environment_copy) == []


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("ddl_lock_timeout = 0", "ddl_lock_timeout = 0"),
        ("ddl_lock_timeout = -5.0", "ddl_lock_timeout = -5.0"),
        ("ddl_lock_timeout = '30'", "ddl_lock_timeout = '30'"),
        ("ddl_lock_timeout = True", "ddl_lock_timeout = True"),
        ("statement_timeout = float('nan')", "statement_timeout = nan"),
        ("statement_timeout = [600]", "statement_timeout = [600]"),
    ],
    ids=["zero", "negative", "string", "bool", "nan", "list"],
)
def test_revision_with_a_bogus_limit_is_refused(environment_copy: Path, line: str, says: str) -> None:
    """A declared limit must be a number above 0 seconds (math.inf: none); else a MigrationError names it."""
    add_revision(environment_copy, "0002", "0001", message="second", manifest=False, declares=line)

    with pytest.raises(MigrationError) as caught:
        write_manifest(environment_copy)
    assert f"Revision 0002 sets {says}" in str(caught.value)
    assert "more than 0 seconds" in str(caught.value)


def test_check_names_a_bogus_limit_edited_into_a_file(environment_copy: Path) -> None:
    """A file edited to declare a bogus limit after its manifest was written is a problem the check names."""
    path = add_revision(environment_copy, "0002", "0001", message="second", declares="ddl_lock_timeout = 30")
    path.write_text(path.read_text(encoding="utf-8").replace("= 30", "= -30"), encoding="utf-8")

    says = "Revision 0002 sets ddl_lock_timeout = -30; it must be a number, more than 0 seconds"
    assert manifest_problems(environment_copy) == [f"{says} (math.inf for no limit)."]


def test_manifest_that_disagrees_with_a_declared_limit_fails_the_check(environment_copy: Path) -> None:
    """A limit changed in the file, or in the manifest, without regenerating it is named by the check."""
    add_revision(environment_copy, "0002", "0001", message="second", declares="ddl_lock_timeout = 30.0")

    def lower(data: dict[str, Any]) -> None:
        data["revisions"][1]["ddl_lock_timeout"] = 3.0
        data["revisions"][1]["statement_timeout"] = 60

    _rewrite_manifest(environment_copy, lower)
    assert manifest_problems(environment_copy) == [
        "the manifest says ddl_lock_timeout = 3 for 0002, its revision file says 30",
        "the manifest says statement_timeout = 60 for 0002, its revision file says none",
    ]


def test_old_manifest_without_limits_still_loads(environment_copy: Path) -> None:
    """A manifest written before revisions could declare limits (no such keys) is valid, and current."""
    add_revision(environment_copy, "0002", "0001", message="second")
    entries = json.loads((environment_copy / MANIFEST_NAME).read_text(encoding="utf-8"))["revisions"]
    assert all(
        set(e) == {"revision", "down_revision", "message", "file", "backward_compatible"} for e in entries
    )

    history = load_history(environment_copy)
    assert [(r.ddl_lock_timeout, r.statement_timeout) for r in history.revisions] == [(None, None)] * 2
    assert manifest_problems(environment_copy) == []


@pytest.mark.parametrize(
    "value",
    ["0", "-1", "true", "null", '"30"', '"forever"', "Infinity", "NaN"],
)
def test_manifest_with_a_bogus_limit_is_malformed(environment_copy: Path, value: str) -> None:
    """In the manifest a limit is a number above 0 or "inf": anything else is refused as malformed."""
    text = (
        '{"revisions": [{"revision": "0001", "down_revision": null, "message": "m",'
        f' "file": "0001_baseline.py", "backward_compatible": false, "ddl_lock_timeout": {value}}}]}}'
    )
    (environment_copy / MANIFEST_NAME).write_text(text, encoding="utf-8")
    with pytest.raises(MigrationError, match="unexpected entry"):
        load_history(environment_copy)
