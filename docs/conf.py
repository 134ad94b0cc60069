"""Sphinx configuration of the granite-assets documentation."""

from __future__ import annotations

from importlib.metadata import version as _installed_version
from pathlib import Path

project = "granite-assets"
author = "granite-assets maintainers"
copyright = "granite-assets maintainers"  # noqa: A001 - the name Sphinx reads
# The version of the installed package, so the docs never carry a copy of it.
release = _installed_version("granite-assets")
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]
nitpicky = True
# No intersphinx: the machines that build the docs cannot reach other projects' inventories, so
# references to these classes outside granite-assets (SQLAlchemy's, and one from the standard
# library in an exception's signature) have nothing to link to. Every other reference must resolve.
nitpick_ignore = [
    ("py:class", name)
    for name in (
        "collections.abc.Sequence",
        "URL",
        "Engine",
        "Connection",
        "AsyncEngine",
        "AsyncConnection",
        "sqlalchemy.engine.URL",
        "sqlalchemy.engine.Engine",
        "sqlalchemy.engine.Connection",
        "sqlalchemy.ext.asyncio.AsyncEngine",
        "sqlalchemy.ext.asyncio.AsyncConnection",
    )
]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
python_use_unqualified_type_names = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# The doctest builder runs only what the pages mark as tests; plain code blocks need servers.
doctest_test_doctest_blocks = ""

html_theme = "furo"
html_title = f"granite-assets {release}"

# The doctests run the example scripts shown on the pages, from where they live.
doctest_global_setup = f"EXAMPLES = {str(Path(__file__).resolve().parent / 'examples')!r}"
