"""Look at the built docs as a reader does: each page in headless Chromium, on a phone and a laptop.

Every page is rendered at each width (by default 390 px, a phone, and 1280 px, a laptop). The check
fails when a page's stylesheet does not load, when a code block is wider than the page (the
reader must scroll sideways to read it), when an API name (an entry's name, or a link to one)
is broken across two lines, or when code blocks lack their copy button.

The pages are served from a local HTTP server, as a reader's browser gets them, and rendered by
the machine's own Chromium (Debian's ``chromium`` package; ``CHROMIUM`` names another binary),
driven through playwright, which never downloads a browser here.

Usage::

    make docs-check
    python scripts/check_docs_layout.py docs/_build/html [--width 390 --width 1280]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Page, Response

#: Flags that keep a headless Chromium from reaching anything but the pages it is given.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: The widths every page is checked at unless told otherwise: a phone's, and a laptop's.
DEFAULT_WIDTHS = (390, 1280)
#: Generated pages with no prose or code of the project's own.
SKIPPED_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
#: Run in the page: what a reader would notice, as data.
MEASURE = """() => {
    const sheets = [...document.querySelectorAll('link[rel="stylesheet"]')].map(link => {
        let rules = 0;
        try { rules = link.sheet ? link.sheet.cssRules.length : 0; } catch (e) { rules = 0; }
        return {href: link.getAttribute('href'), rules: rules};
    });
    const blocks = [...document.querySelectorAll('div.highlight pre, pre.literal-block')];
    const overflowing = blocks
        .filter(pre => pre.scrollWidth > pre.clientWidth + 1)
        .map(pre => ({
            line: pre.innerText.split('\\n').reduce((a, b) => (b.length > a.length ? b : a), ''),
            by: pre.scrollWidth - pre.clientWidth,
        }));
    // A name without spaces drawn on two lines was broken inside itself.
    const nameSelector = '.sig-name, a.reference code.xref, dl.field-list a.reference strong';
    const names = [...document.querySelectorAll(nameSelector)]
        .filter(name => !/\\s/.test(name.textContent.trim()) && name.getClientRects().length > 1)
        .map(name => name.textContent.trim());
    return {
        sheets: sheets,
        blocks: blocks.length,
        copyButtons: document.querySelectorAll('button.copybtn').length,
        overflowing: overflowing,
        brokenNames: names,
    };
}"""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one page."""

    page: str
    what: str

    def __str__(self) -> str:
        return f"{self.page}: {self.what}"


def find_chromium() -> str | None:
    """The Chromium to drive: ``$CHROMIUM``, else ``chromium`` (or ``chromium-browser``) on PATH."""
    configured = os.environ.get("CHROMIUM")
    if configured:
        return configured
    return shutil.which("chromium") or shutil.which("chromium-browser")


def problems_in(measured: dict[str, Any], page: str) -> list[Problem]:
    """Turn one page's measurements into the problems a reader would meet."""
    found: list[Problem] = []
    if not measured["sheets"]:
        found.append(Problem(page, "no stylesheet is linked"))
    found += [
        Problem(page, f"stylesheet {sheet['href']} did not load (or is empty)")
        for sheet in measured["sheets"]
        if sheet["rules"] == 0
    ]
    found += [
        Problem(page, f"code block wider than the page by {block['by']}px: {block['line'].strip()!r}")
        for block in measured["overflowing"]
    ]
    found += [Problem(page, f"name broken across two lines: {name!r}") for name in measured["brokenNames"]]
    if measured["blocks"] and measured["copyButtons"] < measured["blocks"]:
        found.append(
            Problem(page, f"{measured['blocks'] - measured['copyButtons']} code block(s) lack a copy button")
        )
    return found


@contextmanager
def serving(site: Path) -> Iterator[str]:
    """Serve ``site`` on a free port of 127.0.0.1 while the block runs; yield its base URL."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    class QuietServer(http.server.ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            # The browser drops connections it no longer needs (a page closed mid-transfer).
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    handler = functools.partial(QuietHandler, directory=str(site))
    server = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def collect_responses(page: Page) -> list[Response]:
    """The list that every response ``page`` receives from now on is appended to."""
    responses: list[Response] = []

    def keep(response: Response) -> None:
        responses.append(response)

    page.on("response", keep)
    return responses


def check_site(site: Path, chromium: str, width: int = 1280, height: int = 900) -> list[Problem]:
    """Render every page of ``site`` in ``chromium``; return what a reader would find wrong."""
    from playwright.sync_api import sync_playwright

    pages = sorted(p.name for p in site.glob("*.html") if p.name not in SKIPPED_PAGES)
    found: list[Problem] = []
    with serving(site) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            for name in pages:
                page = context.new_page()
                responses = collect_responses(page)
                page.goto(f"{base}/{name}", wait_until="load")
                found += problems_in(page.evaluate(MEASURE), name)
                found += [
                    Problem(name, f"{response.url} answered {response.status}")
                    for response in responses
                    if not response.ok
                ]
                page.close()
        finally:
            browser.close()
    return found


def main(argv: list[str] | None = None) -> int:
    """Check the site; return 0 when no page has a problem."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "site", type=Path, nargs="?", default=Path("docs/_build/html"), help="the built HTML site"
    )
    parser.add_argument(
        "--width",
        type=int,
        action="append",
        help=f"viewport width in px, repeatable (default: {' and '.join(map(str, DEFAULT_WIDTHS))})",
    )
    args = parser.parse_args(argv)
    widths: list[int] = args.width or list(DEFAULT_WIDTHS)
    chromium = find_chromium()
    if chromium is None:
        print(
            "No Chromium found: install Debian's chromium package (apt-get install chromium), "
            "or set CHROMIUM to a Chromium or Chrome binary.",
            file=sys.stderr,
        )
        return 2
    if not (args.site / "index.html").exists():
        print(f"No site in {args.site}: build it first (make docs).", file=sys.stderr)
        return 2
    problems = [(width, problem) for width in widths for problem in check_site(args.site, chromium, width)]
    for width, problem in problems:
        print(f"at {width}px: {problem}", file=sys.stderr)
    pages = len([p for p in args.site.glob("*.html") if p.name not in SKIPPED_PAGES])
    at = " and ".join(f"{width}px" for width in widths)
    if problems:
        print(f"docs-check: {len(problems)} problem(s) on {pages} pages at {at}", file=sys.stderr)
        return 1
    print(f"docs-check: {pages} pages at {at}: stylesheets load, no code block overflows, no name is broken")
    return 0


if __name__ == "__main__":
    sys.exit(main())
