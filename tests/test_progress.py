"""Per-revision progress: the ``on_progress`` events and the INFO record of each revision."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from conftest import BACKENDS, Database, add_revision, backend_params
from support import version_rows

from granite_assets import migrations
from granite_assets.migrations import MigrationFailedError, MigrationProgress

# SQLite, PostgreSQL through psycopg2 and MariaDB: psycopg 3 adds nothing to what is reported.
pytestmark = pytest.mark.parametrize(
    "backend", backend_params([b for b in BACKENDS if b.driver != "psycopg"]), indirect=True
)
SLEEPER = "import time\ntime.sleep(1.0)"


@pytest.fixture
def four_revisions(environment_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A release of four revisions, 0003 sleeping a second, that the public functions run."""
    bodies = {"0002": "pass", "0003": SLEEPER, "0004": "pass"}
    for revision, parent, body in zip(bodies, ("0001", "0002", "0003"), bodies.values(), strict=True):
        add_revision(environment_copy, revision, parent, body, body, message=f"step {revision}")
    monkeypatch.setattr(migrations, "bundled_directory", lambda: environment_copy)
    return environment_copy


Seen = list[tuple[str, str, int, int]]


class Events(list[MigrationProgress]):
    """The events a callback received, as ``(status, revision, step)`` for easy comparison."""

    def __call__(self, event: MigrationProgress) -> None:
        self.append(event)

    @property
    def seen(self) -> Seen:
        return [(e.status, e.revision, e.step, e.steps) for e in self]


def each(revisions: list[str], statuses: tuple[str, ...] = ("started", "finished")) -> Seen:
    """The events expected for ``revisions`` run in that order, each reporting ``statuses``."""
    return [(s, r, n, len(revisions)) for n, r in enumerate(revisions, 1) for s in statuses]


@pytest.mark.usefixtures("four_revisions")
def test_each_revision_reports_start_and_finish(database: Database) -> None:
    """Each revision reports started, then finished with its time, in order, numbered n of m."""
    events = Events()
    assert migrations.upgrade_to_head(database.url_string, on_progress=events) == "0004"
    assert events.seen == each(["0001", "0002", "0003", "0004"])
    assert {e.direction for e in events} == {"upgrade"}
    assert [e.message for e in events][2:4] == ["step 0002", "step 0002"]
    assert all(e.elapsed is None for e in events if e.status == "started")
    elapsed = {e.revision: e.elapsed for e in events if e.status == "finished"}
    assert 1.0 <= (elapsed["0003"] or 0) < 30
    assert all(0 <= (elapsed[r] or -1) < 1.0 for r in ("0001", "0002", "0004"))


def test_a_failing_revision_reports_failed(database: Database, four_revisions: Path) -> None:
    """A revision that raises reports failed, with its time, and the run reports nothing after it."""
    add_revision(four_revisions, "0004", "0003", 'raise RuntimeError("0004 broke")', message="step 0004")
    events = Events()
    with pytest.raises(MigrationFailedError, match="0004 broke"):
        migrations.upgrade_to_head(database.url_string, on_progress=events)
    assert events.seen == [*each(["0001", "0002", "0003", "0004"])[:7], ("failed", "0004", 4, 4)]
    assert events[-1].elapsed is not None


@pytest.mark.usefixtures("four_revisions")
def test_downgrade_reports_direction_downgrade(database: Database) -> None:
    """A downgrade reports each reverted revision, newest first, with direction "downgrade"."""
    migrations.upgrade_to_head(database.url_string)
    events = Events()
    assert migrations.downgrade(database.url_string, "0002", on_progress=events) == "0002"
    assert events.seen == each(["0004", "0003"])
    assert {e.direction for e in events} == {"downgrade"}


@pytest.mark.usefixtures("four_revisions")
def test_at_head_the_callback_is_never_called(database: Database) -> None:
    """On a database at head (and for a downgrade with nothing to revert) the callback is not called."""
    migrations.upgrade_to_head(database.url_string)
    events = Events()
    assert migrations.upgrade_to_head(database.url_string, on_progress=events) == "0004"
    assert migrations.downgrade(database.url_string, "0004", on_progress=events) == "0004"
    assert events == []


@pytest.mark.usefixtures("four_revisions")
def test_each_revision_logs_one_info_record_with_fields(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Each applied revision logs one INFO record with its time, carrying the documented extra fields."""
    with caplog.at_level(logging.INFO, logger="granite_assets"):
        migrations.upgrade_to_head(database.url_string)
    records = [r for r in caplog.records if hasattr(r, "granite_assets_revision")]
    assert [r.getMessage().rsplit(" in ", 1)[0] for r in records] == [
        f"Applied revision 0001 ({migrations.revisions()[0].message})",
        "Applied revision 0002 (step 0002)",
        "Applied revision 0003 (step 0003)",
        "Applied revision 0004 (step 0004)",
    ]
    assert all(r.levelno == logging.INFO and r.getMessage().endswith(" s") for r in records)
    sleeper = records[2]
    assert sleeper.__dict__["granite_assets_elapsed"] >= 1.0
    assert {k: v for k, v in sleeper.__dict__.items() if k.startswith("granite_assets_")} == {
        "granite_assets_revision": "0003",
        "granite_assets_message": "step 0003",
        "granite_assets_direction": "upgrade",
        "granite_assets_step": 3,
        "granite_assets_steps": 4,
        "granite_assets_elapsed": sleeper.__dict__["granite_assets_elapsed"],
    }


class CallbackBrokeError(Exception):
    """What the test's callback raises."""


def raising_on(status: str, revision: str, events: Events) -> Events:
    """A callback that records events and raises CallbackBrokeError on ``status`` of ``revision``."""

    class Raising(Events):
        def __call__(self, event: MigrationProgress) -> None:
            events.append(event)
            if (event.status, event.revision) == (status, revision):
                raise CallbackBrokeError(f"{status} {revision}")

    return Raising()


@pytest.mark.parametrize("status", ["started", "finished"])
@pytest.mark.usefixtures("four_revisions")
def test_a_callback_exception_surfaces_between_revisions(database: Database, status: str) -> None:
    """The callback's own exception is raised as it is, and stops the run between two whole revisions.

    Raised on "started" of 0003 or "finished" of 0002, it leaves 0002 committed and nothing of 0003;
    on SQLite, whose run is one transaction, nothing at all.
    """
    events = Events()
    revision = "0003" if status == "started" else "0002"
    with pytest.raises(CallbackBrokeError, match=f"{status} {revision}"):
        migrations.upgrade_to_head(database.url_string, on_progress=raising_on(status, revision, events))
    assert events.seen[-1] == (status, revision, int(revision), 4)
    assert "failed" not in {e.status for e in events}
    expected = None if database.backend.name == "sqlite" else ["0002"]
    assert (version_rows(database) or None) == expected
    assert migrations.upgrade_to_head(database.url_string) == "0004"  # nothing half-done is in the way


def test_a_callback_exception_on_failed_is_logged(
    database: Database, four_revisions: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The callback raising on "failed" does not hide the migration's error: it is logged instead."""
    add_revision(four_revisions, "0002", "0001", 'raise RuntimeError("0002 broke")', message="step 0002")
    events = Events()
    with pytest.raises(MigrationFailedError, match="0002 broke"):
        migrations.upgrade_to_head(database.url_string, on_progress=raising_on("failed", "0002", events))
    assert events.seen[-1] == ("failed", "0002", 2, 4)
    assert any("on_progress callback raised" in r.getMessage() for r in caplog.records)


@pytest.fixture
def backend_sqlite_only(database: Database) -> Database:
    """Skip unless the test runs on SQLite."""
    if database.backend.name != "sqlite":
        pytest.skip("one backend is enough for the async entry point's plumbing")
    return database


@pytest.mark.usefixtures("four_revisions")
def test_async_entry_point_reports_too(backend_sqlite_only: Database) -> None:
    """upgrade_to_head_async passes on_progress through, for a sync URL run in a worker thread."""
    events = Events()
    url = backend_sqlite_only.url_string
    assert asyncio.run(migrations.upgrade_to_head_async(url, on_progress=events)) == "0004"
    assert events.seen == each(["0001", "0002", "0003", "0004"])
