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
    "sphinx_copybutton",
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
        "collections.abc.Callable",
        "collections.abc.Mapping",
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
        "sqlalchemy.sql.elements.TextClause",
        "sqlalchemy.sql.elements.ColumnElement",
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
html_static_path = ["_static"]
# Code and API names on a phone's screen (checked at 390 px by make docs-check).
html_css_files = ["narrow.css"]

# Every page's examples run as a reader pastes them: in an empty folder of their own, where
# ``sqlite:///app.db`` is a new file. The doctest builder runs this before each page's examples
# (and the cleanup after), so no page sees another's files and the examples define every name
# they use. EXAMPLES is for the hidden tests of the scripts shown with literalinclude.
doctest_global_setup = f"""
import os as _os
import tempfile as _tempfile

_home = _os.getcwd()
_folder = _tempfile.TemporaryDirectory()
_os.chdir(_folder.name)
EXAMPLES = {str(Path(__file__).resolve().parent / "examples")!r}
"""
doctest_global_cleanup = """
_os.chdir(_home)
_folder.cleanup()
"""

# The copy button copies commands and code without their prompts or the output shown after them.
copybutton_prompt_text = r"\$ |>>> |\.\.\. "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = True
copybutton_line_continuation_character = "\\"
