"""scripts/migrate_check.py (``make migrate-check``): how it words autogenerate's differences, and its linter.

The linter renders each revision's PostgreSQL SQL offline from its parent and runs squawk over it.
These tests call it on a private copy of the bundled environment with revisions added: no database,
no network, and squawk takes milliseconds a revision.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from types import ModuleType

import migrate_check
import pytest
from alembic.script import ScriptDirectory
from conftest import Database, add_revision
from migrate_check import (
    describe_diff,
    find_squawk,
    is_squawk_rule,
    lint_revisions,
    revision_sql,
    squawk_findings,
    upgrade_operations,
)
from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    inspect,
)
from sqlalchemy.pool import NullPool

from granite_assets.migrations import _runner
from granite_assets.migrations._compatibility_proposal import BREAKING_RULES, propose
from granite_assets.migrations._history import bundled_directory, history_from_scripts
from granite_assets.migrations._manifest import manifest_problems, write_manifest
from granite_assets.migrations._names import VERSION_TABLE

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


# -- The linter -------------------------------------------------------------------------------

EXISTING = "granite_assets_lint_existing"
PARENT = "granite_assets_lint_parent"
NEW = "granite_assets_lint_new"

# 0002 creates the tables that the revisions under test find already there.
EXISTING_TABLES = f"""\
op.create_table("{PARENT}", sa.Column("id", sa.Integer, primary_key=True))
op.create_table(
    "{EXISTING}",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("note", sa.String(40)),
    sa.Column("parent_id", sa.Integer),
    sa.Column("code", sa.String(9), nullable=False),
)
op.create_index("ix_{EXISTING}_parent_id", "{EXISTING}", ["parent_id"])"""

REQUIRED_COLUMN = f'op.add_column("{EXISTING}", sa.Column("size", sa.Integer, nullable=False))'
PLAIN_INDEX = f'op.create_index("ix_{EXISTING}_note", "{EXISTING}", ["note"])'
CONCURRENT_INDEX = (
    "with op.get_context().autocommit_block():\n"
    f'    op.create_index("ix_{EXISTING}_note", "{EXISTING}", ["note"], postgresql_concurrently=True)'
)
REASON = "# The table is granite-assets' own and still empty in every release: nothing waits on it."


@pytest.fixture
def squawk() -> str:
    return find_squawk()


def _with_existing_tables(directory: Path) -> Path:
    add_revision(directory, "0002", "0001", EXISTING_TABLES)
    return directory


def _declare(path: Path, *lines: str) -> None:
    """Append module-level lines to a revision file."""
    path.write_text(path.read_text(encoding="utf-8") + "\n" + "\n".join(lines) + "\n", encoding="utf-8")


def _revision_module(directory: Path, revision: str) -> ModuleType:
    script = ScriptDirectory(str(directory)).get_revision(revision)
    assert script is not None
    return script.module


def test_a_required_column_on_an_existing_table_fails_naming_the_rule_and_the_file(
    environment_copy: Path, squawk: str
) -> None:
    """A NOT NULL column without a default, added to an existing table, fails with the rule, file and SQL."""
    _with_existing_tables(environment_copy)
    add_revision(environment_copy, "0003", "0002", REQUIRED_COLUMN, message="add size")

    failures, warnings = lint_revisions(environment_copy, squawk)

    assert len(failures) == 1, failures
    (failure,) = failures
    assert failure.startswith(f"0003_add_size.py ({environment_copy / 'versions' / '0003_add_size.py'}):")
    assert f"adding-required-field: ALTER TABLE {EXISTING} ADD COLUMN size INTEGER NOT NULL;" in failure
    assert "Not an addition (adding-required-field): the revision cannot be backward compatible." in failure
    assert 'lint_allow: tuple[str, ...] = ("adding-required-field",)' in failure
    assert warnings == []


def test_an_index_built_without_concurrently_fails(environment_copy: Path, squawk: str) -> None:
    """CREATE INDEX on an existing table, without CONCURRENTLY, fails and says how to build it instead."""
    _with_existing_tables(environment_copy)
    add_revision(environment_copy, "0003", "0002", PLAIN_INDEX)

    failures, _ = lint_revisions(environment_copy, squawk)

    assert len(failures) == 1, failures
    assert (
        f"require-concurrent-index-creation: CREATE INDEX ix_{EXISTING}_note ON {EXISTING} (note);"
        in (failures[0])
    )
    assert (
        "Build it with create_index_concurrently() from granite_assets.migrations.operations" in failures[0]
    )
    assert "Not an addition" not in failures[0]


@pytest.mark.parametrize(
    ("upgrade", "rule"),
    [(REQUIRED_COLUMN, "adding-required-field"), (PLAIN_INDEX, "require-concurrent-index-creation")],
    ids=["required-column", "index"],
)
def test_a_revision_that_declares_the_rule_passes(
    environment_copy: Path, squawk: str, upgrade: str, rule: str
) -> None:
    """The same revision passes once it accepts the rule in lint_allow, with a reason."""
    _with_existing_tables(environment_copy)
    path = add_revision(environment_copy, "0003", "0002", upgrade)
    _declare(path, REASON, f"lint_allow: tuple[str, ...] = ({rule!r},)")

    assert lint_revisions(environment_copy, squawk) == ([], [])


def test_an_accepted_rule_covers_its_own_revision_only(environment_copy: Path, squawk: str) -> None:
    """lint_allow in one revision does not excuse the same rule in the next."""
    _with_existing_tables(environment_copy)
    path = add_revision(environment_copy, "0003", "0002", PLAIN_INDEX)
    _declare(path, REASON, 'lint_allow: tuple[str, ...] = ("require-concurrent-index-creation",)')
    add_revision(environment_copy, "0004", "0003", f'op.create_index("ix_x", "{EXISTING}", ["id", "note"])')

    failures, _ = lint_revisions(environment_copy, squawk)

    assert [failure.split(" ", 1)[0] for failure in failures] == ["0004_test.py"]


def test_an_index_built_concurrently_outside_the_transaction_passes(
    environment_copy: Path, squawk: str
) -> None:
    """op.create_index(..., postgresql_concurrently=True) in an autocommit_block needs no declaration."""
    _with_existing_tables(environment_copy)
    add_revision(environment_copy, "0003", "0002", CONCURRENT_INDEX)

    assert lint_revisions(environment_copy, squawk) == ([], [])


def _documented_concurrent_index() -> str:
    """The maintainers page's example revision that builds an index with create_index_concurrently()."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "maintainers.rst").read_text(encoding="utf-8")
    blocks = re.findall(r"^\.\. code-block:: python\n\n((?:   .*\n|\n)+)", page, re.MULTILINE)
    (block,) = [block for block in blocks if "create_index_concurrently(" in block]
    return textwrap.dedent(block).strip()


def _with_the_documented_index(directory: Path) -> None:
    """0002 creates the example's table; 0003 is the example revision, renumbered to follow it."""
    add_revision(
        directory,
        "0002",
        "0001",
        'op.create_table("granite_assets_asset", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("name", sa.String(40)))',
    )
    example = _documented_concurrent_index()
    assert 'revision: str = "0005"' in example
    assert 'down_revision: str | None = "0004"' in example
    renumbered = example.replace('"0005"', '"0003"').replace('"0004"', '"0002"')
    (directory / "versions" / "0003_test.py").write_text(renumbered + "\n", encoding="utf-8")
    write_manifest(directory)


def test_the_documented_concurrent_index_passes_the_linter(environment_copy: Path, squawk: str) -> None:
    """The maintainers page's way to build an index on an existing table needs no declaration."""
    _with_the_documented_index(environment_copy)

    assert lint_revisions(environment_copy, squawk) == ([], [])
    assert propose(upgrade_operations(_revision_module(environment_copy, "0003"))).backward_compatible


def test_the_documented_concurrent_index_is_built_on_every_backend(
    environment_copy: Path, database: Database
) -> None:
    """The same revision upgrades every backend: CONCURRENTLY on PostgreSQL, in the transaction elsewhere."""
    _with_the_documented_index(environment_copy)

    assert _runner.upgrade(environment_copy, database.url_string, 30) == "0003"
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        indexes = inspect(engine).get_indexes("granite_assets_asset")
    finally:
        engine.dispose()
    assert [index["name"] for index in indexes] == ["ix_granite_assets_asset_name"]


def test_an_index_built_concurrently_inside_the_transaction_fails(
    environment_copy: Path, squawk: str
) -> None:
    """postgresql_concurrently=True outside an autocommit_block fails on PostgreSQL, and in the linter."""
    _with_existing_tables(environment_copy)
    add_revision(environment_copy, "0003", "0002", CONCURRENT_INDEX.split("\n", 1)[1].strip())

    failures, _ = lint_revisions(environment_copy, squawk)

    assert len(failures) == 1, failures
    assert "ban-concurrent-index-creation-in-transaction" in failures[0]


def test_a_new_table_with_its_own_index_and_constraints_passes(environment_copy: Path, squawk: str) -> None:
    """Indexes, constraints and required columns on a table the revision creates lock nothing in use."""
    _with_existing_tables(environment_copy)
    add_revision(
        environment_copy,
        "0003",
        "0002",
        f"""op.create_table(
    "{NEW}",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("{PARENT}.id"), nullable=False),
    sa.Column("name", sa.String(40), nullable=False),
)
op.create_index("ix_{NEW}_name", "{NEW}", ["name"])
op.create_unique_constraint("uq_{NEW}_parent_id", "{NEW}", ["parent_id"])
op.add_column("{NEW}", sa.Column("size", sa.Integer, nullable=False))""",
    )

    assert lint_revisions(environment_copy, squawk) == ([], [])


def test_the_bundled_revisions_pass_the_linter(squawk: str) -> None:
    """Every shipped revision, the empty baseline included, passes with nothing to declare."""
    assert lint_revisions(bundled_directory(), squawk) == ([], [])


def test_the_version_table_bookkeeping_is_not_linted(environment_copy: Path) -> None:
    """The SQL squawk reads holds the revision's statements and transactions, not the version table's."""
    _with_existing_tables(environment_copy)

    baseline = revision_sql(environment_copy, None, "0001")
    tables = revision_sql(environment_copy, "0001", "0002")

    assert VERSION_TABLE not in baseline + tables
    assert baseline.split() == ["BEGIN;", "--", "Running", "upgrade", "->", "0001", "COMMIT;"]
    assert tables.startswith("BEGIN;")
    assert tables.rstrip().endswith("COMMIT;")
    assert f"CREATE TABLE {EXISTING}" in tables


def test_an_unknown_rule_in_lint_allow_fails_clearly(environment_copy: Path, squawk: str) -> None:
    """A misspelt rule fails, naming it and the likely rule; the finding it meant to accept still fails."""
    _with_existing_tables(environment_copy)
    path = add_revision(environment_copy, "0003", "0002", REQUIRED_COLUMN)
    _declare(path, REASON, 'lint_allow: tuple[str, ...] = ("adding-requried-field",)')

    failures, _ = lint_revisions(environment_copy, squawk)

    assert failures[0] == (
        "0003_test.py accepts 'adding-requried-field' (did you mean 'adding-required-field'?) in lint_allow, "
        "but squawk has no rule of that name: name each rule as squawk reports it "
        "(https://squawkhq.com/docs/rules)"
    )
    assert "adding-required-field: ALTER TABLE" in failures[1]


@pytest.mark.parametrize(
    ("declaration", "problem"),
    [
        ('lint_allow = "adding-required-field"', "it must be a tuple of rule names"),
        ('lint_allow = ["adding-required-field"]', "it must be a tuple of rule names"),
        ("lint_allow = (1,)", "it must be a tuple of rule names"),
        ('lint_allow = ("adding-required-field,ban-drop-table",)', "squawk has no rule of that name"),
    ],
)
def test_a_malformed_lint_allow_fails(
    environment_copy: Path, squawk: str, declaration: str, problem: str
) -> None:
    """lint_allow must be a tuple of rule names, one rule each."""
    _with_existing_tables(environment_copy)
    path = add_revision(environment_copy, "0003", "0002", REQUIRED_COLUMN)
    _declare(path, REASON, declaration)

    failures, _ = lint_revisions(environment_copy, squawk)

    assert failures[0].startswith("0003_test.py "), failures
    assert problem in failures[0]


def test_a_lint_allow_without_a_reason_fails(environment_copy: Path, squawk: str) -> None:
    """Accepting a rule takes a comment saying why, just above the declaration or on it."""
    _with_existing_tables(environment_copy)
    path = add_revision(environment_copy, "0003", "0002", REQUIRED_COLUMN)
    _declare(path, 'lint_allow: tuple[str, ...] = ("adding-required-field",)')

    failures, _ = lint_revisions(environment_copy, squawk)

    assert failures == [
        (
            "0003_test.py accepts adding-required-field in lint_allow without saying why: "
            "put the reason in a comment just above the line (or on it)"
        )
    ]

    path.write_text(
        path.read_text(encoding="utf-8").replace(
            '("adding-required-field",)', '("adding-required-field",)  # an empty table of ours'
        ),
        encoding="utf-8",
    )
    assert lint_revisions(environment_copy, squawk) == ([], [])


def test_a_rule_accepted_but_not_reported_is_a_warning(environment_copy: Path, squawk: str) -> None:
    """A declaration squawk no longer needs is a warning, so that stale ones get removed."""
    _with_existing_tables(environment_copy)
    path = add_revision(environment_copy, "0003", "0002", CONCURRENT_INDEX)
    _declare(path, REASON, 'lint_allow: tuple[str, ...] = ("require-concurrent-index-creation",)')

    assert lint_revisions(environment_copy, squawk) == (
        [],
        [
            (
                "0003_test.py accepts require-concurrent-index-creation in lint_allow, "
                "which squawk does not report for it: remove it"
            )
        ],
    )


def test_a_compatible_revision_that_accepts_a_breaking_rule_is_a_warning(
    environment_copy: Path, squawk: str
) -> None:
    """Accepting a rule that flags only non-additions contradicts backward_compatible = True."""
    _with_existing_tables(environment_copy)
    path = add_revision(environment_copy, "0003", "0002", REQUIRED_COLUMN)
    _declare(
        path, "backward_compatible = True", REASON, 'lint_allow: tuple[str, ...] = ("adding-required-field",)'
    )

    failures, warnings = lint_revisions(environment_copy, squawk)

    assert failures == []
    assert warnings == [
        (
            "0003_test.py is declared backward compatible, but accepts adding-required-field in lint_allow, "
            "which flag only changes older releases may notice: set backward_compatible to False"
        )
    ]


def test_lint_allow_is_not_carried_in_the_manifest(environment_copy: Path) -> None:
    """lint_allow is the maintainer's declaration: the history and the manifest ignore it and stay current."""
    _with_existing_tables(environment_copy)
    path = add_revision(environment_copy, "0003", "0002", REQUIRED_COLUMN)
    before = (environment_copy / "revisions.json").read_text(encoding="utf-8")
    _declare(path, REASON, 'lint_allow: tuple[str, ...] = ("adding-required-field",)')

    assert history_from_scripts(environment_copy).head == "0003"
    assert manifest_problems(environment_copy) == []
    assert "lint_allow" not in before


def test_a_revision_whose_sql_cannot_be_rendered_is_a_warning(environment_copy: Path, squawk: str) -> None:
    """An upgrade() that needs a database cannot be linted offline: a warning says to check it by hand."""
    add_revision(environment_copy, "0002", "0001", 'op.get_bind().execute(sa.text("SELECT 1")).scalar_one()')

    failures, warnings = lint_revisions(environment_copy, squawk)

    assert failures == []
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("0002_test.py: its SQL could not be rendered without a database (")
    assert warnings[0].endswith("so squawk could not read it: check its locks by hand")


def test_a_missing_squawk_says_to_run_make_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without squawk in the virtual environment, migrate-check fails and says to run make install."""
    monkeypatch.setattr(migrate_check, "SQUAWK_FOLDER", tmp_path)

    with pytest.raises(migrate_check.LintSetupError, match="run make install"):
        find_squawk()
    assert migrate_check.main([]) == 1
    error = capsys.readouterr().err
    assert "squawk could not lint the revisions:" in error
    assert (
        f"squawk is not installed in {tmp_path}, so the revisions cannot be linted: run make install" in error
    )


def test_broken_squawk_settings_fail_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, squawk: str
) -> None:
    """A .squawk.toml that squawk cannot read stops the linter with squawk's own words, not a JSON error."""
    broken = tmp_path / ".squawk.toml"
    broken.write_text("excluded_rules = [\n", encoding="utf-8")
    monkeypatch.setattr(migrate_check, "SQUAWK_CONFIG", broken)

    with pytest.raises(
        migrate_check.LintSetupError, match="squawk exited 1 without a report: Configuration error"
    ):
        lint_revisions(bundled_directory(), squawk)


def test_breaking_rules_are_squawk_rules(squawk: str) -> None:
    """Every rule the heuristic's BREAKING_RULES names exists in the squawk that the dev group pins."""
    assert [rule for rule in sorted(BREAKING_RULES) if not is_squawk_rule(squawk, rule)] == []


# -- The heuristic and the linter agree on what an addition is ---------------------------------

# One revision's upgrade() on the tables of EXISTING_TABLES; whether make migrate-create's heuristic
# proposes it backward compatible; and the rules squawk reports for it.
AGREEMENT = [
    pytest.param(
        f'op.add_column("{EXISTING}", sa.Column("extra", sa.String(40)))', True, set(), id="nullable"
    ),
    pytest.param(
        f'op.add_column("{EXISTING}", sa.Column("kind", sa.String(9), server_default="x", nullable=False))',
        True,
        set(),
        id="server-default",
    ),
    pytest.param(
        f'op.add_column("{EXISTING}", sa.Column("key", sa.Uuid, nullable=False, '
        'server_default=sa.text("gen_random_uuid()")))',
        True,
        {"adding-field-with-default"},  # every row gets its own value: the table is rewritten, locked
        id="volatile-default",
    ),
    pytest.param(REQUIRED_COLUMN, False, {"adding-required-field"}, id="required"),
    pytest.param(PLAIN_INDEX, True, {"require-concurrent-index-creation"}, id="index"),
    pytest.param(CONCURRENT_INDEX, True, set(), id="index-concurrently"),
    pytest.param(
        f'op.create_index("ix_unique_note", "{EXISTING}", ["note"], unique=True)',
        False,
        {"require-concurrent-index-creation"},
        id="unique-index",
    ),
    pytest.param(
        f'op.create_unique_constraint("uq_note", "{EXISTING}", ["note"])',
        False,
        {"disallowed-unique-constraint", "constraint-missing-not-valid"},
        id="unique-constraint",
    ),
    pytest.param(
        f'op.create_foreign_key("fk_parent", "{EXISTING}", "{PARENT}", ["parent_id"], ["id"])',
        False,
        {"adding-foreign-key-constraint", "constraint-missing-not-valid"},
        id="foreign-key",
    ),
    pytest.param(
        f'op.create_check_constraint("ck_note", "{EXISTING}", "note <> \'\'")',
        False,
        {"constraint-missing-not-valid"},
        id="check-constraint",
    ),
    pytest.param(
        f'op.create_table("{NEW}", sa.Column("id", sa.Integer, primary_key=True), '
        f'sa.Column("parent_id", sa.Integer, sa.ForeignKey("{PARENT}.id"), nullable=False))\n'
        f'op.create_index("ix_new_parent_id", "{NEW}", ["parent_id"], unique=True)\n'
        f'op.create_foreign_key("fk_new_parent", "{NEW}", "{PARENT}", ["parent_id"], ["id"])\n'
        f'op.add_column("{NEW}", sa.Column("size", sa.Integer, nullable=False))\n'
        f'op.alter_column("{NEW}", "size", type_=sa.BigInteger)',
        True,
        set(),
        id="new-table-and-all-it-holds",
    ),
    pytest.param(f'op.drop_column("{EXISTING}", "note")', False, {"ban-drop-column"}, id="drop-column"),
    pytest.param(
        f'op.drop_index("ix_{EXISTING}_parent_id", "{EXISTING}")',
        False,
        {"require-concurrent-index-deletion"},
        id="drop-index",
    ),
    pytest.param(f'op.drop_table("{EXISTING}")', False, {"ban-drop-table"}, id="drop-table"),
    pytest.param(
        f'op.alter_column("{EXISTING}", "note", type_=sa.String(80))',
        False,
        {"changing-column-type"},
        id="type",
    ),
    pytest.param(
        f'op.alter_column("{EXISTING}", "note", nullable=False)',
        False,
        {"adding-not-nullable-field"},
        id="set-not-null",
    ),
    pytest.param(
        f'op.alter_column("{EXISTING}", "code", nullable=True)',
        False,
        {"ban-drop-not-null"},
        id="drop-not-null",
    ),
    pytest.param(
        f'op.alter_column("{EXISTING}", "note", new_column_name="text")',
        False,
        {"renaming-column"},
        id="rename-column",
    ),
    pytest.param(
        f'op.rename_table("{EXISTING}", "granite_assets_lint_renamed")',
        False,
        {"renaming-table"},
        id="rename",
    ),
    pytest.param(f"op.execute(\"UPDATE {EXISTING} SET note = 'x'\")", False, set(), id="data"),
]


@pytest.mark.parametrize(("upgrade", "compatible", "rules"), AGREEMENT)
def test_the_heuristic_and_the_linter_agree_on_what_an_addition_is(
    environment_copy: Path, squawk: str, upgrade: str, compatible: bool, rules: set[str]
) -> None:
    """squawk flags an addition for its lock only; its breaking rules flag only what the heuristic rejects."""
    _with_existing_tables(environment_copy)
    path = add_revision(environment_copy, "0003", "0002", upgrade)
    module = _revision_module(environment_copy, "0003")

    proposal = propose(upgrade_operations(module))
    reported = {
        finding.rule
        for finding in squawk_findings(squawk, revision_sql(environment_copy, "0002", "0003"), "x")
    }

    assert proposal.backward_compatible is compatible, proposal.reasons
    assert reported == rules
    if compatible:
        assert not reported & BREAKING_RULES
    if reported & BREAKING_RULES:
        assert not compatible
    # And once the revision accepts what squawk reports, it passes.
    if rules:
        _declare(path, REASON, f"lint_allow: tuple[str, ...] = {tuple(sorted(rules))!r}")
        assert lint_revisions(environment_copy, squawk) == ([], [])
