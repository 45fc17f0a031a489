"""The `after:` action: delete, or move into the archive keeping the sub-path, never overwriting."""

from __future__ import annotations

from pathlib import Path

import pytest

from camwatch.archive import apply_after, free_name, move_without_overwrite


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
