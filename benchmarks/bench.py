"""Measure granite-assets' migration paths against the floor and against plain Alembic.

Every number is a median over repeated runs, and every ratio compares two things measured in
this same run, interleaved, so that the machine's speed and load cancel out. Nothing here is
ever asserted on: the output says whether each target is met, for a person to read.

    python benchmarks/bench.py                        # everything (make bench)
    python benchmarks/bench.py --quick --sizes 1 --backends sqlite
    python benchmarks/bench.py --sizes 1 --backends postgresql,mysql

On PostgreSQL and MariaDB it also measures what a blocked revision costs the host: while a
session of the host holds a transaction on a table, a revision alters it and a third session
queries it over and over; the table gives the longest wait of those queries, under plain Alembic
and under upgrade_to_head's default ddl_lock_timeout. That is a behaviour, measured once per
backend rather than a median: plain Alembic's wait is the blocker's life.

Each history size N is a temporary copy of the bundled environment holding N revisions (the
baseline and N-1 generated empty ones). Servers come from the same variables as the tests:
GRANITE_ASSETS_TEST_POSTGRESQL_URL and GRANITE_ASSETS_TEST_MYSQL_URL (admin URLs).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from pathlib import Path

from alembic import command
from sqlalchemy import URL, create_engine, make_url, text
from sqlalchemy.pool import NullPool

from granite_assets.migrations import _runner
from granite_assets.migrations._history import bundled_directory
from granite_assets.migrations._manifest import write_manifest
from granite_assets.migrations._names import VERSION_TABLE
from granite_assets.migrations._timeouts import DEFAULT_DDL_LOCK_TIMEOUT

TARGETS = {
    "noop_vs_floor": 1.5,
    "full_vs_alembic": 1.05,
    "cli_vs_alembic": 0.7,
}
SERVERS = {
    "postgresql": (
        "GRANITE_ASSETS_TEST_POSTGRESQL_URL",
        "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
    ),
    "mysql": ("GRANITE_ASSETS_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/"),
}
REVISION_TEMPLATE = '''"""generated revision {rev}"""

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""


def downgrade() -> None:
    """Revert this revision."""
'''

#: The table the blocked revision alters, and the revisions that make it and alter it.
BLOCKED_TABLE = "granite_assets_bench_item"
BLOCKED_REVISIONS = {
    "0002": (
        f'op.create_table("{BLOCKED_TABLE}", sa.Column("id", sa.Integer, primary_key=True))\n'
        f'    op.execute("INSERT INTO {BLOCKED_TABLE} (id) VALUES (1)")'
    ),
    "0003": f'op.add_column("{BLOCKED_TABLE}", sa.Column("note", sa.String(40), nullable=True))',
}
BLOCKED_REVISION_TEMPLATE = '''"""bench revision {rev}"""

import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    {body}


def downgrade() -> None:
    """Revert this revision."""
'''
#: How long the host's blocking transaction lives: well past the default ddl_lock_timeout.
BLOCKER_LIFE = 8.0
QUICK_BLOCKER_LIFE = 4.0
#: The longest a host query may wait under the default bound, with room for the query itself.
WAIT_TARGET = DEFAULT_DDL_LOCK_TIMEOUT + 0.5

# Runs the CLI against a copy of the environment instead of the bundled one.
CLI_ON_COPY = (
    "import sys; from pathlib import Path; import granite_assets.migrations as m;"
    "m.bundled_directory = lambda: Path(sys.argv[1]);"
    "from granite_assets._cli import main; sys.exit(main(sys.argv[2:]))"
)


@dataclass(frozen=True)
class Options:
    """What to measure and how often."""

    backends: list[str]
    sizes: list[int]
    repeat: int
    full_repeat: int
    process_repeat: int
    quick: bool = False


def median_ms(samples: list[float]) -> float:
    """The median of ``samples`` (seconds), in milliseconds."""
    return statistics.median(samples) * 1000


def interleaved(fns: dict[str, Callable[[], object]], repeat: int, warmup: int = 3) -> dict[str, float]:
    """Time each function ``repeat`` times, taking turns, and return the medians in ms."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: median_ms(values) for name, values in samples.items()}


def make_environment(size: int, parent: Path) -> Path:
    """A copy of the bundled environment whose history holds ``size`` revisions."""
    directory = parent / f"env-{size}"
    shutil.copytree(bundled_directory(), directory, ignore=shutil.ignore_patterns("__pycache__"))
    down = "0001"
    for number in range(2, size + 1):
        rev = f"{number:04d}"
        (directory / "versions" / f"{rev}_generated.py").write_text(
            REVISION_TEMPLATE.format(rev=rev, down=down)
        )
        down = rev
    write_manifest(directory)
    return directory


class Server:
    """Creates and drops databases on one backend."""

    def __init__(self, backend: str, scratch: Path) -> None:
        self.backend = backend
        self.scratch = scratch
        self.admin: URL | None = None
        if backend in SERVERS:
            variable, default = SERVERS[backend]
            self.admin = make_url(os.environ.get(variable, default))

    @contextmanager
    def database(self) -> Iterator[str]:
        """A new empty database's URL, dropped afterwards."""
        name = f"ga_bench_{uuid.uuid4().hex[:10]}"
        if self.admin is None:
            path = self.scratch / f"{name}.db"
            yield f"sqlite:///{path}"
            path.unlink(missing_ok=True)
            return
        self._admin(f"CREATE DATABASE {name}")
        try:
            yield self.admin.set(database=name).render_as_string(hide_password=False)
        finally:
            self._admin(f"DROP DATABASE {name}" + (" WITH (FORCE)" if self.backend == "postgresql" else ""))

    def _admin(self, statement: str) -> None:
        if self.admin is None:
            raise RuntimeError("SQLite needs no server")
        engine = create_engine(self.admin, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(statement))
        finally:
            engine.dispose()


def floor(url: str) -> None:
    """The least any no-op can cost: a fresh connection and one SELECT from the version table."""
    engine = create_engine(url)
    with engine.connect() as connection:
        connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()
    engine.dispose()


def plain_alembic(directory: Path, url: str, revision: str = "head") -> None:
    """Alembic's own ``command.upgrade(config, revision)`` on the same revisions and version table.

    Alembic bounds no wait for a table lock: a blocked ``ALTER`` waits as long as the server lets it.
    """
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            config = _runner.alembic_config(directory, connection)
            command.upgrade(config, revision)
            connection.commit()
    finally:
        engine.dispose()


def ours(directory: Path, url: str) -> None:
    """granite-assets' upgrade, as upgrade_to_head runs it."""
    _runner.upgrade(directory, url, 300)


def process_ms(argv: list[str], repeat: int, cwd: Path) -> float:
    """The median wall time of running ``argv`` as a whole process, in ms."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, cwd=cwd, capture_output=True)
        samples.append(time.perf_counter() - start)
    return median_ms(samples)


def interleaved_processes(commands: dict[str, list[str]], repeat: int, cwd: Path) -> dict[str, float]:
    """Like :func:`interleaved`, for whole processes."""
    for argv in commands.values():
        subprocess.run(argv, check=True, cwd=cwd, capture_output=True)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, check=True, cwd=cwd, capture_output=True)
            samples[name].append(time.perf_counter() - start)
    return {name: median_ms(values) for name, values in samples.items()}


def verdict(ratio: float, target: float) -> str:
    """``ok`` when ``ratio`` meets ``target``, else ``MISSED``."""
    return "ok" if ratio <= target else "MISSED"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """Print an reST simple table, readable in a terminal and includable in the docs."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    rule = "  ".join("=" * w for w in widths)
    print(f"\n{title}\n{'-' * len(title)}\n")
    print(rule)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(rule)
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(rule)


def machine() -> str:
    """One line describing where this ran."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLAlchemy {version('sqlalchemy')}, Alembic {version('alembic')}"
    )


def run(options: Options) -> None:
    """Measure everything ``options`` asks for and print the tables."""
    print(f"Machine: {machine()}")
    print(f"Medians of {options.repeat} in-process and {options.process_repeat} whole-process runs.")
    python = sys.executable
    noop_rows: list[list[str]] = []
    full_rows: list[list[str]] = []
    cli_rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="granite-assets-bench-") as tmp:
        scratch = Path(tmp)
        environments = {size: make_environment(size, scratch) for size in options.sizes}
        for backend in options.backends:
            server = Server(backend, scratch)
            for size, directory in environments.items():
                with server.database() as url:
                    ours(directory, url)
                    noop = interleaved(
                        {
                            "floor": partial(floor, url),
                            "ours": partial(ours, directory, url),
                            "alembic": partial(plain_alembic, directory, url),
                        },
                        options.repeat,
                    )
                    ratio = noop["ours"] / noop["floor"]
                    noop_rows.append(
                        [
                            backend,
                            str(size),
                            f"{noop['ours']:.2f}",
                            f"{noop['floor']:.2f}",
                            f"{ratio:.2f}x {verdict(ratio, TARGETS['noop_vs_floor'])}",
                            f"{noop['alembic']:.2f}",
                            f"{noop['alembic'] / noop['ours']:.1f}x",
                        ]
                    )
                    alembic_ini = directory / "alembic.ini"
                    cli = interleaved_processes(
                        {
                            "ours": [
                                python,
                                "-c",
                                CLI_ON_COPY,
                                str(directory),
                                "db",
                                "upgrade",
                                "--url",
                                url,
                            ],
                            "alembic": [
                                python,
                                "-m",
                                "alembic",
                                "-c",
                                str(alembic_ini),
                                "-x",
                                f"url={url}",
                                "upgrade",
                                "head",
                            ],
                        },
                        options.process_repeat,
                        scratch,
                    )
                    ratio = cli["ours"] / cli["alembic"]
                    cli_rows.append(
                        [
                            backend,
                            str(size),
                            f"{cli['ours']:.0f}",
                            f"{cli['alembic']:.0f}",
                            f"{ratio:.2f}x {verdict(ratio, TARGETS['cli_vs_alembic'])}",
                        ]
                    )
                # A full upgrade of a short history takes a few milliseconds, where a single slow
                # fsync shows: give it more turns. Long ones are slower but vary with the disk too.
                turns = options.full_repeat * (12 if size == 1 else 3 if size <= 100 else 2)
                full = full_upgrades(server, directory, turns)
                ratio = full["ours"] / full["alembic"]
                full_rows.append(
                    [
                        backend,
                        str(size),
                        f"{full['ours']:.1f}",
                        f"{full['alembic']:.1f}",
                        f"{ratio:.3f}x {verdict(ratio, TARGETS['full_vs_alembic'])}",
                    ]
                )
        imports = import_costs(python, options.process_repeat * 2, scratch)
    print_table(
        "No-op upgrade on a database at head (ms)",
        ["backend", "N", "upgrade_to_head", "floor", "vs floor (<=1.5x)", "plain Alembic", "Alembic/ours"],
        noop_rows,
    )
    print_table(
        "Full upgrade from an empty database (ms)",
        ["backend", "N", "upgrade_to_head", "plain Alembic", "ratio (<=1.05x)"],
        full_rows,
    )
    print_table(
        "Command line, no-op, whole process (ms)",
        ["backend", "N", "granite-assets db upgrade", "alembic upgrade head", "ratio (<=0.7x)"],
        cli_rows,
    )
    print_table(
        "Import cost (ms above a bare interpreter)",
        ["import", "ms", "imports SQLAlchemy or Alembic"],
        imports,
    )
    wait_rows = host_wait_rows(options)
    if wait_rows:
        print_table(
            "Longest host query wait behind a blocked revision (s)",
            ["backend", "blocker lived", "plain Alembic", "upgrade_to_head", f"bounded (<={WAIT_TARGET:g})"],
            wait_rows,
        )
    print(verdict_legend(options, noop_rows + full_rows + cli_rows + wait_rows))


def host_wait_rows(options: Options) -> list[list[str]]:
    """Per server backend, the host's longest query wait behind a blocked revision: no bound, the default."""
    life = QUICK_BLOCKER_LIFE if options.quick else BLOCKER_LIFE
    rows = []
    with tempfile.TemporaryDirectory(prefix="granite-assets-bench-") as tmp:
        scratch = Path(tmp)
        directory = blocked_environment(scratch)
        for backend in (b for b in options.backends if b in SERVERS):
            server = Server(backend, scratch)
            waits = {
                "alembic": host_wait(server, directory, partial(plain_alembic, directory), life),
                "ours": host_wait(server, directory, partial(ours, directory), life),
            }
            rows.append(
                [
                    backend,
                    f"{life:.1f}",
                    f"{waits['alembic']:.2f}",
                    f"{waits['ours']:.2f}",
                    "ok" if waits["ours"] <= WAIT_TARGET else "MISSED",
                ]
            )
    return rows


def blocked_environment(parent: Path) -> Path:
    """A copy of the bundled environment whose 0002 makes a table with a row and whose 0003 alters it."""
    directory = parent / "env-blocked"
    shutil.copytree(bundled_directory(), directory, ignore=shutil.ignore_patterns("__pycache__"))
    down = "0001"
    for rev, body in BLOCKED_REVISIONS.items():
        (directory / "versions" / f"{rev}_bench.py").write_text(
            BLOCKED_REVISION_TEMPLATE.format(rev=rev, down=down, body=body)
        )
        down = rev
    write_manifest(directory)
    return directory


def host_wait(server: Server, directory: Path, migrate: Callable[[str], object], life: float) -> float:
    """The host's longest query on the table while ``migrate`` runs 0003 behind a blocker of ``life`` s."""
    with server.database() as url:
        plain_alembic(directory, url, "0002")
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as blocker:
                blocker.execute(text(f"SELECT * FROM {BLOCKED_TABLE}")).fetchall()
                ends = threading.Timer(life, blocker.rollback)
                with HostQueries(url) as host:
                    ends.start()
                    time.sleep(0.2)
                    migrate(url)
                ends.join()
        finally:
            engine.dispose()
        return host.longest


class HostQueries:
    """The host's traffic: a session querying the blocked table over and over, timing each query."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        engine = create_engine(self.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                while not self._stop.is_set():
                    started = time.perf_counter()
                    connection.execute(text(f"SELECT count(*) FROM {BLOCKED_TABLE}")).scalar()
                    self.longest = max(self.longest, time.perf_counter() - started)
                    time.sleep(0.02)
        finally:
            engine.dispose()

    def __enter__(self) -> HostQueries:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def verdict_legend(options: Options, rows: list[list[str]]) -> str:
    """What the verdicts mean, and what a MISSED one asks of the reader."""
    missed = sum("MISSED" in cell for row in rows for cell in row)
    lines = [
        "",
        "Each ratio, and each bounded wait, has a verdict: ok when it meets the target in its header,",
        "MISSED when it does not. The exit code is 0 either way: timings are for a person to read.",
    ]
    if options.quick:
        lines.append(
            "This was a --quick run (few repeats): it checks that the harness works, and its\n"
            "verdicts mean nothing; a MISSED here is noise. Run `make bench` for numbers."
        )
    elif missed:
        lines.append(
            f"{missed} cell(s) MISSED their target. Run `make bench` again on an idle machine;\n"
            "a cell that misses again is a slowdown to look into (docs/performance.rst)."
        )
    return "\n".join(lines)


def full_upgrades(server: Server, directory: Path, repeat: int) -> dict[str, float]:
    """Median time of a full upgrade from empty, ours and plain Alembic's, each on a new database.

    Both databases of a turn are created before either is timed, and the two take turns going
    first, so that neither always runs in the wake of a CREATE DATABASE.
    """
    samples: dict[str, list[float]] = {"ours": [], "alembic": []}
    runners: list[tuple[str, Callable[[str], None]]] = [
        ("ours", partial(ours, directory)),
        ("alembic", partial(plain_alembic, directory)),
    ]
    for turn in range(repeat + 1):
        with server.database() as first_url, server.database() as second_url:
            order = runners if turn % 2 else runners[::-1]
            for (name, fn), url in zip(order, (first_url, second_url), strict=True):
                start = time.perf_counter()
                fn(url)
                elapsed = time.perf_counter() - start
                if turn:  # the first turn warms caches and is not counted
                    samples[name].append(elapsed)
    return {name: median_ms(values) for name, values in samples.items()}


def import_costs(python: str, repeat: int, cwd: Path) -> list[list[str]]:
    """What importing the package and its migrations module costs over a bare interpreter."""
    probe = "import sys, {0}; print(any(m.split('.')[0] in ('sqlalchemy', 'alembic') for m in sys.modules))"
    times = interleaved_processes(
        {
            "bare": [python, "-c", "pass"],
            "granite_assets": [python, "-c", "import granite_assets"],
            "granite_assets.migrations": [python, "-c", "import granite_assets.migrations"],
            "sqlalchemy": [python, "-c", "import sqlalchemy"],
        },
        repeat,
        cwd,
    )
    rows = []
    for module in ("granite_assets", "granite_assets.migrations", "sqlalchemy"):
        heavy = subprocess.run(
            [python, "-c", probe.format(module)], check=True, capture_output=True, text=True, cwd=cwd
        ).stdout.strip()
        rows.append(
            [f"import {module}", f"{times[module] - times['bare']:.1f}", "yes" if heavy == "True" else "no"]
        )
    return rows


def parse_options(argv: list[str] | None = None) -> Options:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="sqlite,postgresql,mysql", help="comma-separated")
    parser.add_argument("--sizes", default="1,100,1000", help="history sizes N, comma-separated")
    parser.add_argument("--quick", action="store_true", help="few repeats: checks the harness, not the speed")
    args = parser.parse_args(argv)
    quick = args.quick
    return Options(
        backends=[b for b in args.backends.split(",") if b],
        sizes=[int(s) for s in args.sizes.split(",") if s],
        repeat=3 if quick else 51,
        full_repeat=1 if quick else 5,
        process_repeat=1 if quick else 9,
        quick=quick,
    )


if __name__ == "__main__":
    run(parse_options())
