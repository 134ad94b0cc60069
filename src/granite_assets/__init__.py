"""granite-assets: asset management whose database tables migrate themselves.

Importing the package is cheap: it imports neither SQLAlchemy nor Alembic. The database
features live in :mod:`granite_assets.migrations` and need the ``db`` extra.
"""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    # Read lazily: importlib.metadata costs more than the rest of the package import.
    if name == "__version__":
        from importlib.metadata import version

        return version("granite-assets")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
