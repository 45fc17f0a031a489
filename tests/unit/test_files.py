"""Snapshot names, completeness of JPEG/PNG bytes, and the safe read of a snapshot."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from camwatch.files import (
    TooLarge,
    UnsafePath,
    check_complete,
    content_kind,
    is_candidate_name,
    is_complete_image,
    read_snapshot,
    relative_candidate,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.jpg", True),
        ("A.JPG", True),
        ("b.JpEg", True),
        ("c.png", True),
        ("C.PNG", True),
        ("12-00-01.jpeg", True),
        (".hidden.jpg", False),
        (".jpg", False),
        ("x.jpg.part", False),
        ("x.jpg.PART", False),
        ("x.jpg.tmp", False),
        ("x.jpg.partial", False),
        ("x.jpg~", False),
        ("x.gif", False),
        ("x.jpgx", False),
        ("notes.txt", False),
        ("jpg", False),
        ("", False),
    ],
)
def test_is_candidate_name(name: str, expected: bool) -> None:
    assert is_candidate_name(name) is expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/srv/cam/a.jpg", "a.jpg"),
        ("/srv/cam/2026-11-23/12-00-01.JPG", "2026-11-23/12-00-01.JPG"),
        ("/srv/cam//sub/./a.png", "sub/a.png"),
        ("/srv/cam/a.txt", None),
        ("/srv/cam/.a.jpg", None),
        ("/srv/cam/.git/a.jpg", None),
        ("/srv/cam/sub/.cache/a.jpg", None),
        ("/srv/cam/a.jpg.part", None),
        ("/srv/camera2/a.jpg", None),  # a sibling with the same prefix is outside
        ("/srv/other/a.jpg", None),
        ("/srv/cam/../other/a.jpg", None),
        ("/srv/cam", None),
        ("/srv/cam/", None),
    ],
)
def test_relative_candidate(path: str, expected: str | None) -> None:
    assert relative_candidate("/srv/cam", path) == expected
    assert relative_candidate("/srv/cam/", path) == expected


def test_content_kind(jpeg: bytes, png: bytes) -> None:
    assert content_kind(jpeg) == "jpeg"
    assert content_kind(png) == "png"
    assert content_kind(b"GIF89a....") is None
    assert content_kind(b"") is None


def test_complete_images(jpeg: bytes, png: bytes) -> None:
    assert is_complete_image(jpeg)
    assert is_complete_image(png)
    assert is_complete_image(jpeg + b"\x00" * 7)  # padding after EOI still means finished
    assert is_complete_image(jpeg + b"\xa5" * 7)  # whatever the padding is
    # The whole file is walked now: its ends alone, as check_complete once passed, are not.
    assert not is_complete_image(jpeg[:8] + jpeg[-64:])
    assert not is_complete_image(png[:8] + png[-64:])


def test_incomplete_or_foreign_bytes(jpeg: bytes, png: bytes) -> None:
    for data in (jpeg, png):
        for cut in (len(data) // 2, len(data) - 1, 8, 3):
            assert not is_complete_image(data[:cut]), cut
    assert not is_complete_image(b"")
    assert not is_complete_image(b"\xff\xd8\xff\xd9")  # too short to be an image
    assert not is_complete_image(b"GIF89a" + b"\x00" * 40 + b"\xff\xd9")
    assert not is_complete_image(png[:-12] + png[-8:-4] + b"XXXX")  # IEND with a wrong CRC


def test_check_complete_reads_files(tmp_path: Path, jpeg: bytes, png: bytes) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg)
    (tmp_path / "b.png").write_bytes(png)
    (tmp_path / "half.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "half.png").write_bytes(png[:-1])
    (tmp_path / "tiny.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert check_complete(str(tmp_path / "a.jpg"))
    assert check_complete(str(tmp_path / "b.png"))
    for name in ("half.jpg", "half.png", "tiny.jpg", "empty.jpg", "missing.jpg"):
        assert not check_complete(str(tmp_path / name)), name


def test_check_complete_does_not_follow_symlinks(tmp_path: Path, jpeg: bytes) -> None:
    (tmp_path / "real.jpg").write_bytes(jpeg)
    (tmp_path / "link.jpg").symlink_to(tmp_path / "real.jpg")
    assert check_complete(str(tmp_path / "real.jpg"))
    assert not check_complete(str(tmp_path / "link.jpg"))


def test_check_complete_refuses_folders_and_fifos(tmp_path: Path) -> None:
    (tmp_path / "dir.jpg").mkdir()
    os.mkfifo(tmp_path / "fifo.jpg")
    assert not check_complete(str(tmp_path / "dir.jpg"))
    assert not check_complete(str(tmp_path / "fifo.jpg"))  # and does not block on it


# -- read_snapshot -------------------------------------------------------------------------------


@pytest.fixture
def cam(tmp_path: Path) -> Path:
    """Return a camera folder (resolved, as the configuration gives it)."""
    folder = tmp_path / "cam"
    folder.mkdir()
    return folder.resolve()


def test_read_snapshot_returns_bytes_and_stat(cam: Path, jpeg: bytes) -> None:
    path = cam / "sub" / "a.jpg"
    path.parent.mkdir()
    path.write_bytes(jpeg)
    snap = read_snapshot(cam, str(path), max_bytes=len(jpeg))
    assert snap.data == jpeg
    assert snap.size == len(jpeg)
    assert snap.mtime_ns == path.stat().st_mtime_ns


def test_read_snapshot_refuses_a_symlink(cam: Path, tmp_path: Path, jpeg: bytes) -> None:
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(jpeg)
    (cam / "link.jpg").symlink_to(outside)
    (cam / "inside.jpg").write_bytes(jpeg)
    (cam / "link2.jpg").symlink_to(cam / "inside.jpg")  # even one pointing inside
    with pytest.raises(UnsafePath, match="symbolic link"):
        read_snapshot(cam, str(cam / "link.jpg"), 10**6)
    with pytest.raises(UnsafePath, match="symbolic link"):
        read_snapshot(cam, str(cam / "link2.jpg"), 10**6)


def test_read_snapshot_refuses_a_symlinked_parent_leading_outside(
    cam: Path, tmp_path: Path, jpeg: bytes
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.jpg").write_bytes(jpeg)
    (cam / "door").symlink_to(elsewhere, target_is_directory=True)
    # Refused as a link, without resolving where it leads (that would be a lookup outside).
    with pytest.raises(UnsafePath, match="symbolically linked folder"):
        read_snapshot(cam, str(cam / "door" / "a.jpg"), 10**6)


def test_read_snapshot_refuses_a_symlinked_folder_even_inside_the_camera(
    cam: Path, jpeg: bytes
) -> None:
    (cam / "real").mkdir()
    (cam / "real" / "a.jpg").write_bytes(jpeg)
    (cam / "alias").symlink_to(cam / "real", target_is_directory=True)
    assert read_snapshot(cam, str(cam / "real" / "a.jpg"), 10**6).data == jpeg
    with pytest.raises(UnsafePath, match="symbolically linked folder"):
        read_snapshot(cam, str(cam / "alias" / "a.jpg"), 10**6)


def test_read_snapshot_refuses_paths_outside_the_camera(
    cam: Path, tmp_path: Path, jpeg: bytes
) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg)
    sibling = tmp_path / "cam2"
    sibling.mkdir()
    (sibling / "b.jpg").write_bytes(jpeg)
    with pytest.raises(UnsafePath):
        read_snapshot(cam, str(tmp_path / "a.jpg"), 10**6)
    with pytest.raises(UnsafePath):
        read_snapshot(cam, str(cam / ".." / "a.jpg"), 10**6)
    with pytest.raises(UnsafePath):
        read_snapshot(cam, str(sibling / "b.jpg"), 10**6)


def test_read_snapshot_refuses_what_is_not_a_regular_file(cam: Path) -> None:
    (cam / "dir.jpg").mkdir()
    os.mkfifo(cam / "fifo.jpg")
    with pytest.raises(UnsafePath, match="regular"):
        read_snapshot(cam, str(cam / "dir.jpg"), 10**6)
    with pytest.raises(UnsafePath, match="regular"):
        read_snapshot(cam, str(cam / "fifo.jpg"), 10**6)


def test_read_snapshot_too_large(cam: Path, jpeg: bytes) -> None:
    (cam / "a.jpg").write_bytes(jpeg)
    assert read_snapshot(cam, str(cam / "a.jpg"), len(jpeg)).size == len(jpeg)
    with pytest.raises(TooLarge, match=f"max_image_bytes {len(jpeg) - 1}"):
        read_snapshot(cam, str(cam / "a.jpg"), len(jpeg) - 1)


def test_read_snapshot_of_a_vanished_file(cam: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_snapshot(cam, str(cam / "gone.jpg"), 10**6)


def test_read_snapshot_of_nested_folders(cam: Path, jpeg: bytes) -> None:
    path = cam / "2026" / "11" / "23" / "a.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(jpeg)
    assert read_snapshot(cam, str(path), 10**6).data == jpeg
    # A path written with redundant parts names the same file below the folder.
    assert read_snapshot(cam, f"{cam}/2026//11/./23/a.jpg", 10**6).data == jpeg


def test_read_snapshot_refuses_a_symlinked_folder_deeper_down(
    cam: Path, tmp_path: Path, jpeg: bytes
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.jpg").write_bytes(b"secret")
    (cam / "day").mkdir()
    (cam / "day" / "hour").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath, match="symbolically linked folder"):
        read_snapshot(cam, str(cam / "day" / "hour" / "a.jpg"), 10**6)


def test_read_snapshot_refuses_a_hard_linked_file(cam: Path, tmp_path: Path, jpeg: bytes) -> None:
    # A hard link is a way out of the folder that no symlink check sees: the same bytes have a
    # name outside (here a "secret" the service can read).
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg)
    os.link(secret, cam / "a.jpg")
    with pytest.raises(UnsafePath, match="more than one hard link"):
        read_snapshot(cam, str(cam / "a.jpg"), 10**6)


def test_read_snapshot_never_follows_a_folder_swapped_while_reading(
    cam: Path, tmp_path: Path, jpeg: bytes
) -> None:
    """A second process flips a sub-folder between a real folder and a symbolic link to an
    outside folder while the snapshot is read: the outside file is never returned."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = b"SECRET-" + b"x" * 64
    (outside / "a.jpg").write_bytes(secret)
    real = cam / "sub"
    real.mkdir()
    (real / "a.jpg").write_bytes(jpeg)
    aside = cam / "sub.real"
    stop = threading.Event()

    def flip() -> None:
        # Each rename() is atomic: "sub" is the real folder, the link, or briefly missing.
        while not stop.is_set():
            os.rename(real, aside)
            os.symlink(outside, real)
            time.sleep(0)
            os.rename(real, cam / "sub.link")
            os.rename(aside, real)
            os.unlink(cam / "sub.link")

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    leaked = read = refused = 0
    deadline = time.monotonic() + 1.5
    try:
        for _ in range(200_000):  # bounded, and bounded in time
            if time.monotonic() > deadline:
                break
            try:
                data = read_snapshot(cam, str(real / "a.jpg"), 10**6).data
            except (UnsafePath, OSError):
                refused += 1
                continue
            read += 1
            leaked += data == secret
            assert data in (jpeg, secret)
    finally:
        stop.set()
        flipper.join(5)
    assert leaked == 0, f"{leaked} of {read + refused} reads returned the outside file"
    assert read > 0 and refused > 0  # both sides of the race were met


def test_check_complete_below_a_root_refuses_a_symlinked_folder(
    cam: Path, tmp_path: Path, jpeg: bytes
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.jpg").write_bytes(jpeg)
    (cam / "real").mkdir()
    (cam / "real" / "a.jpg").write_bytes(jpeg)
    (cam / "door").symlink_to(outside, target_is_directory=True)
    assert check_complete(str(cam / "real" / "a.jpg"), root=cam)
    assert not check_complete(str(cam / "door" / "a.jpg"), root=cam)
    assert not check_complete(str(outside / "a.jpg"), root=cam)
