"""The application's models (myapp/models.py), one of which refers to a granite-assets table."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """The application's models: env.py's target_metadata is Base.metadata."""


# The granite-assets tables the application refers to, in a MetaData of their own.
# Never add them to Base.metadata: autogenerate compares Base.metadata with the
# database, and would propose to create them. granite-assets creates and changes them.
granite_assets_tables = MetaData()
asset = Table(
    "granite_assets_asset",
    granite_assets_tables,
    Column("id", Integer, primary_key=True),
)


class Order(Base):
    """An order of one asset."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    note: Mapped[str] = mapped_column(String(100))
    asset_id: Mapped[int] = mapped_column(ForeignKey(asset.c.id))
