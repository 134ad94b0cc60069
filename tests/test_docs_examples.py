"""The code blocks of the install, migrations and host-integration pages, copied and run on every backend.

Each block is taken from the built HTML page and turned into the text its copy button copies
(:func:`copied`, the same steps as sphinx-copybutton's script with the prompts ``docs/conf.py``
sets), so a tab the page lost, or a prompt the button keeps, fails here as it fails for a reader.
Files are written where the block's caption says, and commands run from a shell in the host's
folder, with this test's virtual environment first on ``PATH``.

This release ships no table for a host's foreign key to refer to. The foreign-key examples are
run twice: against a copy of the package that adds ``granite_assets_asset`` in revision ``0002``
(:func:`asset_release`), where they work as shown, and against this release, where they stop as
the page says they do.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from check_wheel import find_uv
from conftest import ASYNC_DRIVERS, BACKENDS, Backend, Database, add_revision, backend_params, fresh_database
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool
from test_docs import DOCS
from test_maintainer_e2e import copy_project

import granite_assets
from granite_assets.migrations import current_revision, head_revision

pytestmark = [pytest.mark.slow, pytest.mark.docs]
# One driver per database: the pages' examples differ by database, not by driver (psycopg 3 is
# the PostgreSQL driver the pages show).
ONE_PER_DATABASE = [b for b in BACKENDS if b.driver in {"pysqlite", "psycopg", "pymysql"}]


@pytest.fixture(params=backend_params(ONE_PER_DATABASE))
def backend(request: pytest.FixtureRequest) -> Backend:
    """SQLite, PostgreSQL and MariaDB, each through the driver the pages show."""
    value: Backend = request.param
    return value


ASSET_TABLE = "granite_assets_asset"
#: The copy button's settings, from docs/conf.py.
PROMPT = re.compile(r"^(\$ |>>> |\.\.\. )(.*)")
CONTINUATION = "\\"
#: The database URL the pages' examples use; a reader, and these tests, put their own in its place.
EXAMPLE_URL = "sqlite:///app.db"
#: What the host-integration page says each database does with a key to a table that does not exist.
MISSING_TABLE_ERROR = {
    "sqlite": None,
    "postgresql": 'relation "granite_assets_asset" does not exist',
    "mysql": "Foreign key constraint is incorrectly formed",
}


@dataclass(frozen=True)
class Block:
    """A code block of a built page: caption (or ``None``), language, and what its copy button copies."""

    caption: str | None
    language: str
    text: str

    @property
    def key(self) -> str:
        """How the tests name the block: its caption, or else its first line."""
        return self.caption or self.text.splitlines()[0]


BLOCK = re.compile(
    r'(?:<span class="caption-text">(?P<caption>[^<]*)</span>(?:(?!<pre>).)*?)?'
    r'<div class="highlight-(?P<language>[\w-]+) notranslate">'
    r'<div class="highlight"><pre>(?P<code>.*?)</pre>',
    re.DOTALL,
)


def copied(text: str) -> str:
    """What sphinx-copybutton copies from a block whose text is ``text`` (its formatCopyText).

    Lines with a prompt lose it; when some line has one, the lines without (output) are left out,
    except blank ones and the lines a trailing backslash continues. One final newline is dropped.
    """
    lines: list[str] = []
    prompted = False
    continued = False
    for line in text.split("\n"):
        match = PROMPT.match(line)
        if match or continued:
            prompted = prompted or bool(match)
            lines.append(match.group(2) if match else line)
            continued = line.endswith(CONTINUATION)
        elif line.strip() == "":
            lines.append(line)
    result = "\n".join(lines) if prompted else text
    return result[:-1] if result.endswith("\n") else result


def blocks_of(page: Path) -> list[Block]:
    """The code blocks of a built page, in order, as their copy buttons copy them."""
    found = []
    for match in BLOCK.finditer(page.read_text(encoding="utf-8")):
        text = html.unescape(re.sub(r"<[^>]+>", "", match.group("code")))
        caption = html.unescape(match.group("caption")) if match.group("caption") else None
        found.append(Block(caption, match.group("language"), copied(text)))
    return found


@pytest.fixture(scope="session")
def site(docs_site: Path) -> Path:
    """The HTML site, as ``make docs`` builds it (once per run: see ``docs_site`` in conftest.py)."""
    return docs_site


@pytest.fixture(scope="module")
def pages(site: Path) -> dict[str, list[Block]]:
    """The blocks of the three pages whose examples run here, by page."""
    return {name: blocks_of(site / f"{name}.html") for name in ("install", "migrations", "host-integration")}


def one(blocks: list[Block], key: str) -> Block:
    """The one block whose key (caption, or else first line) starts with ``key``."""
    (block,) = [block for block in blocks if block.key.startswith(key)]
    return block


@pytest.fixture
def asset_release(tmp_path: Path) -> Path:
    """A copy of the installed package whose release adds ``granite_assets_asset`` in revision 0002.

    Returns the folder to put first on ``PYTHONPATH``.
    """
    site_folder = tmp_path / "release"
    package = Path(granite_assets.__file__).parent
    shutil.copytree(package, site_folder / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    (environment,) = [p.parent for p in (site_folder / package.name).rglob("revisions.json")]
    add_revision(
        environment,
        "0002",
        "0001",
        f'op.create_table("{ASSET_TABLE}", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("name", sa.String(100)))',
        f'op.drop_table("{ASSET_TABLE}")',
        message="add the asset table",
    )
    return site_folder


def url_of(database: Database) -> str:
    """The database's URL, password included, for ``alembic.ini`` and the environment."""
    return database.url_string


def shell(
    cwd: Path,
    script: str,
    database: Database,
    release: Path | None = None,
    *,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` as a reader pastes it into bash in ``cwd``, stopping at the first failure.

    ``PATH`` starts with this test's virtual environment (``python``, ``alembic``,
    ``granite-assets``, ``flask``); both database variables name ``database``; ``release``, when
    given, is put first on ``PYTHONPATH`` so that its copy of granite-assets is the one imported.
    """
    environment = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    environment.pop("PYTHONPATH", None)
    url = url_of(database)
    environment.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "")]),
        DATABASE_URL=url,
        GRANITE_ASSETS_DATABASE_URL=url,
        **({"PYTHONPATH": str(release)} if release else {}),
        **(env or {}),
    )
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


def succeeds(result: subprocess.CompletedProcess[str]) -> str:
    """The output of a command that must exit with 0; fail showing it otherwise."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{result.args[-1]!r} exited {result.returncode}:\n{output}"
    return output


def write(root: Path, block: Block) -> Path:
    """Write a block where its caption says, under ``root``."""
    assert block.caption, f"{block.key!r} names no file"
    path = root / block.caption
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(block.text + "\n", encoding="utf-8")
    return path


def new_host(root: Path, database: Database, blocks: list[Block], *files: str) -> Path:
    """A host made by ``alembic init migrations``, ``alembic.ini`` naming the database, with ``files``."""
    root.mkdir(parents=True)
    succeeds(shell(root, "alembic init migrations", database))
    ini = root / "alembic.ini"
    url = url_of(database).replace("%", "%%")
    lines = [
        f"sqlalchemy.url = {url}" if s.startswith("sqlalchemy.url") else s
        for s in ini.read_text().splitlines()
    ]
    ini.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "myapp").mkdir()
    (root / "myapp" / "__init__.py").write_text("", encoding="utf-8")
    for caption in files:
        write(root, one(blocks, caption))
    return root


def foreign_keys(database: Database, table: str) -> list[tuple[str, list[str]]]:
    """The table's foreign keys, as (referred table, constrained columns)."""
    engine = create_engine(database.url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return [
                (fk["referred_table"], fk["constrained_columns"])
                for fk in inspect(connection).get_foreign_keys(table)
            ]
    finally:
        engine.dispose()


def same_words(page_text: str, output: str) -> bool:
    """Whether ``output`` holds the page's text, whatever the line breaks."""
    return " ".join(page_text.split()) in " ".join(output.split())


@pytest.fixture
def second_database(database: Database, tmp_path: Path) -> Iterator[Database]:
    """Another database on the same backend, created for this test alone."""
    folder = tmp_path / "second"
    folder.mkdir()
    with fresh_database(database.backend, folder) as db:
        yield db


HOST_FILES = ("migrations/env.py", "myapp/models.py")
CONSOLE = "granite-assets db upgrade"
REVISION = "migrations/versions/3f2a1c9d8e7b_add_orders.py"
DEPLOY = "scripts/migrate.py"
BEHIND = "granite_assets.migrations.DatabaseBehindError: This migration needs granite-assets"
UNKNOWN = "granite-assets could not migrate the database: require_revision() was given '0002',"


def test_autogenerate_example_writes_the_key_on_a_release_with_the_table(
    pages: dict[str, list[Block]], database: Database, tmp_path: Path, asset_release: Path
) -> None:
    """env.py and models as shown, then the console block: the key is written and created, check passes."""
    blocks = pages["host-integration"]
    host = new_host(tmp_path / "host", database, blocks, *HOST_FILES)

    output = succeeds(shell(host, one(blocks, CONSOLE).text, database, asset_release))

    assert "No new upgrade operations detected." in output
    (revision,) = (host / "migrations" / "versions").glob("*_add_orders.py")
    source = revision.read_text(encoding="utf-8")
    assert "op.create_table('orders'," in source
    assert [line.strip() for line in source.splitlines() if "granite_assets" in line] == [
        f"sa.ForeignKeyConstraint(['asset_id'], ['{ASSET_TABLE}.id'], ),"
    ]
    assert foreign_keys(database, "orders") == [(ASSET_TABLE, ["asset_id"])]


def test_deploy_example_creates_the_key_on_a_release_with_the_table(
    pages: dict[str, list[Block]],
    database: Database,
    second_database: Database,
    tmp_path: Path,
    asset_release: Path,
) -> None:
    """The page's revision, run by the migrations page's Makefile, then the script: key created, rerun no-op.

    On a database granite-assets never migrated, the revision stops with the message the page shows.
    """
    blocks = pages["host-integration"]
    host = new_host(tmp_path / "host", database, blocks, *HOST_FILES, REVISION, DEPLOY)
    write(host, one(pages["migrations"], "Makefile"))

    first = succeeds(shell(host, "make migrate", database, asset_release))
    again = succeeds(shell(host, "python scripts/migrate.py", database, asset_release))

    assert "granite-assets is at revision 0002" in first
    assert again.splitlines()[0] == "granite-assets is at revision 0002"
    assert "Running upgrade" not in again
    assert foreign_keys(database, "orders") == [(ASSET_TABLE, ["asset_id"])]
    assert "No new upgrade operations detected." in succeeds(
        shell(host, "alembic check", database, asset_release)
    )

    behind = tmp_path / "behind"
    new_host(behind, second_database, blocks, *HOST_FILES, REVISION)
    result = shell(behind, "alembic upgrade head", second_database, asset_release)
    expected = one(blocks, BEHIND).text
    expected = expected.replace(EXAMPLE_URL, second_database.url.render_as_string())
    assert result.returncode == 1
    assert same_words(expected, result.stderr), result.stderr
    assert "orders" not in second_database.table_names()


def test_deploy_example_stops_before_any_change_with_this_release(
    pages: dict[str, list[Block]], database: Database, tmp_path: Path
) -> None:
    """With this release the page's revision stops at require_revision, as the page says: nothing created."""
    blocks = pages["host-integration"]
    host = new_host(tmp_path / "host", database, blocks, *HOST_FILES, REVISION, DEPLOY)

    result = shell(host, "python scripts/migrate.py", database)

    expected = one(blocks, UNKNOWN).text
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"granite-assets is at revision {head_revision()}"]
    assert same_words(expected, result.stderr), result.stderr
    assert "orders" not in database.table_names()


def test_autogenerate_example_meets_the_missing_table_with_this_release(
    pages: dict[str, list[Block]], database: Database, tmp_path: Path
) -> None:
    """With this release the console block fails on PostgreSQL and MariaDB as the page says; not on SQLite."""
    blocks = pages["host-integration"]
    host = new_host(tmp_path / "host", database, blocks, *HOST_FILES)

    result = shell(host, one(blocks, CONSOLE).text, database)

    error = MISSING_TABLE_ERROR[database.backend.name]
    if error is None:
        succeeds(result)
        assert foreign_keys(database, "orders") == [(ASSET_TABLE, ["asset_id"])]
    else:
        assert result.returncode != 0
        assert error in result.stderr, result.stderr
        assert "orders" not in database.table_names()
    page = (DOCS / "host-integration.rst").read_text(encoding="utf-8")
    assert all(f"``{said}``" in page for said in MISSING_TABLE_ERROR.values() if said)


FLASK = "from flask import Flask"


def flask_app(block: Block, database: Database) -> str:
    """The Flask example; on a server, with its URL in place of the page's, as a reader puts theirs."""
    assert block.text.count(f'"{EXAMPLE_URL}"') == 1
    if database.backend.name == "sqlite":
        return block.text
    return block.text.replace(f'"{EXAMPLE_URL}"', repr(url_of(database)).replace("'", '"'))


def test_flask_example_migrates_the_database_flask_uses(
    pages: dict[str, list[Block]], database: Database, tmp_path: Path
) -> None:
    """app.py as shown, under flask db init, migrate, upgrade and check: granite-assets migrates the app DB.

    On SQLite that is ``instance/app.db``, and no ``app.db`` appears in the current folder.
    """
    host = tmp_path / "host"
    host.mkdir()
    (host / "app.py").write_text(flask_app(one(pages["host-integration"], FLASK), database), encoding="utf-8")

    for command in ("init", "migrate -m start", "upgrade", "check"):
        succeeds(shell(host, f"flask --app app db {command}", database))

    # flask db migrate writes no revision when it finds nothing to do; without include_name it
    # would write one that drops granite-assets' version table.
    revisions = list((host / "migrations" / "versions").glob("*.py"))
    assert not any("granite_assets" in p.read_text(encoding="utf-8") for p in revisions)
    if database.backend.name == "sqlite":
        assert current_revision(f"sqlite:///{host / 'instance' / 'app.db'}") == head_revision()
        assert not (host / "app.db").exists()
    else:
        assert current_revision(database.url_string) == head_revision()


@pytest.mark.parametrize("backend", backend_params(BACKENDS[:1]))
def test_flask_example_with_the_uri_would_migrate_another_file(
    pages: dict[str, list[Block]], database: Database, tmp_path: Path
) -> None:
    """The control: given app.config's URI, not db.engine, granite-assets migrates ./app.db, not the app's."""
    block = one(pages["host-integration"], FLASK)
    assert block.text.count("upgrade_to_head(db.engine)") == 1
    (tmp_path / "app.py").write_text(
        block.text.replace(
            "upgrade_to_head(db.engine)", 'upgrade_to_head(app.config["SQLALCHEMY_DATABASE_URI"])'
        ),
        encoding="utf-8",
    )
    succeeds(shell(tmp_path, "flask --app app db init && flask --app app db upgrade", database))

    assert current_revision(f"sqlite:///{tmp_path / 'app.db'}") == head_revision()
    assert current_revision(f"sqlite:///{tmp_path / 'instance' / 'app.db'}") is None


def test_makefile_example_keeps_its_tab(pages: dict[str, list[Block]], tmp_path: Path) -> None:
    """The migrations page's Makefile, as copied, is one make reads: make -n prints the recipe."""
    block = one(pages["migrations"], "Makefile")
    assert "\n\tpython scripts/migrate.py" in block.text
    write(tmp_path, block)
    result = subprocess.run(
        ["make", "-n", "migrate"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "python scripts/migrate.py\n"


#: The install page's placeholders, and what this test puts in their place, as the page says to.
CLONE_PLACEHOLDER = "/path/to/granite-assets"
GIT_PLACEHOLDER = "git+https://git.example.com/acme/granite-assets.git@v0.2.0"
MIGRATE = (
    "import sys; from granite_assets.migrations import upgrade_to_head; print(upgrade_to_head(sys.argv[1]))"
)


@pytest.mark.packaging
@pytest.mark.heavy
def test_install_commands_install_a_granite_assets_that_migrates(
    pages: dict[str, list[Block]], tmp_path: Path
) -> None:
    """Each install command of the install page, run as copied, installs a granite-assets that migrates.

    The clone is a copy of this checkout committed and tagged ``v0.2.0`` (the page's tag); the
    page's placeholders (the clone's path, the Git address) are replaced as the page says. pip
    commands run in a fresh virtual environment each; uv commands in a fresh uv project each.
    """
    uv = find_uv()
    assert uv is not None, "make install puts uv in .tools/"
    clone = copy_project(tmp_path / "granite-assets")
    for git in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "release"], ["tag", "v0.2.0"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *git], cwd=clone, check=True
        )
    blocks = pages["install"]
    assert all(block.language == "console" for block in blocks)
    wheel_built = False
    # The pip that python3.11's venv brings refuses a git+file URL without a host: hence localhost.
    for number, block in enumerate(blocks):
        script = block.text.replace(CLONE_PLACEHOLDER, str(clone)).replace(
            GIT_PLACEHOLDER, f"git+file://localhost{clone}@v0.2.0"
        )
        if block.text.startswith("uv add"):
            where = tmp_path / f"uv-{number}"
            where.mkdir()
            succeeds(installer(where, f"{uv} init --bare --name host -q", uv))
            if "dist/" in script:
                shutil.copytree(clone / "dist", where / "dist")
            succeeds(installer(where, script, uv))
            python = where / ".venv" / "bin" / "python"
        else:
            venv = tmp_path / f"venv-{number}"
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            # The page's commands that build from a folder run in the clone (pip install ".[db]", the wheel).
            succeeds(installer(clone, script, uv, venv))
            python = venv / "bin" / "python"
            if "pip wheel" in script:
                wheel_built = True
                continue
        migrated = subprocess.run(
            [str(python), "-c", MIGRATE, f"sqlite:///{tmp_path / f'app-{number}.db'}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert migrated.stdout.strip() == head_revision(), f"{script}:\n{migrated.stderr}"
    assert wheel_built


def installer(cwd: Path, script: str, uv: str, venv: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run an install command in bash in ``cwd``, ``venv`` active (its python is ``python3``), uv on PATH."""
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "PYTHONPATH", "UV_PROJECT_ENVIRONMENT"}
    }
    path = [str(Path(uv).parent), environment.get("PATH", "")]
    if venv is not None:
        path.insert(0, str(venv / "bin"))
        environment["VIRTUAL_ENV"] = str(venv)
    environment.update(PATH=os.pathsep.join(path), UV_PYTHON=sys.executable)
    # Not compiling what pip installs saves a second or two an install, and changes nothing it installs.
    environment.update(PIP_NO_COMPILE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


#: A SQLite database an example names, which a server backend replaces with a database of its own.
EXAMPLE_DATABASE = re.compile(r'"sqlite(\+aiosqlite)?:///\w+\.db"')
#: The migrations page's Python blocks not run here, with the reason.
NOT_RUN: dict[str, str] = {}
#: The FastAPI lifespan block, its server's URL, and what starts and stops the app it defines.
LIFESPAN = "from contextlib import asynccontextmanager"
LIFESPAN_URL = '"postgresql+asyncpg://app@db.internal/app"'
LIFESPAN_RUN = """

import asyncio


async def start_and_stop() -> None:
    async with app.router.lifespan_context(app):
        print("started")


asyncio.run(start_and_stop())
"""
#: The migrations page's Python blocks that name a SQLite URL only to convert it: run as they stand.
NO_DATABASE = {"from granite_assets.migrations import to_sync_url"}


@pytest.mark.heavy
def test_migrations_page_examples_print_what_the_page_shows(
    pages: dict[str, list[Block]], database: Database, tmp_path: Path
) -> None:
    """Each Python example of the migrations page, run alone as copied, prints the output shown after it.

    On a server, each SQLite file an example names becomes a database of its own on that server,
    through the async driver where the example uses aiosqlite. On MariaDB the example that calls
    upgrade_to_head() inside a transaction raises UnsupportedConnectionError, as the page says.
    """
    blocks = pages["migrations"]
    ran = 0
    for number, block in enumerate(blocks):
        if block.language != "python" or block.key in NOT_RUN:
            continue
        shown = blocks[number + 1].text if blocks[number + 1].language == "none" else ""
        folder = tmp_path / f"example-{number}"
        folder.mkdir()
        with ExitStack() as stack:
            script = block.text
            if block.key == LIFESPAN:  # the app's database, through the backend's async driver
                async_url = database.with_driver(ASYNC_DRIVERS[database.backend.name])
                script = script.replace(LIFESPAN_URL, repr(async_url.render_as_string(hide_password=False)))
                script += LIFESPAN_RUN
                shown = "started"
            elif database.backend.name != "sqlite" and block.key not in NO_DATABASE:
                for literal in sorted({m.group(0) for m in EXAMPLE_DATABASE.finditer(block.text)}):
                    db = stack.enter_context(fresh_database(database.backend, folder))
                    url = (
                        db.with_driver(ASYNC_DRIVERS[db.backend.name]) if "+aiosqlite" in literal else db.url
                    )
                    script = script.replace(literal, repr(url.render_as_string(hide_password=False)))
            result = subprocess.run(
                [sys.executable, "-c", script], cwd=folder, capture_output=True, text=True, check=False
            )
        ran += 1
        if database.backend.name == "mysql" and "transaction = connection.begin()" in script:
            assert result.returncode == 1, result.stdout + result.stderr
            assert "granite_assets.migrations.UnsupportedConnectionError" in result.stderr
            continue
        assert result.returncode == 0, f"{script}\n{result.stderr}"
        assert result.stdout.strip() == shown.strip(), script
        if block.key == LIFESPAN:
            assert current_revision(database.url) == head_revision()
    assert ran == len([b for b in blocks if b.language == "python"]) - len(NOT_RUN)


#: Every block of the three pages, by page and key, and the test here that runs (or compares) it.
RUN_BY = {
    "host-integration": {
        "migrations/env.py": "every host-integration test",
        CONSOLE: "test_autogenerate_example_*",
        "from granite_assets.migrations import include_name as granite_assets_include_name": "this test",
        "orders True": "this test (its output)",
        FLASK: "test_flask_example_*",
        DEPLOY: "test_deploy_example_*",
        "myapp/models.py": "every host-integration test",
        REVISION: "test_deploy_example_*",
        BEHIND: "test_deploy_example_creates_the_key_on_a_release_with_the_table (output)",
        UNKNOWN: "test_deploy_example_stops_before_any_change_with_this_release (output)",
        "if config.config_file_name is not None:": "this test (a part of env.py)",
    },
    "migrations": {
        DEPLOY: "test_deploy_example_* (the host-integration page's script)",
        "Makefile": "test_makefile_example_keeps_its_tab, test_deploy_example_creates_*",
    },
}


def test_every_block_of_the_three_pages_is_run_here(pages: dict[str, list[Block]], tmp_path: Path) -> None:
    """No block of the three pages goes untested: a new block needs a test here, or this fails.

    The install page's blocks all run in test_install_commands_*, the migrations page's Python
    blocks and their output in test_migrations_page_examples_* (all but NOT_RUN); the rest are
    named in RUN_BY. The blocks this test runs itself are run here.
    """
    host = pages["host-integration"]
    assert {block.key for block in host} == set(RUN_BY["host-integration"])
    migrations = [b for b in pages["migrations"] if b.language not in {"python", "none"}]
    assert {block.key for block in migrations} == set(RUN_BY["migrations"])
    assert one(pages["migrations"], DEPLOY).text == one(host, DEPLOY).text
    assert all(block.language == "console" for block in pages["install"])

    assert "if config.config_file_name is not None:\n" in one(host, "migrations/env.py").text
    assert one(host, "if config.config_file_name").text in one(host, "migrations/env.py").text
    filter_block = one(host, "from granite_assets.migrations import include_name as")
    result = subprocess.run(
        [sys.executable, "-c", filter_block.text], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == one(host, "orders True").text.strip()
