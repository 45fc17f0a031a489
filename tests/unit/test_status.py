"""`camwatch status`: the report queries on a store filled through the Store API, the status
built from them (local days in the configured time zone), its JSON and its text, and the
read-only connection that never creates anything."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from camwatch import status
from camwatch.config import Config, parse_config
from camwatch.store import AlertCandidate, ImageState, NewImage, SkipKind, Store, report
from camwatch.store.readonly import NoDatabase, connect_readonly

ZONE = ZoneInfo("Pacific/Auckland")  # +13:00 in January: a local day is not the UTC day
NOW = datetime(2027, 1, 15, 21, 0, tzinfo=ZONE).timestamp()
MIDNIGHT = datetime(2027, 1, 15, tzinfo=ZONE).timestamp()  # today began
MONTH = datetime(2027, 1, 1, tzinfo=ZONE).timestamp()  # this month began
MIN = 60.0


class Clock:
    """A settable wall clock."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Filler:
    """Puts images into a store through its API, each at the time asked for."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.n = 0

    def _job(self, camera: str, at: float, path: str | None) -> Any:
        self.n += 1
        self.clock.now = at
        path = path or f"/cams/{camera}/{self.n:04d}.jpg"
        image = NewImage(camera, path, os.path.basename(path), 100 + self.n, self.n, at)
        assert self.store.add_pending([image]) == 1
        job = self.store.claim()
        assert job is not None
        return job

    def captioned(
        self,
        camera: str,
        at: float,
        tokens: int = 300,
        alerts: list[AlertCandidate] | None = None,
    ) -> None:
        job = self._job(camera, at, None)
        self.store.complete(
            job.id, f"{self.n:064x}", 100, 1, "a caption", (tokens - 10, 10, tokens), alerts or []
        )

    def failed(self, camera: str, at: float, reason: str, path: str | None = None) -> None:
        job = self._job(camera, at, path)
        self.store.finish(job.id, ImageState.FAILED, reason)

    def skipped(self, camera: str, at: float, kind: SkipKind) -> None:
        job = self._job(camera, at, None)
        self.store.finish(job.id, ImageState.SKIPPED, f"skipped: {kind}", kind=kind)

    def pending(self, camera: str, at: float) -> None:
        self.n += 1
        self.clock.now = at
        path = f"/cams/{camera}/{self.n:04d}.jpg"
        self.store.add_pending([NewImage(camera, path, os.path.basename(path), 1, self.n, at)])


def candidate(camera: str, targets: list[tuple[str, str]]) -> AlertCandidate:
    return AlertCandidate(
        event_id=f"ev-{camera}-{os.urandom(4).hex()}",
        rule="person-down",
        camera=camera,
        cooldown=0.0,
        targets=targets,
        body='{"rule": "person-down"}',
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def store(state_dir: Path, clock: Clock) -> Iterator[Store]:
    s = Store(state_dir, clock=clock)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def config(tmp_path: Path, state_dir: Path) -> Config:
    for name in ("front", "yard", "garage"):
        (tmp_path / "cams" / name).mkdir(parents=True)
    return parse_config(
        {
            "caption": {"api_key": "k"},
            "cameras": [
                {"name": name, "path": str(tmp_path / "cams" / name)}
                for name in ("front", "yard", "garage")
            ],
            "state_dir": str(state_dir),
            "timezone": "Pacific/Auckland",
            "webhooks": [{"name": "main", "url": "http://127.0.0.1:9/hook"}],
            "notify": [{"name": "phones", "urls": ["json://127.0.0.1:9/"]}],
        }
    )


def fill(store: Store, clock: Clock) -> None:
    """A month of a house: what the tests below count."""
    f = Filler(store, clock)
    # Last month, yesterday, and today (just after the local midnight, which is 11:00 UTC).
    f.captioned("front", MONTH - MIN, tokens=1000)
    f.captioned("front", MONTH + MIN, tokens=200)
    f.captioned("front", MIDNIGHT - MIN, tokens=100)
    f.captioned("front", MIDNIGHT + MIN, tokens=300)
    f.captioned("front", NOW - 30 * MIN, tokens=301, alerts=[candidate("front", TARGETS)])
    f.captioned("yard", NOW - 20 * MIN, tokens=302, alerts=[candidate("yard", TARGETS)])
    f.failed("front", MIDNIGHT - MIN, "yesterday's failure")
    f.failed("front", NOW - 10 * MIN, "caption API refused the image (HTTP 400)")
    f.failed("yard", NOW - 5 * MIN, "cannot read: Permission denied", "/cams/yard/\x1b[31m.jpg")
    f.skipped("front", NOW - 9 * MIN, SkipKind.TOO_LARGE)
    f.skipped("front", NOW - 8 * MIN, SkipKind.DUPLICATE)
    f.skipped("front", NOW - 7 * MIN, SkipKind.WAITING)  # handed back: not an outcome
    f.skipped("front", NOW - 7 * MIN, SkipKind.SUPERSEDED)  # another row has it
    f.skipped("shed", NOW - 6 * MIN, SkipKind.NO_CAMERA)  # a camera since removed
    f.pending("front", NOW - 2 * MIN)
    f.pending("yard", NOW - 1 * MIN)
    f._job("yard", NOW - 1 * MIN, None)  # being captioned
    # One alert refused for good by "main"; the other waits, as do both of "phones".
    clock.now = NOW - 3 * MIN
    first = store.due_alerts("webhook", "main")[0]
    store.dead_letter(first.id, "HTTP 410 Gone")
    clock.now = NOW


TARGETS = [("webhook", "main"), ("notify", "phones")]


@pytest.fixture
def db(store: Store, clock: Clock, state_dir: Path) -> Iterator[sqlite3.Connection]:
    fill(store, clock)
    connection = connect_readonly(state_dir)
    try:
        yield connection
    finally:
        connection.close()


# -- the queries ---------------------------------------------------------------------------------


def test_outcomes_since_counts_each_outcome_per_camera_with_its_tokens(
    db: sqlite3.Connection,
) -> None:
    counts = report.outcomes_since(db, MIDNIGHT)
    found = {(c.camera, c.outcome): (c.count, c.tokens) for c in counts}
    assert found == {
        ("front", "captioned"): (2, 601),
        ("front", "failed"): (1, 0),
        ("front", "skipped"): (1, 0),
        ("front", "deduped"): (1, 0),
        ("yard", "captioned"): (1, 302),
        ("yard", "failed"): (1, 0),
        ("shed", "skipped"): (1, 0),
    }


def test_tokens_since_the_local_day_and_month(db: sqlite3.Connection) -> None:
    assert report.tokens_since(db, MIDNIGHT) == 300 + 301 + 302
    assert report.tokens_since(db, MONTH) == 200 + 100 + 300 + 301 + 302


def test_last_image_queue_and_failures(db: sqlite3.Connection) -> None:
    assert report.last_image_at(db, "front") == NOW - 2 * MIN
    assert report.last_image_at(db, "yard") == NOW - 1 * MIN
    assert report.last_image_at(db, "garage") is None
    assert report.queue_depth(db) == 3  # two waiting, one being captioned
    failures = report.last_failures(db, limit=2)
    assert [(f.camera, f.reason, f.at) for f in failures] == [
        ("yard", "cannot read: Permission denied", NOW - 5 * MIN),
        ("front", "caption API refused the image (HTTP 400)", NOW - 10 * MIN),
    ]
    assert failures[0].path == "/cams/yard/\x1b[31m.jpg"
    assert len(report.last_failures(db)) == 3


def test_backlogs_and_dead_letters_per_target(db: sqlite3.Connection) -> None:
    assert [(b.kind, b.target, b.pending, b.oldest_at) for b in report.backlogs(db)] == [
        ("notify", "phones", 2, NOW - 30 * MIN),
        ("webhook", "main", 1, NOW - 20 * MIN),
    ]
    assert report.dead_letters(db) == [report.DeadLetters("webhook", "main", 1, "HTTP 410 Gone")]


def test_captions_since_for_replay(db: sqlite3.Connection) -> None:
    assert len(report.captions_since(db, MIDNIGHT)) == 3
    only = report.captions_since(db, MIDNIGHT, "yard")
    assert [(r.camera, r.captioned_at) for r in only] == [("yard", NOW - 20 * MIN)]


def test_the_queries_read_indexes_not_every_image(db: sqlite3.Connection) -> None:
    """A 100,000-image database answers in milliseconds only if no query reads every row of
    `images` (the day's counts once walked all of images_camera_detected to save a sort)."""
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    status.gather(parse_config_for_plans(), db, NOW, "db")
    report.captions_since(db, MIDNIGHT)
    db.set_trace_callback(None)
    plans = {}
    for sql in statements:
        if "images" not in sql or sql.startswith(("BEGIN", "ROLLBACK")):
            continue
        plans[sql] = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}")]
    assert plans
    for sql, details in plans.items():
        for detail in details:
            if detail.startswith("SCAN images"):
                # A walk of a covering index, or of the recent end of images_updated.
                assert "COVERING INDEX" in detail or "images_updated" in detail, (sql, details)
    day = next(d for sql, d in plans.items() if "GROUP BY" in sql and "images" in sql)
    assert any("SEARCH images USING INDEX images_updated" in d for d in day), day


def parse_config_for_plans() -> Config:
    return parse_config({"caption": {"api_key": "k"}, "cameras": [{"name": "front", "path": "/"}]})


# -- the status ----------------------------------------------------------------------------------


def test_status_json_has_the_contract_shape_and_the_numbers(
    db: sqlite3.Connection, config: Config
) -> None:
    got = status.to_json(status.gather(config, db, NOW, "/state/camwatch.db"))
    assert {"cameras", "queue", "failures", "outbox", "tokens"} <= set(got)
    assert got["as_of"] == "2027-01-15T21:00:00+13:00"
    front = got["cameras"]["front"]
    assert front == {
        "last_image_at": "2027-01-15T20:58:00+13:00",
        "today": {"captioned": 2, "skipped": 1, "failed": 1, "deduped": 1},
        "tokens_today": 601,
        "configured": True,
    }
    assert got["cameras"]["garage"] == {
        "last_image_at": None,
        "today": {"captioned": 0, "skipped": 0, "failed": 0, "deduped": 0},
        "tokens_today": 0,
        "configured": True,
    }
    assert got["cameras"]["shed"]["configured"] is False
    assert list(got["cameras"]) == ["front", "yard", "garage", "shed"]
    assert got["queue"] == 3
    assert got["failures"][0] == {
        "camera": "yard",
        "path": "/cams/yard/\x1b[31m.jpg",
        "reason": "cannot read: Permission denied",
        "at": "2027-01-15T20:55:00+13:00",
    }
    assert got["outbox"] == {
        "main": {"kind": "webhook", "pending": 1, "oldest_seconds": 1200.0, "configured": True},
        "phones": {"kind": "notify", "pending": 2, "oldest_seconds": 1800.0, "configured": True},
    }
    dead = {"main": {"kind": "webhook", "count": 1, "reason": "HTTP 410 Gone"}}
    assert got["dead_letters"] == dead
    assert got["tokens"] == {"today": 903, "month": 1203}


def test_a_target_name_shared_by_a_webhook_and_a_notify_target_is_keyed_by_kind() -> None:
    targets = [status.TargetStatus("webhook", "ops", 1), status.TargetStatus("notify", "ops")]
    empty = status.Status(NOW, ZONE, "db", [], targets=targets)
    assert set(status.to_json(empty)["outbox"]) == {"webhook:ops", "notify:ops"}


def test_nothing_yet_lists_every_camera_and_target_with_zeros(config: Config) -> None:
    got = status.to_json(status.nothing_yet(config, NOW))
    assert got["database"] is None
    assert set(got["cameras"]) == {"front", "yard", "garage"}
    assert got["cameras"]["yard"]["today"] == dict.fromkeys(report.OUTCOMES, 0)
    assert got["outbox"]["main"]["pending"] == 0
    assert got["tokens"] == {"today": 0, "month": 0}


def test_day_and_month_start_are_local_midnights() -> None:
    assert status.day_and_month_start(NOW, ZONE) == (MIDNIGHT, MONTH)
    # Just before the local midnight, it is still yesterday there (though the same UTC day).
    day, _ = status.day_and_month_start(MIDNIGHT - 1, ZONE)
    assert day == datetime(2027, 1, 14, tzinfo=ZONE).timestamp()


def test_text_aligns_its_columns_and_says_times_as_local_time_and_age(
    db: sqlite3.Connection, config: Config
) -> None:
    text = status.render(status.gather(config, db, NOW, "/state/camwatch.db"))
    lines = text.splitlines()
    assert lines[0] == "camwatch status at 2027-01-15 21:00:00 NZDT, from /state/camwatch.db"
    table = lines[2:7]
    assert table[0].split() == [
        "CAMERA", "LAST", "IMAGE", "CAPTIONED", "SKIPPED", "FAILED", "DEDUPED", "TOKENS",
    ]  # fmt: skip
    # The numbers are right-aligned: every row of the table ends in the same column.
    assert len({len(line) for line in table}) == 1, table
    front = next(line for line in table if line.startswith("front "))
    assert front.split()[1:] == ["20:58:00", "(2", "min", "ago)", "2", "1", "1", "1", "601"]
    assert re.search(r"^garage +never +0 +0 +0 +0 +0$", text, re.M)
    assert "shed (not configured)" in text
    assert "queue: 3 image(s) waiting or being captioned" in text
    assert "tokens: 903 today, 1,203 this month" in text
    assert re.search(r"^  main +webhook +1 +20:40:00 \(20 min ago\)$", text, re.M)
    assert re.search(r"^  main +webhook +1 +HTTP 410 Gone$", text, re.M)
    # A file name is shown, never obeyed: its escape sequence is printed as text.
    assert "\x1b" not in text
    assert "/cams/yard/\\x1b[31m.jpg" in text
    assert "caption API refused the image (HTTP 400)" in text


def test_when_and_ago() -> None:
    assert status.ago(0.2) == "just now"
    assert status.ago(59) == "59 s ago"
    assert status.ago(3 * 60 + 5) == "3 min ago"
    assert status.ago(5 * 3600) == "5 h ago"
    assert status.ago(3 * 86400) == "3 d ago"
    assert status.when(None, NOW, ZONE) == "never"
    assert status.when(NOW - 90, NOW, ZONE) == "20:58:30 (1 min ago)"
    assert status.when(MIDNIGHT - 3600, NOW, ZONE) == "yesterday 23:00 (22 h ago)"
    assert status.when(MONTH, NOW, ZONE) == "2027-01-01 00:00 (14 d ago)"


# -- read-only -----------------------------------------------------------------------------------


def test_no_database_is_said_and_nothing_is_created(tmp_path: Path) -> None:
    state_dir = tmp_path / "nowhere" / "state"
    with pytest.raises(NoDatabase, match=r"no state database yet at .*the daemon creates it"):
        connect_readonly(state_dir)
    assert not (tmp_path / "nowhere").exists()


def test_a_closed_database_is_read_without_leaving_files(state_dir: Path, clock: Clock) -> None:
    """A `mode=ro` connection would leave `-wal` and `-shm` files, owned by whoever ran
    `status`, that the daemon's user may not be able to open."""
    store = Store(state_dir, clock=clock)
    Filler(store, clock).captioned("front", NOW)
    store.close()
    before = sorted(os.listdir(state_dir))
    db = connect_readonly(state_dir)
    try:
        assert report.tokens_since(db, MIDNIGHT) == 300
        with pytest.raises(sqlite3.OperationalError):
            db.execute("DELETE FROM images")
    finally:
        db.close()
    assert sorted(os.listdir(state_dir)) == before


def test_a_database_in_use_is_read_as_it_is_written(
    store: Store, clock: Clock, state_dir: Path
) -> None:
    filler = Filler(store, clock)
    filler.captioned("front", NOW)
    db = connect_readonly(state_dir)
    try:
        assert report.tokens_since(db, MIDNIGHT) == 300
        filler.captioned("front", NOW, tokens=5)  # the daemon goes on writing
        assert report.tokens_since(db, MIDNIGHT) == 305
    finally:
        db.close()
