"""How scripts/migrate_check.py (``make migrate-check``) words autogenerate's differences."""

from __future__ import annotations

from migrate_check import describe_diff
from sqlalchemy import Column, ForeignKey, Index, Integer, MetaData, String, Table, UniqueConstraint

metadata = MetaData()
asset = Table("granite_assets_asset", metadata, Column("id", Integer, primary_key=True))
tag = Table(
    "granite_assets_tag",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("asset_id", Integer, ForeignKey("granite_assets_asset.id", name="fk_tag_asset_id")),
    Column("name", String(50)),
    UniqueConstraint("asset_id", "name", name="uq_tag_asset_id_name"),
    Index("ix_tag_name", "name"),
)


def test_tables_and_columns_are_named() -> None:
    """Added and dropped tables and columns are named, table.column for columns."""
    assert describe_diff(("add_table", asset)) == "add table granite_assets_asset"
    assert describe_diff(("remove_table", asset)) == "drop table granite_assets_asset"
    assert describe_diff(("add_column", None, "granite_assets_tag", tag.c.name)) == (
        "add column granite_assets_tag.name"
    )


def test_indexes_and_constraints_name_their_table_and_columns() -> None:
    """Indexes, unique constraints and foreign keys are named with their table and columns."""
    (index,) = tag.indexes
    (foreign_key,) = tag.foreign_key_constraints
    unique = next(c for c in tag.constraints if isinstance(c, UniqueConstraint))

    assert describe_diff(("add_index", index)) == "add index ix_tag_name on granite_assets_tag (name)"
    assert describe_diff(("remove_constraint", unique)) == (
        "drop UniqueConstraint uq_tag_asset_id_name on granite_assets_tag (asset_id, name)"
    )
    assert describe_diff(("add_fk", foreign_key)) == (
        "add foreign key fk_tag_asset_id on granite_assets_tag (asset_id)"
    )


def test_column_changes_show_old_and_new() -> None:
    """A changed column type or nullability shows the old and the new value."""
    change: list[tuple[object, ...]] = [
        ("modify_type", None, "granite_assets_tag", "name", {}, String(50), String(80))
    ]

    assert describe_diff(change) == (
        "change type of column granite_assets_tag.name: String(length=50) -> String(length=80)"
    )


def test_unknown_differences_fall_back_to_repr() -> None:
    """A kind of difference it does not know is still listed, as its repr."""
    assert describe_diff(("add_table_comment", "x")) == "('add_table_comment', 'x')"
