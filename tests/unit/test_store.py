"""The SQLite store: queue, crash recovery, cooldowns, outbox, pruning, failure modes."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from camwatch.errors import StateError
from camwatch.store import SCHEMA_VERSION, AlertCandidate, ImageJob, ImageState, NewImage, Store
from camwatch.store.readonly import connect_readonly
from camwatch.store.report import captions_since

T0 = 1_800_000_000.0


class Clock:
    """A settable wall clock."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


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


def image(path: str = "/cams/front/a.jpg", camera: str = "front", **kw: int | float) -> NewImage:
    """Return a NewImage for `path` (size 100, mtime 1 s, unless given)."""
    return NewImage(
        camera=camera,
        path=path,
        relpath=os.path.basename(path),
        size=int(kw.get("size", 100)),
        mtime_ns=int(kw.get("mtime_ns", 1_000_000_000)),
        detected_at=float(kw.get("detected_at", T0)),
        prio=int(kw.get("prio", 0)),
    )


def claim(store: Store) -> ImageJob:
    job = store.claim()
    assert job is not None
    return job


def alert(
    rule: str = "person-down",
    camera: str = "front",
    cooldown: float = 0.0,
    targets: list[tuple[str, str]] | None = None,
    event_id: str | None = None,
) -> AlertCandidate:
    return AlertCandidate(
        event_id=event_id or f"ev-{rule}-{camera}-{os.urandom(4).hex()}",
        rule=rule,
        camera=camera,
        cooldown=cooldown,
        targets=[("webhook", "ops")] if targets is None else targets,
        body=f'{{"rule": "{rule}"}}',
        messages={"phones": '{"title": "t"}'},
    )


def complete(
    store: Store, job: ImageJob, alerts: list[AlertCandidate] | None = None, sha: str = "ab"
) -> list[tuple[AlertCandidate, bool]]:
    assert job.size is not None and job.mtime_ns is not None
    return store.complete(job.id, sha, job.size, job.mtime_ns, "a caption", (1, 2, 3), alerts or [])


# -- schema -------------------------------------------------------------------------------------


def test_schema_is_created_versioned_and_in_wal_mode(store: Store) -> None:
    db = sqlite3.connect(store.path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        db.close()
    assert {"images", "alerts", "cooldowns"} <= tables


def test_reopening_keeps_data_and_does_not_migrate_again(state_dir: Path, clock: Clock) -> None:
    first = Store(state_dir, clock=clock)
    first.add_pending([image()])
    first.close()
    second = Store(state_dir, clock=clock)
    try:
        assert second.counts()["pending"] == 1
    finally:
        second.close()


def test_a_newer_schema_is_refused(state_dir: Path) -> None:
    state_dir.mkdir()
    db = sqlite3.connect(state_dir / "camwatch.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StateError, match=rf"schema {SCHEMA_VERSION + 1}, newer than this"):
        Store(state_dir)


def test_a_file_that_is_not_a_database_is_a_state_error(state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / "camwatch.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="state_dir: cannot use"):
        Store(state_dir)


def test_state_dir_that_is_a_file_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    with pytest.raises(StateError, match="state_dir: cannot open"):
        Store(tmp_path / "state")


# -- read-only state_dir ---------------------------------------------------------------------------

_OPEN_STORE = """
import sys
from pathlib import Path
from camwatch.errors import StateError
from camwatch.store import Store
try:
    Store(Path(sys.argv[1])).close()
except StateError as exc:
    print(exc)
    sys.exit(3)
sys.exit(0)
"""


def _open_read_only(state_dir: Path) -> subprocess.CompletedProcess[str]:
    """Try to open a Store on `state_dir` made read-only, in a child process. As root, chmod does
    not stop writes, so the folder is bind-mounted read-only in a private mount namespace
    (nothing outside the child sees the mount)."""
    if os.geteuid() != 0:
        state_dir.chmod(0o500)
        try:
            return subprocess.run(
                [sys.executable, "-c", _OPEN_STORE, str(state_dir)],
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            state_dir.chmod(0o700)
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("running as root without unshare/mount: cannot make state_dir read-only")
    d = str(state_dir)
    script = (
        f'mount --bind "{d}" "{d}" && mount -o remount,bind,ro "{d}" || exit 99;'
        f' exec "{sys.executable}" -c "$0" "{d}"'
    )
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, _OPEN_STORE],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode == 99 or "unshare failed" in proc.stderr:
        pytest.skip(f"cannot bind-mount read-only here: {proc.stderr.strip()}")
    return proc


def test_read_only_empty_state_dir_is_a_state_error(state_dir: Path) -> None:
    state_dir.mkdir()
    proc = _open_read_only(state_dir)
    assert proc.returncode == 3, proc.stderr
    assert f"state_dir: {str(state_dir)!r} is not writable" in proc.stdout
    assert not (state_dir / "camwatch.db").exists()


def test_read_only_state_dir_with_a_database_is_a_state_error(state_dir: Path) -> None:
    Store(state_dir).close()
    before = (state_dir / "camwatch.db").read_bytes()
    proc = _open_read_only(state_dir)
    assert proc.returncode == 3, proc.stderr
    assert f"state_dir: {str(state_dir)!r} is not writable" in proc.stdout
    assert (state_dir / "camwatch.db").read_bytes() == before  # untouched, not corrupt
    reopened = Store(state_dir)
    reopened.close()


# -- the queue ----------------------------------------------------------------------------------


def test_same_file_twice_is_queued_once(store: Store) -> None:
    assert store.add_pending([image(), image()]) == 1
    assert store.add_pending([image()]) == 0
    assert store.add_pending([image(size=200)]) == 0  # still the one pending row
    assert store.counts()["pending"] == 1
    assert store.add_pending([image(camera="back")]) == 1  # another camera, another image


def test_done_file_is_not_queued_again_unless_changed(store: Store) -> None:
    store.add_pending([image()])
    complete(store, claim(store))
    assert store.add_pending([image()]) == 0
    assert store.add_pending([image(mtime_ns=2_000_000_000)]) == 1
    assert store.add_pending([image(size=101)]) == 0  # now pending already
    assert store.counts() == {"done": 1, "pending": 1, "alerts_pending": 0, "alerts_dead": 0}


@pytest.mark.parametrize("state", ["failed", "skipped"])
def test_failed_or_skipped_file_is_not_queued_again_unless_changed(
    store: Store, state: str
) -> None:
    store.add_pending([image()])
    store.finish(claim(store).id, state, "reason")
    assert store.add_pending([image()]) == 0
    assert store.add_pending([image(size=101)]) == 1


def test_file_rewritten_while_captioning_queues_again(store: Store) -> None:
    store.add_pending([image()])
    job = claim(store)
    assert store.add_pending([image(size=150)]) == 1
    assert store.queue_length() == 2
    complete(store, job)
    again = claim(store)
    assert again.size == 150


def test_claim_order_is_prio_then_arrival(store: Store) -> None:
    store.add_pending([image("/c/scan1.jpg", prio=1), image("/c/live1.jpg")])
    store.add_pending([image("/c/scan2.jpg", prio=1), image("/c/live2.jpg")])
    order = [claim(store).path for _ in range(4)]
    assert order == ["/c/live1.jpg", "/c/live2.jpg", "/c/scan1.jpg", "/c/scan2.jpg"]
    assert store.claim() is None
    assert store.queue_length() == 4  # all captioning


def test_claim_marks_captioning_and_returns_the_job(store: Store) -> None:
    store.add_pending([image(detected_at=T0 - 5)])
    job = claim(store)
    assert job == ImageJob(
        id=job.id,
        camera="front",
        path="/cams/front/a.jpg",
        relpath="a.jpg",
        size=100,
        mtime_ns=1_000_000_000,
        attempts=0,
        detected_at=T0 - 5,
    )
    assert store.counts()["captioning"] == 1


def test_release_respects_next_at_and_charges_attempts(store: Store, clock: Clock) -> None:
    assert store.next_due() is None
    store.add_pending([image()])
    assert store.next_due() == 0
    job = claim(store)
    assert store.release(job.id, T0 + 10, "HTTP 503", charge=True) == 1
    assert store.next_due() == T0 + 10
    assert store.claim() is None
    clock.now = T0 + 10
    job = claim(store)
    assert job.attempts == 1
    assert store.release(job.id, T0 + 20, None, charge=False) == 1
    clock.now = T0 + 20
    assert claim(store).attempts == 1


def test_release_does_not_let_a_later_image_overtake_a_due_one(store: Store) -> None:
    store.add_pending([image("/c/1.jpg"), image("/c/2.jpg")])
    first = claim(store)
    store.release(first.id, 0, None, charge=False)
    assert claim(store).path == "/c/1.jpg"


def test_finish_records_the_reason(store: Store) -> None:
    store.add_pending([image()])
    job = claim(store)
    store.finish(job.id, "skipped", "too large", sha256="ff", size=5, mtime_ns=6)
    assert store.counts()["skipped"] == 1
    assert store.known_files("front") == {"/cams/front/a.jpg": (5, 6, "skipped")}
    with pytest.raises(AssertionError):
        store.finish(job.id, "done")


def test_is_done_by_camera_path_and_sha(store: Store) -> None:
    store.add_pending([image()])
    complete(store, claim(store), sha="cafe")
    assert store.is_done("front", "/cams/front/a.jpg", "cafe")
    assert not store.is_done("front", "/cams/front/a.jpg", "beef")
    assert not store.is_done("back", "/cams/front/a.jpg", "cafe")
    assert not store.is_done("front", "/cams/front/b.jpg", "cafe")


def test_known_files_gives_the_latest_record(store: Store) -> None:
    store.add_pending([image()])
    complete(store, claim(store))
    store.add_pending([image(size=300)])
    assert store.known_files("front") == {"/cams/front/a.jpg": (300, 1_000_000_000, "pending")}
    assert store.known_files("back") == {}


def test_skip_pending_of_removed_cameras(store: Store) -> None:
    store.add_pending([image(camera="front"), image(camera="gone")])
    assert store.skip_pending_of({"front"}) == 1
    assert claim(store).camera == "front"
    assert store.claim() is None


def test_captions_since(store: Store, state_dir: Path, clock: Clock) -> None:
    store.add_pending([image("/c/1.jpg"), image("/c/2.jpg", camera="back")])
    complete(store, claim(store))
    clock.now = T0 + 100
    complete(store, claim(store))
    with closing(connect_readonly(state_dir)) as db:
        assert [c.path for c in captions_since(db, T0)] == ["/c/1.jpg", "/c/2.jpg"]
        assert [c.path for c in captions_since(db, T0 + 50)] == ["/c/2.jpg"]
        assert [c.path for c in captions_since(db, T0, camera="front")] == ["/c/1.jpg"]
        assert captions_since(db, T0)[0].caption == "a caption"


# -- crash recovery -------------------------------------------------------------------------------


def test_recover_requeues_what_a_crash_left_captioning(state_dir: Path, clock: Clock) -> None:
    crashed = Store(state_dir, clock=clock)
    crashed.add_pending([image("/c/1.jpg"), image("/c/2.jpg"), image("/c/3.jpg")])
    first, second = claim(crashed), claim(crashed)
    crashed.release(second.id, T0 + 3600, "HTTP 503", charge=True)
    claim_third = claim(crashed)
    crashed.close()  # no finish: as after kill -9

    restarted = Store(state_dir, clock=clock)
    try:
        assert restarted.recover() == 2
        assert restarted.recover() == 0
        got = sorted(claim(restarted).id for _ in range(2))
        assert got == sorted([first.id, claim_third.id])
        assert restarted.claim() is None  # the released one keeps its next_at
    finally:
        restarted.close()


def test_recover_prefers_a_newer_queued_row_for_the_same_file(store: Store) -> None:
    store.add_pending([image()])
    old = claim(store)
    store.add_pending([image(size=999)])  # re-written while in flight
    assert store.recover() == 0
    job = claim(store)
    assert job.id != old.id and job.size == 999
    assert store.counts()["skipped"] == 1


def test_recover_with_two_rows_in_flight_for_one_file(store: Store) -> None:
    store.add_pending([image()])
    claim(store)
    store.add_pending([image(size=2)])
    assert store.claim() is None  # not claimed while the first is in flight, but a database
    with store._tx() as db:  # from a camwatch that did can hold two
        db.execute("UPDATE images SET state = 'captioning' WHERE state = 'pending'")
    assert store.recover() == 1
    claim(store)
    assert store.claim() is None
    assert store.counts() == {"captioning": 1, "skipped": 1, "alerts_pending": 0, "alerts_dead": 0}


def test_retry_failed(store: Store) -> None:
    store.add_pending([image("/c/1.jpg"), image("/c/2.jpg", camera="back")])
    for _ in range(2):
        job = claim(store)
        store.release(job.id, 0, "x", charge=True)
        store.finish(claim(store).id, "failed", "gave up")
    assert store.counts()["failed"] == 2
    assert store.retry_failed(camera="nope") == 0
    assert store.retry_failed(camera="back") == 1
    job = claim(store)
    assert (job.camera, job.attempts) == ("back", 0)
    assert store.retry_failed() == 1
    assert claim(store).camera == "front"
    assert store.retry_failed() == 0


def test_retry_failed_leaves_a_file_that_is_queued_anyway(store: Store) -> None:
    store.add_pending([image()])
    store.finish(claim(store).id, "failed", "gave up")
    store.add_pending([image(size=5)])
    assert store.retry_failed() == 0
    assert store.counts() == {"failed": 1, "pending": 1, "alerts_pending": 0, "alerts_dead": 0}


# -- cooldowns ------------------------------------------------------------------------------------


def _decide(store: Store, candidate: AlertCandidate, n: int) -> bool:
    store.add_pending([image(f"/c/{n}.jpg", camera=candidate.camera)])
    ((_, queued),) = complete(store, claim(store), [candidate])
    return queued


def test_cooldown_per_rule_and_camera(store: Store, clock: Clock) -> None:
    assert _decide(store, alert(cooldown=60), 1)
    clock.now = T0 + 30
    assert not _decide(store, alert(cooldown=60), 2)
    assert _decide(store, alert(cooldown=60, camera="back"), 3)
    assert _decide(store, alert(rule="package", cooldown=60), 4)
    clock.now = T0 + 59.9
    assert not _decide(store, alert(cooldown=60), 5)
    clock.now = T0 + 60
    assert _decide(store, alert(cooldown=60), 6)  # runs from the last alert decided, at T0
    clock.now = T0 + 61
    assert not _decide(store, alert(cooldown=60), 7)  # ... now from T0 + 60
    assert store.counts()["alerts_pending"] == 4


def test_no_cooldown_alerts_every_time(store: Store) -> None:
    assert all(_decide(store, alert(), n) for n in range(3))


def test_cooldown_survives_a_restart(state_dir: Path, clock: Clock) -> None:
    first = Store(state_dir, clock=clock)
    assert _decide(first, alert(cooldown=300), 1)
    first.close()
    clock.now = T0 + 200
    second = Store(state_dir, clock=clock)
    try:
        assert not _decide(second, alert(cooldown=300), 2)
        clock.now = T0 + 300
        assert _decide(second, alert(cooldown=300), 3)
    finally:
        second.close()


def test_complete_records_caption_and_alerts_in_one_go(store: Store) -> None:
    store.add_pending([image()])
    job = claim(store)
    candidate = alert(targets=[("webhook", "ops"), ("webhook", "ha"), ("notify", "phones")])
    assert complete(store, job, [candidate]) == [(candidate, True)]
    (row,) = store.due_alerts("webhook", "ops")
    assert (row.event_id, row.rule, row.camera, row.body, row.attempts) == (
        candidate.event_id,
        "person-down",
        "front",
        candidate.body,
        0,
    )
    assert store.due_alerts("webhook", "ha")[0].event_id == candidate.event_id
    assert store.due_alerts("notify", "phones")[0].body == '{"title": "t"}'
    assert store.counts() == {"done": 1, "alerts_pending": 3, "alerts_dead": 0}


# -- the outbox ----------------------------------------------------------------------------------


def _outbox(store: Store, n: int) -> list[str]:
    ids = []
    for i in range(n):
        candidate = alert(event_id=f"ev-{i}")
        store.add_pending([image(f"/c/{i}.jpg")])
        complete(store, claim(store), [candidate])
        ids.append(candidate.event_id)
    return ids


def test_outbox_due_postpone_deliver_expire(store: Store, clock: Clock) -> None:
    assert store.next_alert_due("webhook", "ops") is None
    _outbox(store, 3)
    rows = store.due_alerts("webhook", "ops")
    assert [r.event_id for r in rows] == ["ev-0", "ev-1", "ev-2"]
    assert [r.event_id for r in store.due_alerts("webhook", "ops", limit=2)] == ["ev-0", "ev-1"]
    store.postpone(rows[0].id, T0 + 50, "HTTP 500")
    store.postpone(rows[1].id, T0 + 20, "refused")
    assert [r.event_id for r in store.due_alerts("webhook", "ops")] == ["ev-2"]
    assert store.next_alert_due("webhook", "ops") == T0
    store.delivered(rows[2].id)
    assert store.due_alerts("webhook", "ops") == []
    assert store.next_alert_due("webhook", "ops") == T0 + 20
    clock.now = T0 + 20
    assert [(r.event_id, r.attempts) for r in store.due_alerts("webhook", "ops")] == [("ev-1", 1)]
    clock.now = T0 + 60
    assert [r.event_id for r in store.due_alerts("webhook", "ops")] == ["ev-0", "ev-1"]
    store.expire(rows[0].id, "too old")
    assert [r.event_id for r in store.due_alerts("webhook", "ops")] == ["ev-1"]
    assert store.counts()["alerts_pending"] == 1
    assert store.due_alerts("webhook", "other") == []
    assert store.due_alerts("notify", "ops") == []


def test_outbox_survives_a_restart(state_dir: Path, clock: Clock) -> None:
    first = Store(state_dir, clock=clock)
    ids = _outbox(first, 2)
    first.delivered(first.due_alerts("webhook", "ops")[0].id)
    first.close()
    second = Store(state_dir, clock=clock)
    try:
        assert [r.event_id for r in second.due_alerts("webhook", "ops")] == ids[1:]
    finally:
        second.close()


def test_drop_alerts_for_unknown_targets(store: Store) -> None:
    store.add_pending([image()])
    targets = [("webhook", "ops"), ("webhook", "old"), ("notify", "phones")]
    complete(store, claim(store), [alert(targets=targets)])
    assert store.drop_alerts_for("webhook", {"ops"}) == 1
    assert store.due_alerts("webhook", "old") == []
    assert len(store.due_alerts("webhook", "ops")) == 1
    assert store.drop_alerts_for("notify", set()) == 1
    assert store.counts()["alerts_pending"] == 1


# -- pruning --------------------------------------------------------------------------------------


def test_prune_keeps_records_of_files_still_on_disk(
    store: Store, clock: Clock, tmp_path: Path
) -> None:
    kept = tmp_path / "kept.jpg"
    kept.write_bytes(b"x")
    gone = tmp_path / "gone.jpg"
    pending_alert = tmp_path / "pending-alert.jpg"
    store.add_pending([image(str(kept)), image(str(gone)), image(str(pending_alert))])
    complete(store, claim(store), [alert(event_id="delivered")])
    complete(store, claim(store))
    complete(store, claim(store), [alert(event_id="undelivered")])
    (delivered_row, _) = store.due_alerts("webhook", "ops")
    store.delivered(delivered_row.id)
    store.add_pending([image(str(tmp_path / "young.jpg"))])

    clock.now = T0 + 100
    assert store.prune(retention=1000) == 0  # nothing is old enough yet

    clock.now = T0 + 2000
    assert store.prune(retention=1000) == 2  # the delivered alert, the record of gone.jpg
    known = store.known_files("front")
    assert set(known) == {str(kept), str(pending_alert), str(tmp_path / "young.jpg")}
    # kept.jpg stays done: a restart's scan will not caption it again
    assert store.add_pending([image(str(kept))]) == 0
    assert [r.event_id for r in store.due_alerts("webhook", "ops")] == ["undelivered"]


def test_a_name_that_is_not_utf8_is_stored_losslessly(state_dir: Path, clock: Clock) -> None:
    # A legacy Latin-1 client's "café.jpg": the OS gives it surrogate-escaped.
    latin = os.fsdecode(b"/cams/front/caf\xe9.jpg")
    utf8 = "/cams/front/café.jpg"
    store = Store(state_dir, clock=clock)
    images = [NewImage("front", p, os.path.basename(p), 1, 1, T0) for p in (latin, utf8)]
    assert store.add_pending(images) == 2
    assert store.add_pending(images) == 0  # still queued: the same names are recognised
    assert set(store.known_files("front")) == {latin, utf8}
    claimed = [store.claim(), store.claim()]
    assert sorted(job.path for job in claimed if job) == sorted([latin, utf8])


def test_dead_letters_are_kept_apart_and_retried_on_request(state_dir: Path, clock: Clock) -> None:
    store = Store(state_dir, clock=clock)
    store.add_pending([NewImage("front", "/x/a.jpg", "a.jpg", 1, 1, T0)])
    job = store.claim()
    assert job is not None
    alert = AlertCandidate("e1", "r", "front", 0.0, [("webhook", "ops"), ("webhook", "b")], "{}")
    store.complete(job.id, "ab", 1, 1, "cap", (1, 1, 2), [alert])
    (ops,) = store.due_alerts("webhook", "ops")
    store.dead_letter(ops.id, "HTTP 410 from webhook 'ops'")
    assert store.due_alerts("webhook", "ops") == []
    assert store.counts()["alerts_dead"] == 1 and store.counts()["alerts_pending"] == 1
    assert store.retry_dead_letters("other") == 0
    assert store.retry_dead_letters() == 1
    (again,) = store.due_alerts("webhook", "ops")
    assert (again.event_id, again.attempts) == ("e1", 0)


def test_a_file_in_flight_is_not_claimed_again_until_it_is_done(store: Store) -> None:
    # A rescan after lost events queues a file whose older row is being captioned: two workers
    # would caption it at once and both answers would alert.
    assert store.add_pending([image()]) == 1
    first = claim(store)
    assert store.add_pending([image(size=11)]) == 1  # queued again meanwhile
    assert store.claim() is None  # not while the first is in flight
    store.finish(first.id, ImageState.FAILED, "boom")
    second = claim(store)
    assert second.path == first.path and second.id != first.id


def test_releasing_a_row_whose_file_was_queued_again_supersedes_it(store: Store) -> None:
    assert store.add_pending([image()]) == 1
    first = claim(store)
    assert store.add_pending([image(size=11)]) == 1
    store.release(first.id, 0, "outage", charge=True)  # the unique index allows one pending row
    rows = store._read("SELECT state, skip_kind FROM images ORDER BY id")
    assert rows == [("skipped", "superseded"), ("pending", None)]
