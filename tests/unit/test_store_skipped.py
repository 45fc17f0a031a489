"""Skipped images: the kind of reason stored (schema 3, and the migration from schema 2), `retry
--skipped`, and the decision to consider an image again when the configuration lifts its reason."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from camwatch.config import Config, parse_config
from camwatch.errors import StateError
from camwatch.skips import reconsider_skipped, still_applies
from camwatch.store import (
    SCHEMA_VERSION,
    ImageJob,
    NewImage,
    Requeued,
    SkipKind,
    SkippedImage,
    Store,
)
from camwatch.store.readonly import connect_readonly
from camwatch.store.schema import _MIGRATIONS

T0 = 1_800_000_000.0


@pytest.fixture
def cams(tmp_path: Path) -> Path:
    for name in ("front", "back"):
        (tmp_path / "cams" / name).mkdir(parents=True)
    return tmp_path / "cams"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state", clock=lambda: T0)
    try:
        yield s
    finally:
        s.close()


def config(
    cams: Path, max_image_bytes: int = 1000, cameras: tuple[str, ...] = ("front",)
) -> Config:
    return parse_config(
        {
            "caption": {"max_image_bytes": max_image_bytes},
            "cameras": [{"name": name, "path": str(cams / name)} for name in cameras],
            "state_dir": str(cams.parent / "state"),
        },
        {},
    )


def add(store: Store, cams: Path, name: str, camera: str = "front", size: int = 100) -> ImageJob:
    """Queue a real file (written if missing) and claim it."""
    path = cams / camera / name
    if not path.exists():
        path.write_bytes(b"x")
    image = NewImage(camera, str(path), name, size, 1_000_000_000, T0)
    assert store.add_pending([image]) == 1
    job = store.claim()
    assert job is not None and job.path == str(path)
    return job


def skip(store: Store, job: ImageJob, kind: SkipKind | None, size: int | None = None) -> None:
    store.finish(job.id, "skipped", f"skipped as {kind}", size=size, kind=kind)


def kinds(store: Store) -> dict[str, str | None]:
    db = sqlite3.connect(store.path)
    try:
        rows = db.execute("SELECT relpath, skip_kind FROM images WHERE state = 'skipped'")
        return dict(rows.fetchall())
    finally:
        db.close()


# -- the kind, stored -----------------------------------------------------------------------------


def test_finish_stores_the_kind_only_for_a_skipped_image(store: Store, cams: Path) -> None:
    skip(store, add(store, cams, "big.jpg"), SkipKind.TOO_LARGE, size=5000)
    skip(store, add(store, cams, "old.jpg"), SkipKind.UNKNOWN)
    failed = add(store, cams, "bad.jpg")
    store.finish(failed.id, "failed", "HTTP 415", kind=SkipKind.TOO_LARGE)
    assert kinds(store) == {"big.jpg": "too_large", "old.jpg": None}
    assert store.skipped_images() == [
        SkippedImage(1, "front", str(cams / "front" / "big.jpg"), SkipKind.TOO_LARGE, 5000),
        SkippedImage(2, "front", str(cams / "front" / "old.jpg"), SkipKind.UNKNOWN, 100),
    ]


def test_recover_and_removed_cameras_record_their_kinds(store: Store, cams: Path) -> None:
    add(store, cams, "a.jpg")  # in flight...
    store.add_pending([NewImage("front", str(cams / "front" / "a.jpg"), "a.jpg", 7, 2, T0)])
    store.add_pending([NewImage("gone", str(cams / "gone.jpg"), "gone.jpg", 7, 2, T0)])
    store.recover()  # ...and queued again meanwhile: the older row is superseded
    store.skip_pending_of({"front"})
    assert kinds(store) == {"a.jpg": "superseded", "gone.jpg": "no_camera"}


# -- the migration from schema 2 ------------------------------------------------------------------


def make_v2_database(state_dir: Path) -> None:
    """Write a database as camwatch with schema 2 left it: its two migrations, and rows as it
    wrote them (no kind)."""
    state_dir.mkdir()
    db = sqlite3.connect(state_dir / "camwatch.db", isolation_level=None)
    try:
        for migration in _MIGRATIONS[:2]:
            for statement in migration:
                db.execute(statement)
        rows = [
            ("big.jpg", "skipped", "25000000 bytes > max_image_bytes 20000000", 25_000_000),
            ("grew.jpg", "skipped", "more than max_image_bytes 20000000", 100),
            ("link.jpg", "skipped", "has more than one hard link", 100),
            ("cut.jpg", "skipped", "not a complete JPEG/PNG 600s after its last change", 100),
            ("dup.jpg", "skipped", "same bytes already captioned", 100),
            ("odd.jpg", "skipped", "a reason from long ago", 100),
            ("ok.jpg", "done", None, 100),
            ("next.jpg", "pending", None, 100),
        ]
        for name, state, error, size in rows:
            db.execute(
                "INSERT INTO images (camera, path, relpath, size, mtime_ns, state, last_error,"
                " detected_at, updated_at) VALUES ('front', ?, ?, ?, 1, ?, ?, ?, ?)",
                (f"/cams/front/{name}", name, size, state, error, T0, T0),
            )
        db.execute("PRAGMA user_version = 2")
    finally:
        db.close()


def test_a_schema_2_database_is_migrated_with_kinds_from_the_old_reasons(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    make_v2_database(state_dir)
    with pytest.raises(StateError, match="schema 2, older than this camwatch"):
        connect_readonly(state_dir)
    store = Store(state_dir, clock=lambda: T0)
    try:
        assert SCHEMA_VERSION >= 3  # 3 added the skip kinds
        assert kinds(store) == {
            "big.jpg": "too_large",
            "grew.jpg": "too_large",
            "link.jpg": "unsafe_path",
            "cut.jpg": "incomplete",
            "dup.jpg": "duplicate",
            "odd.jpg": None,
        }
        # The old rows keep working: the queue, the counts, and the unknown kind.
        assert store.counts()["skipped"] == 6
        assert [i.path for i in store.skipped_images([SkipKind.UNKNOWN])] == ["/cams/front/odd.jpg"]
        job = store.claim()
        assert job is not None and job.relpath == "next.jpg"
        requeued = store.retry_skipped(SkipKind.UNKNOWN, exists=lambda path: True)
        assert requeued == Requeued(queued=1, gone=0)
    finally:
        store.close()
    readonly = connect_readonly(state_dir)  # the version it checks exactly is now this one
    try:
        assert readonly.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        readonly.close()


# -- retry --skipped ------------------------------------------------------------------------------


def test_retry_skipped_with_and_without_a_reason_and_a_camera(store: Store, cams: Path) -> None:
    skip(store, add(store, cams, "big.jpg"), SkipKind.TOO_LARGE, size=5000)
    skip(store, add(store, cams, "link.jpg"), SkipKind.UNSAFE_PATH)
    skip(store, add(store, cams, "far.jpg", camera="back"), SkipKind.TOO_LARGE, size=5000)
    skip(store, add(store, cams, "dup.jpg", camera="back"), SkipKind.DUPLICATE)

    assert store.retry_skipped(SkipKind.INCOMPLETE) == Requeued(0, 0)
    assert store.retry_skipped(SkipKind.TOO_LARGE, camera="back") == Requeued(1, 0)
    job = store.claim()
    assert job is not None and (job.relpath, job.attempts) == ("far.jpg", 0)
    assert store.claim() is None
    assert store.retry_skipped(SkipKind.TOO_LARGE) == Requeued(1, 0)  # front's big.jpg
    assert store.retry_skipped(camera="front") == Requeued(1, 0)  # link.jpg
    assert store.retry_skipped() == Requeued(1, 0)  # what is left: dup.jpg
    assert store.retry_skipped() == Requeued(0, 0)
    assert store.counts()["pending"] == 3
    assert kinds(store) == {}  # queued again: no longer skipped, no kind


def test_retry_skipped_leaves_an_image_whose_file_is_gone(store: Store, cams: Path) -> None:
    skip(store, add(store, cams, "gone.jpg"), SkipKind.TOO_LARGE, size=5000)
    skip(store, add(store, cams, "here.jpg"), SkipKind.TOO_LARGE, size=5000)
    (cams / "front" / "gone.jpg").unlink()
    assert store.retry_skipped(SkipKind.TOO_LARGE) == Requeued(queued=1, gone=1)
    assert kinds(store) == {"gone.jpg": "too_large"}


def test_retry_skipped_takes_only_the_latest_record_of_a_file(store: Store, cams: Path) -> None:
    skip(store, add(store, cams, "a.jpg"), SkipKind.TOO_LARGE, size=5000)
    job = add(store, cams, "a.jpg", size=50)  # written again, smaller: captioned
    store.complete(job.id, "ab", 50, 1, "a caption", (1, 2, 3), [])
    skip(store, add(store, cams, "b.jpg"), SkipKind.TOO_LARGE, size=5000)
    store.add_pending([NewImage("front", str(cams / "front" / "b.jpg"), "b.jpg", 9, 9, T0)])
    # a.jpg is done since; b.jpg is queued anyway (its newer row is the one that counts).
    assert store.skipped_images() == []
    assert store.retry_skipped() == Requeued(0, 0)
    assert store.counts()["pending"] == 1


# -- considered again when the configuration lifts the reason -------------------------------------


def skipped(kind: SkipKind, size: int | None = 100, camera: str = "front") -> SkippedImage:
    return SkippedImage(1, camera, "/cams/x.jpg", kind, size)


@pytest.mark.parametrize(
    ("image", "max_image_bytes", "applies"),
    [
        (skipped(SkipKind.TOO_LARGE, 5000), 1000, True),
        (skipped(SkipKind.TOO_LARGE, 1001), 1000, True),
        (skipped(SkipKind.TOO_LARGE, 1000), 1000, False),
        (skipped(SkipKind.TOO_LARGE, 10), 1000, False),
        (skipped(SkipKind.TOO_LARGE, None), 1000, True),  # size never recorded: cannot tell
        (skipped(SkipKind.NO_CAMERA, camera="front"), 1000, False),
        (skipped(SkipKind.NO_CAMERA, camera="attic"), 1000, True),
        (skipped(SkipKind.UNSAFE_PATH), 1000, True),
        (skipped(SkipKind.INCOMPLETE), 1000, True),
        (skipped(SkipKind.DUPLICATE), 1000, True),
        (skipped(SkipKind.UNKNOWN, 5000), 1000, True),
    ],
)
def test_still_applies(
    cams: Path, image: SkippedImage, max_image_bytes: int, applies: bool
) -> None:
    assert still_applies(image, config(cams, max_image_bytes)) is applies


def test_reconsider_queues_what_the_configuration_no_longer_refuses(
    store: Store, cams: Path
) -> None:
    skip(store, add(store, cams, "big.jpg"), SkipKind.TOO_LARGE, size=5000)
    skip(store, add(store, cams, "huge.jpg"), SkipKind.TOO_LARGE, size=50_000)
    skip(store, add(store, cams, "gone.jpg"), SkipKind.TOO_LARGE, size=5000)
    skip(store, add(store, cams, "link.jpg"), SkipKind.UNSAFE_PATH, size=10)
    skip(store, add(store, cams, "late.jpg", camera="back"), SkipKind.NO_CAMERA)
    (cams / "front" / "gone.jpg").unlink()

    with capture_logs() as logs:
        assert reconsider_skipped(store, config(cams, 1000)) == {}
    assert logs == []
    with capture_logs() as logs:
        queued = reconsider_skipped(store, config(cams, 10_000, cameras=("front", "back")))
    assert queued == {SkipKind.TOO_LARGE: 1, SkipKind.NO_CAMERA: 1}
    lines = [(e["event"], e["reason"], e["count"], e["gone"]) for e in logs]
    assert lines == [
        ("skipped_reconsidered", "too_large", 1, 1),
        ("skipped_reconsidered", "no_camera", 1, 0),
    ]
    assert sorted(kinds(store)) == ["gone.jpg", "huge.jpg", "link.jpg"]
    assert reconsider_skipped(store, config(cams, 10_000, cameras=("front", "back"))) == {}
