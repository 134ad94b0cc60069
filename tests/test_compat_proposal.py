"""Declaring backward_compatible: migrate-create's proposal, and migrate-check's checks of the flag."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import sqlalchemy as sa
from alembic import op as alembic_op
from alembic.operations import ops
from alembic.script import ScriptDirectory
from conftest import add_revision
from migrate_check import flag_warnings, upgrade_operations
from test_maintainer_e2e import ENVIRONMENT, ROOT, copy_project, run

from granite_assets.migrations._compatibility_proposal import indexes_on_existing_tables, propose
from granite_assets.migrations._history import MANIFEST_NAME
from granite_assets.migrations._index_builds import CreateIndexConcurrentlyOp, DropIndexConcurrentlyOp
from granite_assets.migrations._manifest import manifest_problems, write_manifest

TABLE = "granite_assets_proposal_asset"
OTHER = "granite_assets_other"


def _column(name: str, *, nullable: bool = True, server_default: str | None = None) -> sa.Column[str]:
    return sa.Column(name, sa.String(40), nullable=nullable, server_default=server_default)


PROPOSALS = [
    pytest.param(
        [ops.CreateTableOp(TABLE, [sa.Column("id", sa.Integer, primary_key=True)])], True, "", id="table"
    ),
    pytest.param(
        [
            ops.CreateTableOp(TABLE, [sa.Column("id", sa.Integer, primary_key=True)]),
            ops.CreateIndexOp("ix_unique", TABLE, ["id"], unique=True),
            ops.CreateForeignKeyOp("fk_new", TABLE, OTHER, ["id"], ["id"]),
            ops.AddColumnOp(TABLE, _column("required", nullable=False)),
        ],
        True,
        "",
        id="table-with-its-own-constraints",
    ),
    pytest.param(
        [ops.ModifyTableOps(OTHER, [ops.AddColumnOp(OTHER, _column("note"))])], True, "", id="nullable"
    ),
    pytest.param(
        [ops.AddColumnOp(OTHER, _column("kind", nullable=False, server_default="file"))],
        True,
        "",
        id="default",
    ),
    pytest.param([ops.CreateIndexOp("ix_note", OTHER, ["note"])], True, "", id="index"),
    pytest.param([CreateIndexConcurrentlyOp("ix_note", OTHER, ["note"])], True, "", id="concurrent-index"),
    pytest.param(
        [CreateIndexConcurrentlyOp("ix_unique", OTHER, ["note"], unique=True)],
        False,
        f"create_index_concurrently ix_unique on {OTHER} restricts what older code may write",
        id="concurrent-unique-index",
    ),
    pytest.param(
        [DropIndexConcurrentlyOp("ix_note", table_name=OTHER)],
        False,
        f"drop_index_concurrently ix_note on {OTHER}",
        id="concurrent-drop-index",
    ),
    pytest.param(
        [ops.AddColumnOp(OTHER, _column("size", nullable=False))],
        False,
        f"add_column {OTHER}.size is NOT NULL without a server default",
        id="not-null",
    ),
    pytest.param(
        [ops.CreateIndexOp("ix_unique", OTHER, ["note"], unique=True)],
        False,
        f"create_index ix_unique on {OTHER} restricts what older code may write",
        id="unique-index",
    ),
    pytest.param(
        [ops.CreateUniqueConstraintOp("uq_note", OTHER, ["note"])],
        False,
        f"create_unique_constraint uq_note on {OTHER} restricts",
        id="unique-constraint",
    ),
    pytest.param([ops.DropColumnOp(OTHER, "note")], False, f"drop_column {OTHER}.note", id="drop-column"),
    pytest.param([ops.DropTableOp(OTHER)], False, f"drop_table {OTHER}", id="drop-table"),
    pytest.param(
        [ops.DropIndexOp("ix_note", OTHER)], False, f"drop_index ix_note on {OTHER}", id="drop-index"
    ),
    pytest.param(
        [ops.AlterColumnOp(OTHER, "note", modify_type=sa.Text())],
        False,
        f"alter_column {OTHER}.note",
        id="alter",
    ),
    pytest.param([ops.RenameTableOp(OTHER, "granite_assets_renamed")], False, "rename_table", id="rename"),
    pytest.param([ops.ExecuteSQLOp("UPDATE x SET y = 1")], False, "execute_sql changes data", id="data"),
    pytest.param([], False, "no operation: an empty or data revision", id="empty"),
    pytest.param(
        [ops.CreateIndexOp("ix_note", OTHER, ["note"]), ops.DropColumnOp(OTHER, "old")],
        False,
        f"drop_column {OTHER}.old",
        id="addition-and-drop",
    ),
]


@pytest.mark.parametrize(("operations", "compatible", "reason"), PROPOSALS)
def test_proposal_is_true_only_for_additions(
    operations: list[ops.MigrateOperation], compatible: bool, reason: str
) -> None:
    """Additions older code never notices are proposed compatible; anything else is not, and says why."""
    proposal = propose(operations)

    assert proposal.backward_compatible is compatible
    assert (reason in "; ".join(proposal.reasons)) if reason else proposal.reasons == ()
    assert all(len(line) <= 100 for line in proposal.comment())
    assert " ".join(proposal.comment()).startswith(f"make migrate-create proposed {compatible} (")


def test_indexes_on_existing_tables_are_named_for_the_concurrent_build_hint() -> None:
    """Plain index builds on tables the revision does not create are named; the rest are not."""
    operations = [
        ops.CreateTableOp(TABLE, [sa.Column("id", sa.Integer, primary_key=True)]),
        ops.CreateIndexOp("ix_new", TABLE, ["id"]),
        ops.ModifyTableOps(OTHER, [ops.CreateIndexOp("ix_note", OTHER, ["note"])]),
        CreateIndexConcurrentlyOp("ix_done", OTHER, ["note"]),
    ]

    assert indexes_on_existing_tables(operations) == [f"ix_note on {OTHER}"]


def _flag(directory: Path, revision: str, value: object) -> None:
    """Set (or, for ``None``, leave out) a revision file's backward_compatible, and rewrite the manifest."""
    (path,) = (directory / "versions").glob(f"{revision}_*.py")
    text = path.read_text(encoding="utf-8").replace("\nbackward_compatible = True\n", "\n")
    path.write_text(
        text + (f"\nbackward_compatible = {value}\n" if value is not None else ""), encoding="utf-8"
    )
    write_manifest(directory)


def _module(directory: Path, revision: str) -> ModuleType:
    script = ScriptDirectory(str(directory)).get_revision(revision)
    assert script is not None
    return script.module


def test_upgrade_operations_are_recorded_not_run(environment_copy: Path) -> None:
    """migrate-check records upgrade()'s operations, batch ones too, with no database, and restores op."""
    add_revision(
        environment_copy,
        "0002",
        "0001",
        f'op.create_table("{TABLE}", sa.Column("id", sa.Integer, primary_key=True))\n'
        f'with op.batch_alter_table("{OTHER}") as batch:\n'
        '    batch.add_column(sa.Column("note", sa.String(40)))\n'
        '    batch.drop_column("old")',
    )
    module = _module(environment_copy, "0002")
    original = vars(module)["op"]

    recorded = upgrade_operations(module)

    assert [type(op).__name__ for op in recorded] == ["CreateTableOp", "AddColumnOp", "DropColumnOp"]
    assert [getattr(op, "table_name", None) for op in recorded] == [TABLE, OTHER, OTHER]
    assert vars(module)["op"] is original


CONCURRENT_INDEX = (
    "with op.get_context().autocommit_block():\n"
    f'    op.create_index("ix_other_note", "{OTHER}", ["note"], postgresql_concurrently=True)'
)


def test_an_index_built_concurrently_is_read_as_an_addition(environment_copy: Path) -> None:
    """An index built CONCURRENTLY in an autocommit_block is recorded as an index: compatible, no warning."""
    add_revision(environment_copy, "0002", "0001", CONCURRENT_INDEX)
    _flag(environment_copy, "0002", True)

    recorded = upgrade_operations(_module(environment_copy, "0002"))

    assert [type(op).__name__ for op in recorded] == ["CreateIndexOp"]
    assert propose(recorded).backward_compatible is True
    assert flag_warnings(environment_copy) == []


def test_concurrent_index_builds_are_recorded_and_count_as_additions(environment_copy: Path) -> None:
    """create_index_concurrently() goes through alembic.op: migrate-check records it, as an addition."""
    add_revision(
        environment_copy,
        "0002",
        "0001",
        "from granite_assets.migrations.operations import create_index_concurrently\n"
        f'create_index_concurrently("ix_note", "{OTHER}", ["note"])',
    )
    _flag(environment_copy, "0002", True)

    recorded = upgrade_operations(_module(environment_copy, "0002"))

    assert [type(op) for op in recorded] == [CreateIndexConcurrentlyOp]
    assert propose(recorded).backward_compatible
    assert flag_warnings(environment_copy) == []
    with pytest.raises((NameError, AttributeError)):  # the stand-in for alembic.op is gone again
        alembic_op.get_context()


def test_migrate_check_warns_about_doubtful_and_missing_flags(environment_copy: Path) -> None:
    """A declaration the heuristic doubts, an unreadable upgrade() and a missing flag are warnings."""
    add_revision(environment_copy, "0002", "0001", f'op.add_column("{OTHER}", sa.Column("n", sa.Integer))')
    add_revision(environment_copy, "0003", "0002", f'op.drop_column("{OTHER}", "n")')
    add_revision(environment_copy, "0004", "0003", 'op.get_bind().execute(sa.text("SELECT 1"))')
    add_revision(environment_copy, "0005", "0004", "pass")
    for revision, value in (("0002", True), ("0003", True), ("0004", True), ("0005", None)):
        _flag(environment_copy, revision, value)

    warnings = flag_warnings(environment_copy)

    assert len(warnings) == 3, warnings
    doubtful, unreadable, missing = warnings
    assert doubtful.startswith("0003_test.py is declared backward compatible, but drop_column")
    assert f"drop_column {OTHER}.n" in doubtful
    assert unreadable.startswith("0004_test.py is declared backward compatible, and its upgrade() could not")
    assert missing.startswith("0005_test.py does not set backward_compatible, so it counts as False")
    assert manifest_problems(environment_copy) == []


def test_manifest_flag_that_disagrees_with_the_revision_is_named(environment_copy: Path) -> None:
    """A manifest whose flag differs from the revision file's is stale, and the problem names the flag."""
    add_revision(environment_copy, "0002", "0001", f'op.add_column("{OTHER}", sa.Column("n", sa.Integer))')
    _flag(environment_copy, "0002", True)
    manifest = environment_copy / MANIFEST_NAME
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["revisions"][1]["backward_compatible"] = False
    manifest.write_text(json.dumps(data), encoding="utf-8")

    assert manifest_problems(environment_copy) == [
        "the manifest says backward_compatible = False for 0002, its revision file says True"
    ]


def test_bundled_revisions_declare_their_flag() -> None:
    """Every shipped revision says backward_compatible explicitly, and nothing about it needs review."""
    assert flag_warnings(ROOT / ENVIRONMENT) == []


# -- Revisions generated by make migrate-create, one of each kind ----------------------------

MODELS_HEADER = """

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column
"""


def asset_model(*columns: str, table_args: str = "") -> str:
    """The source of a model for ``TABLE`` with an id and ``columns`` (annotated assignments)."""
    lines = [
        "",
        "",
        "class ProposalAsset(Base):",
        '    """An asset (added by tests/test_compat_proposal.py)."""',
        "",
        f'    __tablename__ = "{TABLE}"',
        *([f"    __table_args__ = ({table_args},)"] if table_args else []),
        "",
        "    id: Mapped[int] = mapped_column(primary_key=True)",
        *(f"    {column}" for column in columns),
    ]
    return "\n".join(lines) + "\n"


NAME = "name: Mapped[str] = mapped_column(String(200), index=True)"
NOTE = "note: Mapped[str | None] = mapped_column(String(100))"
KIND = 'kind: Mapped[str] = mapped_column(String(20), server_default="file")'


@dataclass(frozen=True)
class Kind:
    """One step of the maintainer's history: a change to the models, the flag to propose, squawk's rules."""

    name: str
    models: str | None  # None: an empty revision (EMPTY=1)
    compatible: bool
    reason: str = ""
    lint: tuple[str, ...] = ()  # what make migrate-check's linter reports, until the revision accepts it


KINDS = [
    Kind("create table with an index", asset_model(NAME), compatible=True),
    Kind("add nullable column", asset_model(NAME, NOTE), compatible=True),
    Kind("add column with a server default", asset_model(NAME, NOTE, KIND), compatible=True),
    Kind(
        "add index",
        asset_model(NAME, NOTE.replace("(String(100))", "(String(100), index=True)"), KIND),
        compatible=True,
        lint=("require-concurrent-index-creation",),
    ),
    Kind(
        "add required column",
        asset_model(
            NAME, NOTE.replace("(String(100))", "(String(100), index=True)"), KIND, "size: Mapped[int]"
        ),
        compatible=False,
        reason=f"add_column {TABLE}.size is NOT NULL without a server default",
        lint=("adding-required-field",),
    ),
    Kind(
        "add unique constraint",
        asset_model(
            NAME,
            NOTE.replace("(String(100))", "(String(100), index=True)"),
            KIND,
            "size: Mapped[int]",
            table_args='UniqueConstraint("kind")',
        ),
        compatible=False,
        reason=f"create_unique_constraint uq_{TABLE}_kind on {TABLE} restricts",
        lint=("constraint-missing-not-valid", "disallowed-unique-constraint"),
    ),
    Kind(
        "change column type",
        asset_model(
            NAME.replace("String(200)", "String(300)"),
            NOTE.replace("(String(100))", "(String(100), index=True)"),
            KIND,
            "size: Mapped[int]",
            table_args='UniqueConstraint("kind")',
        ),
        compatible=False,
        reason=f"alter_column {TABLE}.name",
        lint=("changing-column-type",),
    ),
    Kind(
        "drop column",
        asset_model(
            NAME.replace("String(200)", "String(300)"),
            NOTE.replace("(String(100))", "(String(100), index=True)"),
            KIND,
            table_args='UniqueConstraint("kind")',
        ),
        compatible=False,
        reason=f"drop_column {TABLE}.size",
        lint=("ban-drop-column",),
    ),
    Kind("empty revision", None, compatible=False, reason="no operation: an empty or data revision"),
    Kind(
        "drop table",
        "",
        compatible=False,
        reason=f"drop_table {TABLE}",
        lint=("require-concurrent-index-deletion", "ban-drop-table"),
    ),
]


@dataclass(frozen=True)
class Generated:
    """A project copy where each kind of change was turned into a revision by migrate-create."""

    project: Path
    files: dict[str, Path]
    outputs: dict[str, str]

    @property
    def environment(self) -> Path:
        return self.project / ENVIRONMENT


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """Run migrate-create once per kind of change, in order, in one copy of the project."""
    project = copy_project(tmp_path_factory.mktemp("proposal") / "project")
    models = project / "src" / "granite_assets" / "models.py"
    base = models.read_text(encoding="utf-8")
    files: dict[str, Path] = {}
    outputs: dict[str, str] = {}
    for kind in KINDS:
        before = set((project / ENVIRONMENT / "versions").glob("*.py"))
        if kind.models is not None:
            models.write_text(base + (MODELS_HEADER + kind.models if kind.models else ""), encoding="utf-8")
        command = [sys.executable, "scripts/migrate_create.py", "--message", kind.name]
        result = run(project, *command, *([] if kind.models is not None else ["--empty"]))
        (files[kind.name],) = set((project / ENVIRONMENT / "versions").glob("*.py")) - before
        outputs[kind.name] = result.stdout
    return Generated(project, files, outputs)


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_migrate_create_proposes_the_flag_for_each_kind_of_change(generated: Generated, kind: Kind) -> None:
    """The generated revision says the proposed flag, explains it, and migrate-create asks for review."""
    source = generated.files[kind.name].read_text(encoding="utf-8")
    output = generated.outputs[kind.name]

    assert f"\nbackward_compatible: bool = {kind.compatible}\n" in source
    comment = " ".join(line.removeprefix("# ") for line in source.splitlines() if line.startswith("# "))
    assert f"make migrate-create proposed {kind.compatible} (" in comment
    assert kind.reason in comment
    assert "confirm or correct it in review" in comment
    assert f"It says backward_compatible = {kind.compatible}, proposed from its operations" in output
    assert kind.reason in output
    revision = generated.files[kind.name].name.split("_", 1)[0]
    entry = next(e for e in _manifest(generated.environment) if e["revision"] == revision)
    assert entry["backward_compatible"] is kind.compatible


def _manifest(environment: Path) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = json.loads((environment / MANIFEST_NAME).read_text("utf-8"))[
        "revisions"
    ]
    return entries


@pytest.mark.slow
def test_migrate_create_points_an_index_on_an_existing_table_to_the_concurrent_build(
    generated: Generated,
) -> None:
    """An index generated on an existing table gets a hint to build it concurrently; a new table's not."""
    hint = "Use create_index_concurrently() from granite_assets.migrations.operations instead"
    added = generated.outputs["add index"]
    assert f"It builds the index ix_{TABLE}_note on {TABLE}, a table that exists already" in added
    assert hint in added
    assert "create_index_concurrently" not in generated.outputs["create table with an index"]
    source = generated.files["add index"].read_text(encoding="utf-8")
    assert (
        '# To index a table in use, see "Building an index on a live table" in docs/maintainers.rst.'
        in source
    )


@pytest.mark.slow
@pytest.mark.lint
def test_generated_revisions_pass_ruff_and_mypy(generated: Generated) -> None:
    """Every generated revision passes ruff and mypy strict unedited."""
    paths = sorted(generated.files.values())
    run(generated.project, sys.executable, "-m", "ruff", "check", "--no-cache", *paths)
    run(generated.project, sys.executable, "-m", "ruff", "format", "--check", "--no-cache", *paths)
    run(generated.project, sys.executable, "-m", "mypy", "--no-incremental", *paths)


@contextmanager
def accepting_what_squawk_reports(generated: Generated) -> Iterator[None]:
    """Give each generated revision the lint_allow its kind needs, with a reason; put the files back after."""
    originals = {
        kind.name: generated.files[kind.name].read_text(encoding="utf-8") for kind in KINDS if kind.lint
    }
    try:
        for kind in KINDS:
            if kind.lint:
                declaration = f"lint_allow: tuple[str, ...] = {kind.lint!r}"
                generated.files[kind.name].write_text(
                    f"{originals[kind.name]}\n# What this test's history accepts, to pass.\n{declaration}\n",
                    encoding="utf-8",
                )
        yield
    finally:
        for name, text in originals.items():
            generated.files[name].write_text(text, encoding="utf-8")


def _items(stderr: str) -> dict[str, str]:
    """migrate-check's listed items, by the revision file each starts with."""
    items = re.split(r"^  - ", stderr, flags=re.MULTILINE)[1:]
    return {item.split(" ", 1)[0]: item for item in items}


@pytest.mark.slow
def test_generated_revisions_pass_migrate_check_once_they_accept_what_squawk_reports(
    generated: Generated,
) -> None:
    """Unedited, only the linter fails, on the revisions that lock or break; accepting that, they pass."""
    result = run(generated.project, sys.executable, "scripts/migrate_check.py", expect=1)

    assert result.stderr.startswith("squawk flags what these revisions do to a live database")
    assert "Warning" not in result.stderr
    items = _items(result.stderr)
    assert set(items) == {generated.files[kind.name].name for kind in KINDS if kind.lint}
    for kind in KINDS:
        if kind.lint:
            item = items[generated.files[kind.name].name]
            assert {
                line.strip().split(":")[0] for line in item.splitlines() if line.startswith("      ")
            } >= set(kind.lint), item
            assert (
                f"lint_allow: tuple[str, ...] = ({', '.join(map(repr, kind.lint))}".replace("'", '"') in item
            )

    with accepting_what_squawk_reports(generated):
        accepted = run(generated.project, sys.executable, "scripts/migrate_check.py")

    assert "Migrations are consistent" in accepted.stdout
    assert "Warning" not in accepted.stderr


@pytest.mark.slow
def test_migrate_check_on_a_flag_changed_by_hand(generated: Generated) -> None:
    """A flag flipped by hand fails migrate-check until the manifest follows; a doubtful True then warns."""
    path = generated.files["drop column"]
    revision = path.name.split("_", 1)[0]
    with accepting_what_squawk_reports(generated):
        original = path.read_text(encoding="utf-8")
        path.write_text(
            original.replace("backward_compatible: bool = False", "backward_compatible: bool = True")
        )
        try:
            stale = run(generated.project, sys.executable, "scripts/migrate_check.py", expect=1)
            assert (
                f"the manifest says backward_compatible = False for {revision}, its revision file says True"
                in stale.stderr
            )

            run(generated.project, sys.executable, "scripts/write_manifest.py")
            doubtful = run(generated.project, sys.executable, "scripts/migrate_check.py")
            assert "Migrations are consistent" in doubtful.stdout
            assert "Warning: confirm the backward_compatible flags in review:" in doubtful.stderr
            assert (
                f"{path.name} is declared backward compatible, but drop_column {TABLE}.size"
                in doubtful.stderr
            )
            # The linter agrees: the rule the revision accepts flags only what is no addition.
            assert (
                f"{path.name} is declared backward compatible, but accepts ban-drop-column in lint_allow"
                in doubtful.stderr
            )
        finally:
            path.write_text(original, encoding="utf-8")
            run(generated.project, sys.executable, "scripts/write_manifest.py")
