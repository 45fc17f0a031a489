"""A real watchdog Watcher on camera folders in tmp_path, feeding a real Debouncer."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from camwatch.config import CameraConfig
from camwatch.debounce import Debouncer, ReadyFile
from camwatch.folders import walk_candidates
from camwatch.watcher import Sinks, Watcher

pytestmark = [
    pytest.mark.usefixtures("no_thread_leaks"),
    # watchdog 7 warns from its inotify thread when `mkdir -p` races its own recursive scan
    # ("Callback with id ... already exists"); harmless, but as an error it kills that thread.
    pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning"),
]

Poll = Callable[..., None]


class Collector:
    """The debouncer's `emit`: keeps what came out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[ReadyFile] = []

    def __call__(self, batch: list[ReadyFile]) -> None:
        with self._lock:
            self.items.extend(batch)

    def rels(self) -> list[tuple[str, str]]:
        """Return (camera, relpath) of everything emitted, sorted."""
        with self._lock:
            return sorted((item.camera, item.relpath) for item in self.items)

    def has(self, camera: str, relpath: str) -> bool:
        return (camera, relpath) in self.rels()


@dataclass
class Rig:
    front: Path  # a recursive camera
    flat: Path  # a camera with recursive: false
    outside: Path  # a folder no camera watches
    watcher: Watcher
    debouncer: Debouncer
    out: Collector
    cameras: list[CameraConfig]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    front = tmp_path / "cams" / "front"
    flat = tmp_path / "cams" / "flat"
    outside = tmp_path / "outside"
    for folder in (front, flat, outside):
        folder.mkdir(parents=True)
    cameras = [
        CameraConfig(name="front", path=front),
        CameraConfig(name="flat", path=flat, recursive=False),
    ]
    out = Collector()
    rescans: list[str] = []
    debouncer = Debouncer(out, debounce=0.1, complete_timeout=3.0)
    debouncer.start()
    watcher = Watcher(Sinks(debouncer.touch, debouncer.closed, debouncer.forget, rescans.append))
    try:
        assert sorted(watcher.sync(cameras)) == ["flat", "front"]
        assert watcher.is_alive()
        yield Rig(front.resolve(), flat.resolve(), outside, watcher, debouncer, out, cameras)
    finally:
        watcher.stop()
        debouncer.stop()


def drain(rig: Rig, poll: Poll, jpeg: bytes, camera: str = "front") -> None:
    """Drop a sentinel image last and wait until it is out and nothing else settles: every
    event before it has then been handled."""
    folder = rig.front if camera == "front" else rig.flat
    sentinel = folder / "zz-sentinel.jpg"
    sentinel.write_bytes(jpeg)
    poll(lambda: rig.out.has(camera, "zz-sentinel.jpg"), message="the sentinel")
    poll(lambda: len(rig.debouncer) == 0, message="the debouncer to be empty")


def test_new_files_are_emitted(rig: Rig, jpeg: bytes, png: bytes, poll: Poll) -> None:
    (rig.front / "a.jpg").write_bytes(jpeg)
    nested = rig.front / "2026-11-23" / "cam1"
    nested.mkdir(parents=True)  # folders made after the watch started are watched too
    (nested / "12-00-01.JPG").write_bytes(jpeg)
    (rig.front / "b.png").write_bytes(png)
    poll(lambda: len(rig.out.items) == 3, message="three images")
    assert rig.out.rels() == [
        ("front", "2026-11-23/cam1/12-00-01.JPG"),
        ("front", "a.jpg"),
        ("front", "b.png"),
    ]
    item = next(i for i in rig.out.items if i.relpath == "a.jpg")
    assert item.path == str(rig.front / "a.jpg")
    assert item.size == len(jpeg)


def test_a_part_file_is_taken_once_renamed(rig: Rig, jpeg: bytes, poll: Poll) -> None:
    part = rig.front / "x.jpg.part"
    with part.open("wb") as out:
        out.write(jpeg[:200])
        out.flush()
        out.write(jpeg[200:])
    os.rename(part, rig.front / "x.jpg")
    drain(rig, poll, jpeg)
    assert rig.out.rels() == [("front", "x.jpg"), ("front", "zz-sentinel.jpg")]


def test_a_file_moved_in_is_emitted(rig: Rig, jpeg: bytes, poll: Poll) -> None:
    (rig.outside / "m.jpg").write_bytes(jpeg)
    os.rename(rig.outside / "m.jpg", rig.front / "m.jpg")
    poll(lambda: rig.out.has("front", "m.jpg"), message="the moved-in file")


def test_a_folder_moved_in_brings_its_images(rig: Rig, jpeg: bytes, poll: Poll) -> None:
    batch = rig.outside / "batch"
    (batch / "deep").mkdir(parents=True)
    (batch / "a.jpg").write_bytes(jpeg)
    (batch / "deep" / "b.jpg").write_bytes(jpeg)
    (batch / ".c.jpg").write_bytes(jpeg)
    (batch / "notes.txt").write_text("x")
    os.rename(batch, rig.front / "batch")
    drain(rig, poll, jpeg)
    assert rig.out.rels() == [
        ("front", "batch/a.jpg"),
        ("front", "batch/deep/b.jpg"),
        ("front", "zz-sentinel.jpg"),
    ]


def test_a_hidden_folder_renamed_to_a_visible_one_brings_its_images(
    rig: Rig, jpeg: bytes, poll: Poll
) -> None:
    incoming = rig.front / ".incoming"
    incoming.mkdir()
    (incoming / "c.jpg").write_bytes(jpeg)
    os.rename(incoming, rig.front / "incoming")
    drain(rig, poll, jpeg)
    assert rig.out.rels() == [("front", "incoming/c.jpg"), ("front", "zz-sentinel.jpg")]


def test_hidden_temporary_foreign_and_outside_files_are_ignored(
    rig: Rig, jpeg: bytes, poll: Poll
) -> None:
    (rig.front / ".hidden.jpg").write_bytes(jpeg)
    (rig.front / ".cache").mkdir()
    (rig.front / ".cache" / "thumb.jpg").write_bytes(jpeg)
    (rig.front / "sub" / ".git").mkdir(parents=True)
    (rig.front / "sub" / ".git" / "x.jpg").write_bytes(jpeg)
    for name in ("y.jpg.tmp", "y.jpg.part", "y.jpg.partial", "y.jpg~", "y.gif", "y.txt"):
        (rig.front / name).write_bytes(jpeg)
    (rig.outside / "elsewhere.jpg").write_bytes(jpeg)
    drain(rig, poll, jpeg)
    assert rig.out.rels() == [("front", "zz-sentinel.jpg")]


def test_symlinks_are_not_followed(rig: Rig, jpeg: bytes, poll: Poll) -> None:
    (rig.outside / "secret.jpg").write_bytes(jpeg)
    (rig.outside / "dir").mkdir()
    (rig.front / "link.jpg").symlink_to(rig.outside / "secret.jpg")
    (rig.front / "linkdir").symlink_to(rig.outside / "dir", target_is_directory=True)
    (rig.front / "linkdir" / "through.jpg").write_bytes(jpeg)  # lands outside the camera
    drain(rig, poll, jpeg)
    assert rig.out.rels() == [("front", "zz-sentinel.jpg")]


def test_a_file_deleted_while_settling_is_dropped(rig: Rig, jpeg: bytes, poll: Poll) -> None:
    gone = rig.front / "gone.jpg"
    gone.write_bytes(jpeg)
    gone.unlink()
    moved = rig.front / "moved.jpg"
    moved.write_bytes(jpeg)
    os.rename(moved, rig.outside / "moved.jpg")  # moved away: deleted as far as we care
    drain(rig, poll, jpeg)
    assert rig.out.rels() == [("front", "zz-sentinel.jpg")]


def test_a_non_recursive_camera_ignores_subfolders(rig: Rig, jpeg: bytes, poll: Poll) -> None:
    (rig.flat / "top.jpg").write_bytes(jpeg)
    (rig.flat / "sub").mkdir()
    (rig.flat / "sub" / "deep.jpg").write_bytes(jpeg)
    staged = rig.flat / ".staging"
    staged.mkdir()
    (staged / "batch.jpg").write_bytes(jpeg)
    os.rename(staged, rig.flat / "staged")  # a folder renamed in: its files are in a subfolder
    batch = rig.outside / "batch"
    batch.mkdir()
    (batch / "b.jpg").write_bytes(jpeg)
    os.rename(batch, rig.flat / "batch")
    drain(rig, poll, jpeg, camera="flat")
    assert rig.out.rels() == [("flat", "top.jpg"), ("flat", "zz-sentinel.jpg")]


def test_sync_adds_and_drops_cameras(rig: Rig, jpeg: bytes, poll: Poll) -> None:
    assert rig.watcher.sync(rig.cameras) == []
    assert rig.watcher.sync(rig.cameras[1:]) == []  # front dropped
    (rig.front / "unwatched.jpg").write_bytes(jpeg)
    drain(rig, poll, jpeg, camera="flat")
    assert rig.out.rels() == [("flat", "zz-sentinel.jpg")]
    assert rig.watcher.sync(rig.cameras) == ["front"]
    (rig.front / "watched.jpg").write_bytes(jpeg)
    poll(lambda: rig.out.has("front", "watched.jpg"), message="front watched again")
    assert not rig.out.has("front", "unwatched.jpg")


def test_walk_candidates_skips_hidden_folders_and_symlinks(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for rel in ("x.jpg", "a/y.jpg", "a/b/z.png", ".hidden/h.jpg", "a/.dot.jpg"):
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "x.jpg")
    (tmp_path / "linkdir").symlink_to(tmp_path / "a", target_is_directory=True)
    found = sorted(os.path.relpath(p, tmp_path) for p in walk_candidates(str(tmp_path)))
    assert found == ["a/b/z.png", "a/y.jpg", "x.jpg"]
    flat = sorted(os.path.relpath(p, tmp_path) for p in walk_candidates(str(tmp_path), False))
    assert flat == ["x.jpg"]


# -- modes, folders that come and go -----------------------------------------------------------


@dataclass
class Solo:
    """One camera watched on its own, with what reached each of its sinks."""

    watcher: Watcher
    debouncer: Debouncer
    out: Collector
    rescans: list[str]


@pytest.fixture
def solo() -> Iterator[Callable[[CameraConfig], Solo]]:
    """Return `start(camera) -> Solo`; everything started is stopped after the test."""
    started: list[Solo] = []

    def start(camera: CameraConfig) -> Solo:
        out = Collector()
        rescans: list[str] = []
        debouncer = Debouncer(out, debounce=0.1, complete_timeout=3.0)
        debouncer.start()
        watcher = Watcher(
            Sinks(debouncer.touch, debouncer.closed, debouncer.forget, rescans.append)
        )
        rig = Solo(watcher, debouncer, out, rescans)
        started.append(rig)
        watcher.sync([camera])
        return rig

    yield start
    for rig in started:
        rig.watcher.stop()
        rig.debouncer.stop()


def test_poll_mode_sees_new_files_and_appends(
    solo: Callable[[CameraConfig], Solo], tmp_path: Path, jpeg: bytes, poll: Poll
) -> None:
    cam = tmp_path / "cam"
    (cam / "old").mkdir(parents=True)
    (cam / "old" / "before.jpg").write_bytes(jpeg)  # there before: the scan's, not the poller's
    rig = solo(CameraConfig(name="c", path=cam, watch="poll", poll_interval=0.1))
    assert rig.watcher.modes() == {"c": "poll"}
    (cam / "old" / "new.jpg").write_bytes(jpeg)
    late = cam / "late.jpg"
    with late.open("wb") as handle:
        handle.write(jpeg[:100])
        handle.flush()
        poll(lambda: len(rig.debouncer) >= 1, message="the half-written file to be seen")
        handle.write(jpeg[100:])
    poll(lambda: rig.out.rels() == [("c", "late.jpg"), ("c", "old/new.jpg")], message="both")
    assert rig.rescans == []


def test_a_missing_folder_is_watched_and_scanned_when_it_appears(
    solo: Callable[[CameraConfig], Solo], tmp_path: Path, jpeg: bytes, poll: Poll
) -> None:
    cam = tmp_path / "usb" / "cam"
    rig = solo(CameraConfig(name="c", path=cam, poll_interval=0.1))
    assert rig.watcher.modes() == {"c": None}
    cam.mkdir(parents=True)
    poll(lambda: rig.rescans == ["c"], message="a rescan once the folder is there")
    assert rig.watcher.modes() == {"c": "inotify"}
    (cam / "a.jpg").write_bytes(jpeg)
    poll(lambda: rig.out.has("c", "a.jpg"), message="a file written after it appeared")


@pytest.mark.parametrize("mode", ["inotify", "poll"])
def test_a_folder_deleted_and_created_again_is_watched_again(
    solo: Callable[[CameraConfig], Solo], tmp_path: Path, jpeg: bytes, poll: Poll, mode: str
) -> None:
    cam = tmp_path / "cam"
    cam.mkdir()
    rig = solo(CameraConfig(name="c", path=cam, watch=mode, poll_interval=0.1))  # type: ignore[arg-type]
    shutil.rmtree(cam)
    poll(lambda: rig.watcher.modes() == {"c": None}, message="the folder to be seen gone")
    cam.mkdir()
    poll(lambda: rig.rescans == ["c"], message="a rescan once it is back")
    (cam / "b.jpg").write_bytes(jpeg)
    poll(lambda: rig.out.has("c", "b.jpg"), message="a file in the new folder")
    assert rig.watcher.modes() == {"c": mode}


def test_an_unreadable_folder_is_unavailable_until_readable(
    solo: Callable[[CameraConfig], Solo], tmp_path: Path, poll: Poll
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every folder (the e2e tests cover this as another user)")
    cam = tmp_path / "cam"
    cam.mkdir(mode=0)
    try:
        rig = solo(CameraConfig(name="c", path=cam, poll_interval=0.1))
        assert rig.watcher.modes() == {"c": None}
        cam.chmod(0o755)
        poll(lambda: rig.rescans == ["c"], message="watched once readable")
    finally:
        cam.chmod(0o755)
