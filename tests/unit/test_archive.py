"""The `after:` action: delete, or move into the archive keeping the sub-path, never overwriting."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

import pytest

from camwatch.archive import apply_after, finish_file, free_name, move_without_overwrite
from camwatch.errors import UnsafePath


def test_keep_leaves_the_file(tmp_path: Path) -> None:
    src = tmp_path / "a.jpg"
    src.write_bytes(b"x")
    assert apply_after("keep", None, "cam", str(src), "a.jpg") is None
    assert src.read_bytes() == b"x"


def test_delete_removes_the_file(tmp_path: Path) -> None:
    src = tmp_path / "a.jpg"
    src.write_bytes(b"x")
    assert apply_after("delete", None, "cam", str(src), "a.jpg") is None
    assert not src.exists()


def test_move_keeps_the_camera_sub_path(tmp_path: Path) -> None:
    src = tmp_path / "cam" / "2026-11-23" / "12-00-01.jpg"
    src.parent.mkdir(parents=True)
    src.write_bytes(b"snapshot")
    archive = tmp_path / "archive"
    moved = apply_after("move", archive, "front", str(src), "2026-11-23/12-00-01.jpg")
    assert moved == str(archive / "front" / "2026-11-23" / "12-00-01.jpg")
    assert Path(moved).read_bytes() == b"snapshot"
    assert not src.exists()


def test_move_never_overwrites(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    (archive / "front").mkdir(parents=True)
    (archive / "front" / "a.jpg").write_bytes(b"first")
    (archive / "front" / "a-1.jpg").write_bytes(b"second")
    src = tmp_path / "a.jpg"
    src.write_bytes(b"third")
    moved = apply_after("move", archive, "front", str(src), "a.jpg")
    assert moved == str(archive / "front" / "a-2.jpg")
    assert (archive / "front" / "a.jpg").read_bytes() == b"first"
    assert (archive / "front" / "a-1.jpg").read_bytes() == b"second"
    assert Path(moved).read_bytes() == b"third"


def test_free_name_counts_up(tmp_path: Path) -> None:
    target = tmp_path / "x.png"
    assert free_name(target) == target
    target.write_bytes(b"")
    assert free_name(target) == tmp_path / "x-1.png"


def test_move_of_a_vanished_file_raises_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        move_without_overwrite(str(tmp_path / "gone.jpg"), tmp_path / "archive" / "gone.jpg")
    assert not (tmp_path / "archive" / "gone.jpg").exists()


# -- never outside the camera folder -------------------------------------------------------------


@pytest.fixture
def cam(tmp_path: Path) -> Path:
    """Return a camera folder (resolved, as the configuration gives it)."""
    folder = tmp_path / "cam"
    folder.mkdir()
    return folder.resolve()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Return a folder outside the camera with a file the service can read."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"secret")
    return folder


def test_delete_through_a_symlinked_folder_leaves_the_outside_file(
    cam: Path, outside: Path
) -> None:
    # The folder was real when the image was read; an uploader swapped it for a link since.
    (cam / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath, match="symbolically linked folder"):
        apply_after("delete", None, "front", str(cam / "sub" / "a.jpg"), "sub/a.jpg")
    assert (outside / "a.jpg").read_bytes() == b"secret"


def test_finish_file_reports_a_symlinked_folder_as_a_failed_after_action(
    cam: Path, outside: Path
) -> None:
    (cam / "sub").symlink_to(outside, target_is_directory=True)
    blog = mock.Mock()
    error = finish_file("delete", None, "front", str(cam / "sub" / "a.jpg"), "sub/a.jpg", blog)
    assert error == "is in a symbolically linked folder"
    blog.warning.assert_called_once()
    assert (outside / "a.jpg").exists()


def test_delete_of_a_symlink_removes_the_link_only(cam: Path, outside: Path) -> None:
    (cam / "a.jpg").symlink_to(outside / "a.jpg")
    apply_after("delete", None, "front", str(cam / "a.jpg"), "a.jpg")
    assert not os.path.lexists(cam / "a.jpg")
    assert (outside / "a.jpg").read_bytes() == b"secret"


def test_move_through_a_symlinked_folder_archives_nothing(
    cam: Path, outside: Path, tmp_path: Path
) -> None:
    (cam / "sub").symlink_to(outside, target_is_directory=True)
    archive = tmp_path / "archive"
    with pytest.raises(UnsafePath, match="symbolically linked folder"):
        apply_after("move", archive, "front", str(cam / "sub" / "a.jpg"), "sub/a.jpg")
    assert (outside / "a.jpg").read_bytes() == b"secret"
    assert not (archive / "front" / "sub" / "a.jpg").exists()


def test_move_of_a_symlink_or_a_hard_link_is_refused(
    cam: Path, outside: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    (cam / "link.jpg").symlink_to(outside / "a.jpg")
    os.link(outside / "a.jpg", cam / "hard.jpg")
    with pytest.raises(UnsafePath, match="symbolic link"):
        apply_after("move", archive, "front", str(cam / "link.jpg"), "link.jpg")
    with pytest.raises(UnsafePath, match="more than one hard link"):
        apply_after("move", archive, "front", str(cam / "hard.jpg"), "hard.jpg")
    assert (outside / "a.jpg").read_bytes() == b"secret"
    assert list(archive.rglob("*.jpg")) == []


def test_move_does_not_follow_a_link_planted_in_the_archive(
    cam: Path, outside: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    (archive / "front").mkdir(parents=True)
    (archive / "front" / "sub").symlink_to(outside, target_is_directory=True)
    (cam / "sub").mkdir()
    (cam / "sub" / "b.jpg").write_bytes(b"snapshot")
    with pytest.raises(UnsafePath, match="archive"):
        apply_after("move", archive, "front", str(cam / "sub" / "b.jpg"), "sub/b.jpg")
    assert sorted(p.name for p in outside.iterdir()) == ["a.jpg"]
    assert (cam / "sub" / "b.jpg").read_bytes() == b"snapshot"


def test_delete_while_the_folder_is_swapped_never_deletes_outside(
    cam: Path, tmp_path: Path
) -> None:
    """A second process flips the folder between a real one and a link to an outside folder
    while `after: delete` runs again and again: only files inside are ever deleted."""
    outside = tmp_path / "outside"
    outside.mkdir()
    real = cam / "sub"
    real.mkdir()
    aside = cam / "sub.real"
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            os.rename(real, aside)
            os.symlink(outside, real)
            time.sleep(0)
            os.rename(real, cam / "sub.link")
            os.rename(aside, real)
            os.unlink(cam / "sub.link")

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    deleted = lost = 0
    deadline = time.monotonic() + 1.5
    try:
        for n in range(20_000):
            if time.monotonic() > deadline:
                break
            name = f"{n}.jpg"
            (outside / name).write_bytes(b"secret")
            with contextlib.suppress(FileNotFoundError):  # "sub" missing for a moment
                (aside if aside.is_dir() else real).joinpath(name).write_bytes(b"snapshot")
            try:
                apply_after("delete", None, "front", str(real / name), f"sub/{name}")
                deleted += 1
            except (UnsafePath, OSError):
                pass
            lost += not (outside / name).exists()
    finally:
        stop.set()
        flipper.join(5)
    assert lost == 0, f"{lost} outside files deleted"
    assert deleted > 0


def test_move_keeps_nested_sub_folders(cam: Path, tmp_path: Path) -> None:
    src = cam / "2026" / "11" / "23" / "a.jpg"
    src.parent.mkdir(parents=True)
    src.write_bytes(b"snapshot")
    archive = tmp_path / "archive"
    moved = apply_after("move", archive, "front", str(src), "2026/11/23/a.jpg")
    assert moved == str(archive / "front" / "2026" / "11" / "23" / "a.jpg")
    assert Path(moved).read_bytes() == b"snapshot"
    assert not src.exists()


def test_move_with_an_explicit_root(cam: Path, outside: Path, tmp_path: Path) -> None:
    (cam / "sub").mkdir()
    (cam / "sub" / "a.jpg").write_bytes(b"snapshot")
    archive = tmp_path / "archive"
    moved = apply_after("move", archive, "front", str(cam / "sub" / "a.jpg"), "sub/a.jpg", root=cam)
    assert moved == str(archive / "front" / "sub" / "a.jpg")
    with pytest.raises(UnsafePath, match="outside"):
        apply_after("delete", None, "front", str(outside / "a.jpg"), "a.jpg", root=cam)
    assert (outside / "a.jpg").exists()


def test_a_relpath_that_does_not_end_the_path_is_refused(cam: Path, outside: Path) -> None:
    with pytest.raises(UnsafePath):
        apply_after("delete", None, "front", str(outside / "a.jpg"), "../outside/a.jpg")
    with pytest.raises(UnsafePath):
        apply_after("delete", None, "front", str(outside / "a.jpg"), "b.jpg")
    assert (outside / "a.jpg").exists()


def _cross_device_target(tmp_path: Path) -> Path | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        return shm
    return None


def test_move_across_filesystems_copies_then_removes(cam: Path, tmp_path: Path) -> None:
    other = _cross_device_target(tmp_path)
    if other is None:
        pytest.skip("no second filesystem to move to")
    archive = Path(tempfile.mkdtemp(dir=other, prefix="camwatch-test-"))
    try:
        (archive / "front").mkdir()
        (archive / "front" / "a.jpg").write_bytes(b"first")
        src = cam / "a.jpg"
        src.write_bytes(b"snapshot")
        os.chmod(src, 0o640)
        os.utime(src, ns=(1_000_000_000, 2_000_000_000))
        moved = Path(apply_after("move", archive, "front", str(src), "a.jpg") or "")
        assert moved == archive / "front" / "a-1.jpg"
        assert moved.read_bytes() == b"snapshot"
        assert (moved.stat().st_mode & 0o777, moved.stat().st_mtime_ns) == (0o640, 2 * 10**9)
        assert (archive / "front" / "a.jpg").read_bytes() == b"first"
        assert not src.exists()
    finally:
        shutil.rmtree(archive)


def test_move_when_hard_links_fail_copies_from_the_open_file(
    cam: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    (cam / "sub").mkdir()
    src = cam / "sub" / "a.jpg"
    src.write_bytes(b"snapshot")
    archive = tmp_path / "archive"
    moved = apply_after("move", archive, "front", str(src), "sub/a.jpg")
    assert moved == str(archive / "front" / "sub" / "a.jpg")
    assert Path(moved).read_bytes() == b"snapshot"
    assert not src.exists()
