"""The documentation site: it builds without a warning, documents every public name, and its examples run."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from granite_assets import migrations

DOCS = Path(__file__).resolve().parent.parent / "docs"

pytestmark = [pytest.mark.slow, pytest.mark.docs]


def sphinx(builder: str, out: Path) -> subprocess.CompletedProcess[str]:
    """Run ``sphinx-build`` as ``make docs`` does, warnings as errors, into ``out``."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-n",
            "-q",
            "-b",
            builder,
            "-d",
            str(out / "doctrees"),
            str(DOCS),
            str(out / builder),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="session")
def site(docs_site: Path) -> Path:
    """The HTML site, built without a warning (once per run: see ``docs_site`` in conftest.py)."""
    return docs_site


@pytest.fixture(scope="module")
def entry_ids(site: Path) -> set[str]:
    """The ids of every element of every page of the site."""
    return {
        anchor
        for page in site.rglob("*.html")
        for anchor in re.findall(r'id="([^"]+)"', page.read_text(encoding="utf-8"))
    }


def test_site_has_the_migrations_page(site: Path) -> None:
    """The built site holds the Database Migrations page."""
    page = (site / "migrations.html").read_text(encoding="utf-8")
    assert "Database Migrations" in page
    assert "granite_assets_alembic_version" in page


def test_upgrade_to_head_has_an_api_entry(site: Path) -> None:
    """The API reference renders an entry for upgrade_to_head with its docstring."""
    page = (site / "api.html").read_text(encoding="utf-8")
    assert 'id="granite_assets.migrations.upgrade_to_head"' in page
    assert "Apply every bundled revision the database lacks" in page


@pytest.mark.parametrize("name", migrations.__all__)
def test_every_public_name_has_an_entry(entry_ids: set[str], name: str) -> None:
    """Every name granite_assets.migrations exports has a rendered entry somewhere on the site."""
    assert f"granite_assets.migrations.{name}" in entry_ids


@pytest.mark.heavy
def test_examples_pass_under_doctest(tmp_path: Path) -> None:
    """Every example the pages mark as a test runs, against SQLite, and prints what the page shows."""
    result = sphinx("doctest", tmp_path)
    report = (tmp_path / "doctest" / "output.txt").read_text(encoding="utf-8")
    assert result.returncode == 0, result.stdout + result.stderr + report
    assert "0 failures in tests" in report
    assert re.search(r"^\s*[1-9]\d* tests$", report, re.MULTILINE), report


def visible_examples(page: Path) -> list[str]:
    """The code of the page's ``testcode`` blocks that a reader sees (not ``:hide:``), in order."""
    blocks: list[str] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        directive = re.match(r"^(\s*)\.\. testcode::", line)
        if not directive:
            continue
        indent = len(directive.group(1))
        body: list[str] = []
        hidden = False
        for following in lines[number + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            if not body and following.strip().startswith(":"):
                hidden = hidden or following.strip() == ":hide:"
                continue
            body.append(following)
        if not hidden:
            blocks.append(textwrap.dedent("\n".join(body)).strip("\n"))
    return blocks


PAGES_WITH_EXAMPLES = sorted(page.name for page in DOCS.glob("*.rst") if visible_examples(page))


def test_every_example_is_visible_code_a_host_can_paste() -> None:
    """The pages show runnable examples as code (testcode), not as >>> sessions that read like tests."""
    expected = {"index.rst", "migrations.rst", "deployment.rst", "errors.rst", "api.rst"}
    assert expected <= set(PAGES_WITH_EXAMPLES)
    for page in DOCS.glob("*.rst"):
        assert ".. doctest::" not in page.read_text(encoding="utf-8"), page.name


@pytest.mark.parametrize("name", PAGES_WITH_EXAMPLES)
def test_examples_run_as_copied(tmp_path: Path, name: str) -> None:
    """A page's visible examples, pasted in order into one script in an empty folder, run: no hidden name."""
    script = "\n\n".join(visible_examples(DOCS / name))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, f"{name}:\n{script}\n{result.stderr}"
