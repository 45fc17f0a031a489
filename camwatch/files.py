"""Which files are camera snapshots, and whether one has been written completely.

Pure checks on names and bytes, plus the one safe way to read a snapshot: without following a
symbolic link and without leaving the camera's folder.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
TEMP_SUFFIXES = (".tmp", ".part", ".partial", "~")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"


def is_candidate_name(name: str) -> bool:
    """Given a file's base name, return whether it may be a snapshot: `.jpg`, `.jpeg` or `.png`
    in any case, not hidden, not a temporary name."""
    lower = name.lower()
    return (
        not name.startswith(".")
        and lower.endswith(IMAGE_SUFFIXES)
        and not lower.endswith(TEMP_SUFFIXES)
    )


def relative_candidate(root: str, path: str) -> str | None:
    """Given a camera's resolved folder and a path below it, return the path relative to the
    folder if it names a candidate snapshot (no hidden component, image name), else None."""
    path = os.path.normpath(path)
    if not path.startswith(root.rstrip(os.sep) + os.sep):
        return None
    rel = path[len(root.rstrip(os.sep)) + 1 :]
    parts = rel.split(os.sep)
    if any(part.startswith(".") or part in ("", "..") for part in parts):
        return None
    return rel if is_candidate_name(parts[-1]) else None


def content_kind(head: bytes) -> str | None:
    """Given the first bytes of a file, return "jpeg", "png" or None."""
    if head[:2] == b"\xff\xd8":
        return "jpeg"
    if head[:8] == _PNG_SIGNATURE:
        return "png"
    return None


def is_complete_image(data: bytes) -> bool:
    """Given a file's bytes (or its first 8 bytes followed by its last 8), return whether it is a
    whole JPEG (SOI ... EOI) or PNG (signature ... IEND)."""
    kind = content_kind(data)
    if kind == "jpeg":
        # Some encoders pad after EOI; a few trailing NULs still mean "finished".
        return data.rstrip(b"\x00")[-2:] == b"\xff\xd9" and len(data) > 4
    if kind == "png":
        return data[-8:] == _PNG_IEND and len(data) > 16
    return False


def check_complete(path: str) -> bool:
    """Given a path, return whether the file there is a complete image, reading only its ends.
    Symbolic links and non-regular files are never complete."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size < 16:
            return False
        head = os.pread(fd, 8, 0)
        tail_len = min(st.st_size - 8, 64)
        tail = os.pread(fd, tail_len, st.st_size - tail_len)
        return is_complete_image(head + tail)
    except OSError:
        return False
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Snapshot:
    """A snapshot's bytes as read, with the stat taken on the same open file."""

    data: bytes
    size: int
    mtime_ns: int


class UnsafePath(Exception):
    """The path leaves the camera's folder or is not a regular file."""


class TooLarge(Exception):
    """The file is larger than the configured maximum."""


def read_snapshot(root: Path, path: str, max_bytes: int) -> Snapshot:
    """Given a camera's resolved folder and a path below it, return the file's bytes. Raise
    UnsafePath if the path is a symbolic link, goes through one, is not a regular file, or
    resolves outside the folder; TooLarge above `max_bytes`; FileNotFoundError if it vanished."""
    folder = os.path.dirname(os.path.abspath(path))
    parent = os.path.realpath(folder)
    root_s = str(root)
    if parent != root_s and not parent.startswith(root_s.rstrip(os.sep) + os.sep):
        raise UnsafePath("resolves outside the camera folder")
    if parent != folder:
        # The camera's folder is resolved, so a path below it resolves to itself unless one of
        # its folders is a symbolic link (which the watcher and the scan never follow).
        raise UnsafePath("is in a symbolically linked folder")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component is a symbolic link
            raise UnsafePath("is a symbolic link") from None
        raise
    try:
        # Checked before fdopen: it refuses a folder with IsADirectoryError (and keeps the fd).
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath("is not a regular file")
        if st.st_size > max_bytes:
            raise TooLarge(f"{st.st_size} bytes > max_image_bytes {max_bytes}")
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TooLarge(f"more than max_image_bytes {max_bytes}")
    return Snapshot(data=data, size=len(data), mtime_ns=st.st_mtime_ns)
