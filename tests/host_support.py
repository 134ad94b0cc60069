"""Host applications with Alembic histories of their own, made the way their authors make them.

A host here is a folder made by ``alembic init`` (either template) or ``flask db init``, whose
``env.py`` is changed only as the host-integration page says (:func:`documented_env`), with the
host's models in ``myapp/models.py``. Alembic and Flask run in subprocesses, from the host's
folder, as a developer runs them from a shell.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from conftest import Database

DOCS_EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
#: The drivers an ``alembic init -t async`` host uses, by the sync driver of the test's backend.
ASYNC_DRIVER_FOR = {
    "pysqlite": "aiosqlite",
    "psycopg2": "asyncpg",
    "psycopg": "psycopg",
    "pymysql": "aiomysql",
}
#: A granite-assets table, created by the test revision ``0002``, that host models refer to.
ASSET_TABLE = "granite_assets_asset"


def documented_env(template: str) -> str:
    """``env.py`` as ``alembic init`` writes it, changed as the host-integration page says.

    The changes: import ``include_name`` and the host's models, keep the host's loggers alive in
    ``fileConfig``, set ``target_metadata``, and pass ``include_name`` to every
    ``context.configure()`` call, right after ``target_metadata``.
    """
    imports = "from granite_assets.migrations import include_name\nfrom myapp.models import Base\n"
    edits = [
        ("from alembic import context\n", f"from alembic import context\n\n{imports}"),
        (
            "fileConfig(config.config_file_name)",
            "fileConfig(config.config_file_name, disable_existing_loggers=False)",
        ),
        ("target_metadata = None\n", "target_metadata = Base.metadata\n"),
    ]
    for old, new in edits:
        assert template.count(old) == 1, f"alembic's template no longer has {old!r}"
        template = template.replace(old, new)
    # One line per argument where the template puts one per line; inline where it puts all on one.
    configured, count = re.subn(
        r"^( *)(.*)target_metadata=target_metadata(,?)$",
        r"\1\2target_metadata=target_metadata,\n\1include_name=include_name\3",
        template,
        flags=re.MULTILINE,
    )
    configured, inline = re.subn(
        r"target_metadata=target_metadata\)",
        "target_metadata=target_metadata, include_name=include_name)",
        configured,
    )
    assert count + inline == template.count("context.configure("), "a configure() call was left out"
    return configured


def run(cwd: Path, *args: str | Path, env: dict[str, str] | None = None, expect: int | None = 0) -> str:
    """Run a command in ``cwd`` as a developer would; return its output (stdout, then stderr)."""
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(cwd), **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    if expect is not None and result.returncode != expect:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {result.returncode}, not {expect}:\n{output}", pytrace=False
        )
    return output


def alembic(root: Path, *args: str, expect: int | None = 0) -> str:
    """Run the ``alembic`` command line in the host's folder."""
    return run(root, sys.executable, "-m", "alembic", *args, expect=expect)


def alembic_host(root: Path, url: str, *, template: str = "generic", filtered: bool = True) -> Path:
    """A host made with ``alembic init -t TEMPLATE migrations`` in ``root``, pointed at ``url``.

    Its ``env.py`` gets the documented changes, or (``filtered=False``) only the models, as a
    host that has not read the page has it.
    """
    root.mkdir(parents=True, exist_ok=True)
    # What `alembic init -t TEMPLATE migrations` does, without a process of its own.
    config = Config(str(root / "alembic.ini"), stdout=io.StringIO())
    command.init(config, str(root / "migrations"), template=template)
    env = root / "migrations" / "env.py"
    text = env.read_text(encoding="utf-8")
    if filtered:
        text = documented_env(text)
    else:
        text = text.replace(
            "from alembic import context\n", "from alembic import context\nfrom myapp.models import Base\n"
        )
        text = text.replace("target_metadata = None\n", "target_metadata = Base.metadata\n")
    env.write_text(text, encoding="utf-8")
    ini = root / "alembic.ini"
    lines = ini.read_text(encoding="utf-8").splitlines()
    lines = [
        f"sqlalchemy.url = {url.replace('%', '%%')}" if s.startswith("sqlalchemy.url") else s for s in lines
    ]
    ini.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def host_models(*, foreign_key: bool = False, flask: bool = False) -> str:
    """The host's ``myapp/models.py``: a table of its own, with a foreign key to a granite-assets table."""
    if flask:
        head = (
            "from flask_sqlalchemy import SQLAlchemy\n"
            "from sqlalchemy import Column, Integer, MetaData, Table\n\n"
            "db = SQLAlchemy()\n"
        )
        model = (
            "class Order(db.Model):\n"
            '    __tablename__ = "host_orders"\n'
            "    id = db.Column(db.Integer, primary_key=True)\n"
            "    note = db.Column(db.String(100))\n"
        )
        fk = "    asset_id = db.Column(db.Integer, db.ForeignKey(asset.c.id), nullable=False)\n"
    else:
        head = (
            "from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table\n"
            "from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column\n\n\n"
            "class Base(DeclarativeBase):\n"
            "    pass\n"
        )
        model = (
            "class Order(Base):\n"
            '    __tablename__ = "host_orders"\n'
            "    id: Mapped[int] = mapped_column(primary_key=True)\n"
            "    note: Mapped[str] = mapped_column(String(100))\n"
        )
        fk = "    asset_id: Mapped[int] = mapped_column(ForeignKey(asset.c.id))\n"
    if not foreign_key:
        return f"{head}\n\n{model}"
    reference = (
        "# granite-assets' tables, in a MetaData of their own: never in the host's target_metadata.\n"
        "granite_assets_tables = MetaData()\n"
        f'asset = Table("{ASSET_TABLE}", granite_assets_tables, Column("id", Integer, primary_key=True))\n'
    )
    return f"{head}\n\n{reference}\n\n{model}{fk}"


def write_models(root: Path, source: str) -> None:
    """Put the host's models in ``root/myapp/models.py``."""
    package = root / "myapp"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "models.py").write_text(source, encoding="utf-8")


def new_revision_files(root: Path) -> list[Path]:
    """The revision files of the host, oldest name first."""
    return sorted((root / "migrations" / "versions").glob("*.py"))


def async_url(database: Database) -> str:
    """The test database's URL with the async driver a host on ``alembic init -t async`` uses."""
    url = database.with_driver(ASYNC_DRIVER_FOR[database.backend.driver])
    return url.render_as_string(hide_password=False)
