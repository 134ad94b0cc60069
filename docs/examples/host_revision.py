"""Add orders, which refer to granite-assets' assets.

Revision ID: 3f2a1c9d8e7b
Revises:
Create Date: 2026-01-15 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from granite_assets.migrations import require_revision

revision = "3f2a1c9d8e7b"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the orders table, with its foreign key to granite_assets_asset."""
    # First, before any change: the granite-assets revision that made granite_assets_asset.
    require_revision(op.get_bind(), "0002")
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(length=100), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["asset_id"], ["granite_assets_asset.id"]),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    """Drop the orders table."""
    op.drop_table("orders")
