"""Operations for granite-assets' own revisions, beside Alembic's ``op``: indexes on tables in use.

Import them in a revision file::

    from granite_assets.migrations.operations import create_index_concurrently

``import granite_assets.migrations`` does not load this module, which needs Alembic.
"""

from __future__ import annotations

from granite_assets.migrations._index_builds import create_index_concurrently, drop_index_concurrently

__all__ = ["create_index_concurrently", "drop_index_concurrently"]
