"""Run the test suite across the support matrix, each combination in its own virtual environment.

- ``--python 3.12`` (repeatable): the suite on that Python, with the newest dependencies, in
  ``.venv-py3.12``. Interpreters come from pyenv (``$PYENV_ROOT/versions/3.12.*``) or ``PATH``;
  none is downloaded.
- ``--lowest``: the suite on this Python with the lowest ``alembic`` and ``sqlalchemy`` that
  pyproject.toml's ``db`` extra allows (``uv pip install --resolution lowest-direct``), in
  ``.venv-lowest``; the versions installed are checked against the declared lower bounds. It
  runs what those versions can change, the database-facing tests: the tests marked ``docs``,
  ``packaging``, ``makefile`` or ``lint`` (markers registered in pyproject.toml) are deselected
  (:data:`NOT_IN_LOWEST`), combined with any ``-m`` given after ``--``.

The project is installed editable with the ``db`` extra and the ``dev`` group; the main ``.venv``
is never touched. Arguments after ``--`` go to pytest. Exits non-zero when any run fails, after
running them all.

Usage::

    make test-matrix                  # 3.11, 3.12, 3.13
    make test-lowest PYTEST_ARGS="-m 'not slow'"   # runs -m "(not slow) and not (docs or ...)"
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The packages whose lowest declared versions the --lowest run installs.
LOWEST_PACKAGES = ("alembic", "sqlalchemy")
#: Compiled at install, as make install does: the suite starts hundreds of Python processes, which
#: would each compile SQLAlchemy and Alembic again where PYTHONDONTWRITEBYTECODE is set.
INSTALL_OPTIONS = ("--quiet", "--compile-bytecode")
#: The markers of tests that the versions of alembic and SQLAlchemy cannot change: the docs, the
#: wheel and installs, the Makefile's targets (which use the main .venv anyway), and ruff and mypy
#: over generated code. The --lowest run deselects them; the main run has run them already.
NOT_IN_LOWEST = "docs or packaging or makefile or lint"


def declared_lower_bounds(pyproject: Path) -> dict[str, str]:
    """The ``>=`` lower bound of each of :data:`LOWEST_PACKAGES` in the ``db`` extra."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    bounds = {}
    for requirement in data["project"]["optional-dependencies"]["db"]:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)\s*", requirement)
        if match and match.group(1).lower() in LOWEST_PACKAGES:
            bounds[match.group(1).lower()] = match.group(2)
    missing = set(LOWEST_PACKAGES) - set(bounds)
    if missing:
        raise SystemExit(
            f"pyproject.toml's db extra declares no '>=' lower bound for {', '.join(sorted(missing))}"
        )
    return bounds


def find_python(version: str) -> Path:
    """The newest pyenv interpreter of ``version`` (``3.12``), else ``python3.12`` on ``PATH``."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(
        (p for p in pyenv.glob(f"{version}.*") if re.fullmatch(rf"{re.escape(version)}\.\d+", p.name)),
        key=lambda p: int(p.name.rsplit(".", 1)[1]),
    )
    if candidates and (candidates[-1] / "bin" / "python").exists():
        return candidates[-1] / "bin" / "python"
    found = shutil.which(f"python{version}")
    if found is None:
        raise SystemExit(
            f"No Python {version}: install it with pyenv (pyenv install {version}) or put it on PATH."
        )
    return Path(found)


def uv() -> str:
    """The uv that ``make install`` puts in ``.tools/``, or one on ``PATH``."""
    bundled = ROOT / ".tools" / "bin" / "uv"
    found = str(bundled) if bundled.exists() else shutil.which("uv")
    if found is None:
        raise SystemExit("uv is missing: run make install first.")
    return found


def call(*args: str | Path) -> None:
    """Run a command in the project root, showing it; stop on failure."""
    print("+", " ".join(map(str, args)), flush=True)
    subprocess.run(
        [str(a) for a in args], cwd=ROOT, check=True, env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    )


def create_venv(venv: Path, python: Path | str) -> Path:
    """A new virtual environment at ``venv`` (replacing any old one); return its python."""
    call(uv(), "venv", "--quiet", "--clear", "--python", python, venv)
    return venv / "bin" / "python"


def installed_version(python: Path, package: str) -> str:
    """The version of ``package`` installed for ``python``."""
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def prepare_newest(version: str) -> Path:
    """``.venv-py<version>`` with the newest dependencies; return its python."""
    python = create_venv(ROOT / f".venv-py{version}", find_python(version))
    call(uv(), "pip", "install", *INSTALL_OPTIONS, "--python", python, "-e", ".[db]", "--group", "dev")
    return python


def prepare_lowest() -> Path:
    """``.venv-lowest`` with the lowest declared alembic and sqlalchemy; return its python."""
    bounds = declared_lower_bounds(ROOT / "pyproject.toml")
    python = create_venv(ROOT / ".venv-lowest", sys.executable)
    # The db extra first, at its lowest; the dev tools after, which keep what already satisfies them.
    call(
        uv(),
        "pip",
        "install",
        *INSTALL_OPTIONS,
        "--python",
        python,
        "--resolution",
        "lowest-direct",
        "-e",
        ".[db]",
    )
    call(uv(), "pip", "install", *INSTALL_OPTIONS, "--python", python, "--group", "dev")
    for package, bound in bounds.items():
        have = installed_version(python, package)
        if have != bound:
            raise SystemExit(f".venv-lowest has {package} {have}, not the declared lower bound {bound}.")
        print(f"{package} {have} (the declared lower bound)")
    return python


def lowest_pytest_args(pytest_args: list[str]) -> list[str]:
    """``pytest_args`` for the --lowest run: the :data:`NOT_IN_LOWEST` tests deselected.

    A ``-m EXPRESSION`` (or ``-mEXPRESSION``) among them is kept, and combined with the
    deselection, since pytest would only honour the last ``-m``.
    """
    rest: list[str] = []
    expressions: list[str] = []
    arguments = iter(pytest_args)
    for argument in arguments:
        if argument == "-m":
            expressions.append(next(arguments, ""))
        elif argument.startswith("-m"):
            expressions.append(argument[2:])
        else:
            rest.append(argument)
    selection = " and ".join([*(f"({e})" for e in expressions if e.strip()), f"not ({NOT_IN_LOWEST})"])
    return [*rest, "-m", selection]


def main(argv: list[str] | None = None) -> int:
    """Prepare each environment and run pytest in it; return 1 if any run failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", default=[], metavar="X.Y", help="a Python to test on")
    parser.add_argument("--lowest", action="store_true", help="the lowest declared alembic and sqlalchemy")
    parser.add_argument("pytest_args", nargs="*", help="arguments for pytest (after --)")
    args = parser.parse_args(argv)
    if not args.python and not args.lowest:
        parser.error("name at least one --python X.Y, or --lowest")

    runs: list[tuple[str, Path, list[str]]] = [
        (f"Python {v}", prepare_newest(v), args.pytest_args) for v in args.python
    ]
    if args.lowest:
        runs.append(("lowest alembic and sqlalchemy", prepare_lowest(), lowest_pytest_args(args.pytest_args)))
    results = {}
    for label, python, pytest_args in runs:
        print(f"=== {label}: {python} -m pytest {shlex.join(pytest_args)}", flush=True)
        results[label] = subprocess.run(
            [str(python), "-m", "pytest", *pytest_args], check=False, cwd=ROOT
        ).returncode
    print("=== summary")
    for label, code in results.items():
        print(f"{label}: {'passed' if code == 0 else f'FAILED (pytest exit {code})'}")
    return 1 if any(results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
