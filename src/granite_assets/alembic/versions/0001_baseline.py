"""baseline: granite-assets has no tables yet

The empty first revision. Applying it creates granite_assets_alembic_version and records
0001 there, so a database granite-assets has touched is told apart from one it has not, and
the first revision that adds a table has a parent to build on.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 17:00:00
"""

from collections.abc import Sequence

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Whether every older release that worked with the database before this revision keeps working
# after it, so that it may run against a database this revision migrated: True only for additions
# (a table, a nullable column or one with a server default, an index). See "Expand and contract"
# in the deployment docs.
# The baseline has no previous revision: no older release runs against it.
backward_compatible: bool = False


def upgrade() -> None:
    """Apply this revision."""


def downgrade() -> None:
    """Revert this revision."""
