"""The docs layout check (``make docs-check``) sees what a reader would: run on a small site of its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from check_docs_layout import check_site
from conftest import require_chromium

pytestmark = [pytest.mark.slow, pytest.mark.docs]

STYLE = "body { font-family: sans-serif; max-width: 40em; } pre { overflow: auto; }"
PAGE = """<!doctype html>
<html><head><link rel="stylesheet" href="{sheet}"></head>
<body><div class="highlight"><pre>{code}</pre></div>{button}</body></html>
"""
COPY_BUTTON = '<button class="copybtn">copy</button>'


def write_page(site: Path, name: str, *, sheet: str = "style.css", code: str = "print(1)") -> None:
    """A page with one code block and its copy button."""
    (site / name).write_text(PAGE.format(sheet=sheet, code=code, button=COPY_BUTTON))


def test_check_reports_an_overflowing_code_block_and_a_missing_stylesheet(tmp_path: Path) -> None:
    """A too-long code line and a stylesheet that does not load are found; a good page passes."""
    chromium = require_chromium()
    (tmp_path / "style.css").write_text(STYLE)
    write_page(tmp_path, "index.html")
    long_line = "upgrade_to_head(" + ", ".join(f"argument_{n}" for n in range(30)) + ")"
    write_page(tmp_path, "wide.html", code=long_line)
    write_page(tmp_path, "unstyled.html", sheet="_static/missing.css")
    (tmp_path / "bare.html").write_text(PAGE.format(sheet="style.css", code="x = 1", button=""))

    problems = [str(problem) for problem in check_site(tmp_path, chromium, width=800)]

    assert not [p for p in problems if p.startswith("index.html")]
    (wide,) = [p for p in problems if p.startswith("wide.html")]
    assert wide.startswith("wide.html: code block wider than the page by ")
    assert wide.endswith(f"px: {long_line!r}")
    assert "unstyled.html: stylesheet _static/missing.css did not load (or is empty)" in problems
    assert any(p.startswith("unstyled.html: ") and p.endswith("missing.css answered 404") for p in problems)
    assert "bare.html: 1 code block(s) lack a copy button" in problems


def test_check_reports_an_api_name_broken_across_lines(tmp_path: Path) -> None:
    """An entry's name that the page breaks inside itself, as furo's article does on a phone, is found."""
    chromium = require_chromium()
    (tmp_path / "style.css").write_text(STYLE + " article { overflow-wrap: break-word; width: 12em; }")
    entry = (
        '<!doctype html><html><head><link rel="stylesheet" href="style.css"></head><body><article>'
        '<dl class="py exception"><dt class="sig"><span class="sig-prename">granite_assets.migrations.</span>'
        '<span class="sig-name">MigrationLockTimeoutError</span></dt></dl></article></body></html>'
    )
    (tmp_path / "index.html").write_text(entry)

    problems = [str(problem) for problem in check_site(tmp_path, chromium, width=390)]

    assert problems == ["index.html: name broken across two lines: 'MigrationLockTimeoutError'"]
