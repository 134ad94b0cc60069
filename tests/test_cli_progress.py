"""What ``db upgrade`` and ``db downgrade`` show while they run: real processes, real databases."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BACKENDS, Database, add_revision, backend_params
from test_cli import WITH_ENVIRONMENT, granite_assets, timeless

from granite_assets import migrations
from granite_assets._cli import EXIT_MIGRATION_ERROR, EXIT_OK, URL_VARIABLE

pytestmark = pytest.mark.slow
BASELINE = migrations.revisions()[0]
THREE_BACKENDS = backend_params([b for b in BACKENDS if b.driver != "psycopg"])
SQLITE = backend_params([b for b in BACKENDS if b.name == "sqlite"])


@pytest.fixture
def four_revisions(environment_copy: Path) -> Path:
    """A release of four revisions, 0003 sleeping a second."""
    bodies = {"0002": "pass", "0003": "import time\ntime.sleep(1.0)", "0004": "pass"}
    for revision, parent, body in zip(bodies, ("0001", "0002", "0003"), bodies.values(), strict=True):
        add_revision(environment_copy, revision, parent, body, message=f"step {revision}")
    return environment_copy


def seconds_of(line: str) -> float:
    """The time a progress line ends with ("... in 1.02 s")."""
    found = re.search(r"(\d+\.\d+) s$", line)
    assert found, line
    return float(found.group(1))


@pytest.mark.parametrize("backend", THREE_BACKENDS, indirect=True)
def test_upgrade_and_downgrade_show_plan_each_revision_and_total(
    database: Database, four_revisions: Path, tmp_path: Path
) -> None:
    """Standard error shows the plan, each revision as it starts and ends with its time, then the total.

    Standard output holds the result only.
    """
    url = database.url_string
    run = granite_assets(tmp_path, "db", "upgrade", "--url", url, environment=four_revisions)
    assert run.code == EXIT_OK, run.err
    assert run.out == ["at 0004"]
    base = f"0001 ({BASELINE.message})"
    assert timeless(run.err_lines) == [
        f"Applying 4 revisions: {base}, 0002 (step 0002), 0003 (step 0003), 0004 (step 0004)",
        f"[1/4] Applying revision {base} ...",
        f"[1/4] Applied revision {base} in # s",
        "[2/4] Applying revision 0002 (step 0002) ...",
        "[2/4] Applied revision 0002 (step 0002) in # s",
        "[3/4] Applying revision 0003 (step 0003) ...",
        "[3/4] Applied revision 0003 (step 0003) in # s",
        "[4/4] Applying revision 0004 (step 0004) ...",
        "[4/4] Applied revision 0004 (step 0004) in # s",
        "Applied 4 revisions in # s",
    ]
    assert seconds_of(run.err_lines[6]) >= 1.0
    assert seconds_of(run.err_lines[-1]) >= seconds_of(run.err_lines[6])

    run = granite_assets(tmp_path, "db", "downgrade", "0002", "--url", url, environment=four_revisions)
    assert run.code == EXIT_OK, run.err
    assert run.out == ["at 0002"]
    assert timeless(run.err_lines) == [
        "Reverting 2 revisions: 0004 (step 0004), 0003 (step 0003)",
        "[1/2] Reverting revision 0004 (step 0004) ...",
        "[1/2] Reverted revision 0004 (step 0004) in # s",
        "[2/2] Reverting revision 0003 (step 0003) ...",
        "[2/2] Reverted revision 0003 (step 0003) in # s",
        "Reverted 2 revisions in # s",
    ]

    run = granite_assets(tmp_path, "db", "upgrade", "0003", "--url", url, environment=four_revisions)
    assert run.code == EXIT_OK, run.err
    assert run.out == ["at 0003"]
    assert timeless(run.err_lines) == [
        "Applying 1 revision: 0003 (step 0003)",
        "[1/1] Applying revision 0003 (step 0003) ...",
        "[1/1] Applied revision 0003 (step 0003) in # s",
        "Applied 1 revision in # s",
    ]


@pytest.mark.parametrize("backend", SQLITE, indirect=True)
def test_quiet_prints_nothing_on_success_and_the_error_on_failure(
    database: Database, four_revisions: Path, tmp_path: Path
) -> None:
    """--quiet prints nothing on standard error when all goes well, and only the error when not."""
    url = database.url_string
    run = granite_assets(tmp_path, "db", "upgrade", "--quiet", "--url", url, environment=four_revisions)
    assert (run.code, run.out, run.err) == (EXIT_OK, ["at 0004"], "")
    run = granite_assets(tmp_path, "db", "downgrade", "-q", "0001", "--url", url, environment=four_revisions)
    assert (run.code, run.out, run.err) == (EXIT_OK, ["at 0001"], "")
    add_revision(four_revisions, "0004", "0003", 'raise RuntimeError("0004 broke")', message="step 0004")
    run = granite_assets(tmp_path, "db", "upgrade", "-q", "--url", url, environment=four_revisions)
    assert run.code == EXIT_MIGRATION_ERROR
    assert run.err.startswith("error: ")
    assert "0004 broke" in run.err
    assert "Applying" not in run.err


@pytest.mark.parametrize("backend", SQLITE, indirect=True)
def test_a_failing_revision_is_shown_failed_before_the_error(
    database: Database, four_revisions: Path, tmp_path: Path
) -> None:
    """The revision that fails is shown failed, with its time, and no total follows."""
    add_revision(four_revisions, "0004", "0003", 'raise RuntimeError("0004 broke")', message="step 0004")
    run = granite_assets(tmp_path, "db", "upgrade", "--url", database.url_string, environment=four_revisions)
    assert run.code == EXIT_MIGRATION_ERROR
    assert run.out == []
    lines = timeless(run.err_lines)
    assert lines[-3:-1] == [
        "[4/4] Applying revision 0004 (step 0004) ...",
        "[4/4] Failed revision 0004 (step 0004) after # s",
    ]
    assert lines[-1].startswith("error: ")
    assert "0004 broke" in lines[-1]


@pytest.mark.parametrize("backend", SQLITE, indirect=True)
def test_sql_output_stays_pure_sql(database: Database, four_revisions: Path, tmp_path: Path) -> None:
    """upgrade --sql prints only SQL on standard output, and no progress anywhere: nothing runs."""
    database.execute("SELECT 1")  # the file exists (--sql reads its revision), and holds no revision yet
    run = granite_assets(
        tmp_path, "db", "upgrade", "--sql", "--url", database.url_string, environment=four_revisions
    )
    assert run.code == EXIT_OK, run.err
    assert run.err == ""
    sql = "\n".join(run.out)
    assert "-- Running upgrade 0003 -> 0004" in sql
    assert not re.search(r"Appl(y|ied)|\[\d+/\d+\]", sql)


def read_all(fd: int, limit: float = 120) -> bytes:
    """Everything written to the pty's other end until the process closes it."""
    chunks = []
    while select.select([fd], [], [], limit)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("backend", SQLITE, indirect=True)
def test_on_a_terminal_the_running_revision_shows_its_time_live(
    database: Database, four_revisions: Path, tmp_path: Path
) -> None:
    """On a terminal the running revision's line is redrawn with its time, then replaced by its result."""
    main, child = pty.openpty()
    env = {**os.environ, URL_VARIABLE: database.url_string}
    with subprocess.Popen(
        [sys.executable, "-c", WITH_ENVIRONMENT, str(four_revisions), "db", "upgrade"],
        stdout=subprocess.PIPE,
        stderr=child,
        env=env,
        cwd=tmp_path,
    ) as process:
        os.close(child)
        shown = read_all(main).decode()
        out, _ = process.communicate(timeout=120)
    os.close(main)
    assert process.returncode == EXIT_OK, shown
    assert out.decode().splitlines() == ["at 0004"]
    clear = "\r\x1b[K"
    # Redrawn while 0003 sleeps: at 0.5 s and 1.0 s, say; each draw is cleared before the next.
    live = re.findall(r"\[3/4\] Applying revision 0003 \(step 0003\) (\d+\.\d) s", shown)
    assert len(live) >= 2, repr(shown)
    assert max(float(s) for s in live) >= 0.5
    # What the terminal is left showing: each line as its last \r left it, no live line among them.
    screen = [line.rsplit(clear, 1)[-1] for line in shown.replace("\r\n", "\n").split("\n")]
    base = f"0001 ({BASELINE.message})"
    assert timeless(screen) == [
        f"Applying 4 revisions: {base}, 0002 (step 0002), 0003 (step 0003), 0004 (step 0004)",
        f"[1/4] Applied revision 0001 ({BASELINE.message}) in # s",
        "[2/4] Applied revision 0002 (step 0002) in # s",
        "[3/4] Applied revision 0003 (step 0003) in # s",
        "[4/4] Applied revision 0004 (step 0004) in # s",
        "Applied 4 revisions in # s",
        "",
    ]
