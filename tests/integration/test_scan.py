"""The start-up scan over real camera folders with a real Store."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from camwatch.config import CameraConfig
from camwatch.scan import scan_camera
from camwatch.store import ImageJob, NewImage, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def cam(tmp_path: Path) -> CameraConfig:
    folder = tmp_path / "cams" / "front"
    folder.mkdir(parents=True)
    return CameraConfig(name="front", path=folder)


class Calls:
    """Records the scan's callbacks."""

    def __init__(self) -> None:
        self.touched: list[tuple[str, str, str]] = []
        self.finished: list[tuple[str, str]] = []

    def touch(self, camera: str, path: str, relpath: str) -> None:
        self.touched.append((camera, path, relpath))

    def finish(self, camera: str, path: str) -> None:
        self.finished.append((camera, path))


def put(folder: Path, rel: str, data: bytes, age: float) -> Path:
    """Write `data` at `folder/rel` with an mtime `age` seconds ago."""
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def drain(store: Store) -> list[ImageJob]:
    jobs = []
    for _ in range(1000):
        job = store.claim()
        if job is None:
            return jobs
        jobs.append(job)
    raise AssertionError("queue did not drain")


def mark_done(store: Store, camera: str, path: Path) -> None:
    st = path.stat()
    store.add_pending([NewImage(camera, str(path), path.name, st.st_size, st.st_mtime_ns, 0.0)])
    job = store.claim()
    assert job is not None and job.path == str(path)
    store.complete(job.id, "sha", st.st_size, st.st_mtime_ns, "caption", (0, 0, 0), [])


def test_old_files_are_queued_oldest_first_behind_live_ones(
    store: Store, cam: CameraConfig, jpeg: bytes
) -> None:
    put(cam.path, "b.jpg", jpeg, age=500)
    put(cam.path, "2026/a.jpg", jpeg, age=2000)
    put(cam.path, "c.png", jpeg, age=1000)
    live = cam.path / "live.jpg"
    live.write_bytes(jpeg)
    store.add_pending([NewImage("front", str(live), "live.jpg", len(jpeg), 1, time.time())])
    calls = Calls()
    result = scan_camera(cam, store, calls.touch, debounce=2.0, finished=calls.finish)
    assert (result.seen, result.queued, result.settling, result.already_done) == (4, 3, 0, 0)
    jobs = drain(store)
    assert [j.relpath for j in jobs] == ["live.jpg", "2026/a.jpg", "c.png", "b.jpg"]
    assert jobs[1].path == str(cam.path / "2026" / "a.jpg")
    assert jobs[1].size == len(jpeg)
    assert jobs[1].mtime_ns == (cam.path / "2026" / "a.jpg").stat().st_mtime_ns
    assert calls.touched == [] and calls.finished == []


def test_young_files_go_through_the_debouncer(store: Store, cam: CameraConfig, jpeg: bytes) -> None:
    young = put(cam.path, "young.jpg", jpeg, age=0)
    put(cam.path, "old.jpg", jpeg, age=60)
    calls = Calls()
    result = scan_camera(cam, store, calls.touch, debounce=5.0)
    assert (result.queued, result.settling) == (1, 1)
    assert calls.touched == [("front", str(young), "young.jpg")]
    assert [j.relpath for j in drain(store)] == ["old.jpg"]


def test_done_files_are_not_queued_again_but_handed_to_finished(
    store: Store, cam: CameraConfig, jpeg: bytes
) -> None:
    done = put(cam.path, "done.jpg", jpeg, age=100)
    mark_done(store, "front", done)
    changed = put(cam.path, "changed.jpg", jpeg, age=100)
    mark_done(store, "front", changed)
    put(cam.path, "changed.jpg", jpeg + b"\x00", age=50)  # re-written since
    failed = put(cam.path, "failed.jpg", jpeg, age=100)
    st = failed.stat()
    store.add_pending([NewImage("front", str(failed), "failed.jpg", st.st_size, st.st_mtime_ns, 0)])
    job = store.claim()
    assert job is not None
    store.finish(job.id, "failed", "HTTP 400")

    calls = Calls()
    result = scan_camera(cam, store, calls.touch, debounce=2.0, finished=calls.finish)
    assert (result.seen, result.queued, result.already_done) == (3, 1, 2)
    assert [j.relpath for j in drain(store)] == ["changed.jpg"]
    # A done file still in the folder (after: move/delete did not run before a crash).
    assert calls.finished == [("front", str(done))]


def test_queued_and_in_flight_files_are_left_alone(
    store: Store, cam: CameraConfig, jpeg: bytes
) -> None:
    queued = put(cam.path, "queued.jpg", jpeg, age=100)
    flying = put(cam.path, "flying.jpg", jpeg, age=100)
    for path in (flying, queued):
        st = path.stat()
        store.add_pending([NewImage("front", str(path), path.name, st.st_size, st.st_mtime_ns, 0)])
    assert store.claim() is not None  # flying.jpg is being captioned
    result = scan_camera(cam, store, Calls().touch, debounce=2.0)
    assert (result.seen, result.queued) == (2, 0)
    assert store.queue_length() == 2


def test_ignored_names_symlinks_and_hidden_folders(
    store: Store, cam: CameraConfig, tmp_path: Path, jpeg: bytes
) -> None:
    for rel in (".hidden.jpg", ".cache/a.jpg", "x.jpg.part", "x.jpg~", "x.gif", "sub/.git/b.jpg"):
        put(cam.path, rel, jpeg, age=100)
    outside = put(tmp_path, "outside.jpg", jpeg, age=100)
    (cam.path / "link.jpg").symlink_to(outside)
    (cam.path / "linkdir").symlink_to(tmp_path, target_is_directory=True)
    put(cam.path, "real.jpg", jpeg, age=100)
    result = scan_camera(cam, store, Calls().touch, debounce=2.0)
    assert (result.seen, result.queued) == (1, 1)
    assert [j.relpath for j in drain(store)] == ["real.jpg"]


def test_non_recursive_camera_scans_only_its_folder(
    store: Store, cam: CameraConfig, jpeg: bytes
) -> None:
    flat = CameraConfig(name="front", path=cam.path, recursive=False)
    put(cam.path, "top.jpg", jpeg, age=100)
    put(cam.path, "sub/deep.jpg", jpeg, age=100)
    result = scan_camera(flat, store, Calls().touch, debounce=2.0)
    assert result.queued == 1
    assert [j.relpath for j in drain(store)] == ["top.jpg"]


def test_a_second_scan_queues_nothing_new(store: Store, cam: CameraConfig, jpeg: bytes) -> None:
    for n in range(5):
        put(cam.path, f"{n}.jpg", jpeg, age=100 + n)
    assert scan_camera(cam, store, Calls().touch, debounce=2.0).queued == 5
    assert scan_camera(cam, store, Calls().touch, debounce=2.0).queued == 0
    assert store.queue_length() == 5


def test_stopping_ends_the_scan(store: Store, cam: CameraConfig, jpeg: bytes) -> None:
    for n in range(5):
        put(cam.path, f"{n}.jpg", jpeg, age=100)
    result = scan_camera(cam, store, Calls().touch, debounce=2.0, stopping=lambda: True)
    assert (result.seen, result.queued) == (0, 0)
    assert store.queue_length() == 0
