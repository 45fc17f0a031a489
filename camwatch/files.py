"""Which files are camera snapshots, and whether one has been written completely.

Pure checks on names and bytes, plus the one safe way to read a snapshot: without following a
symbolic link and without leaving the camera's folder.

Completeness is decided by walking the image's structure, not by looking at its last bytes:
recorders pad JPEGs after EOI with anything, and the EXIF thumbnail inside a camera JPEG ends in
FF D9 too, so a file cut right after its thumbnail ends the way a whole one does. A JPEG is
followed segment by segment (by their lengths) and scan by scan to the EOI that ends the image;
a PNG chunk by chunk (by their lengths and CRCs) to IEND. Whatever follows the end is padding.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from camwatch.errors import TooLarge, UnsafePath

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
TEMP_SUFFIXES = (".tmp", ".part", ".partial", "~")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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


# Between segments: optional 0xFF fill bytes, then the marker byte (possessive: no backtracking
# over a long run of 0xFF in a hostile file).
_JPEG_MARKER = re.compile(rb"\xff++([^\xff])")
# The marker that ends entropy-coded data. FF 00 is a stuffed data byte and FF D0..D7 are restart
# markers, both part of the data; in a run of fill bytes this matches at the last 0xFF.
_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic):
# C4 (DHT), C8 (JPG) and CC (DAC) share the range but are tables, not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_SOS = 0xDA
_JPEG_EOI = 0xD9
_JPEG_TEM = 0x01
_PNG_CHUNK_HEAD = struct.Struct(">I4s")
_PNG_MAX_LENGTH = 0x7FFFFFFF  # PNG caps chunk lengths at 2**31 - 1


def _jpeg_end(data: memoryview) -> int | None:
    """Given bytes starting with SOI, return the offset just past the EOI that ends the image."""
    size = len(data)
    pos = 2
    framed = scanned = False
    while True:
        found = _JPEG_MARKER.match(data, pos)
        if found is None:
            return None
        pos = found.end()
        marker = data[pos - 1]
        if marker == _JPEG_EOI:
            # SOI..EOI with no scan is a tables-only stream (or a stub), not an image.
            return pos if scanned else None
        if marker == _JPEG_TEM or 0xD0 <= marker <= 0xD7:
            continue  # standalone: no length follows
        if marker in (0x00, 0xD8):
            return None
        if pos + 2 > size:
            return None
        length = (data[pos] << 8) | data[pos + 1]
        end = pos + length
        if length < 2 or end > size:
            return None
        if marker in _JPEG_SOF:
            framed = True
        elif marker == _JPEG_SOS:
            if not framed:
                return None
            # The scan's data runs to the next real marker: EOI, or DNL / tables / the next SOS
            # of a progressive image, which the loop then reads like any other segment.
            scan_end = _JPEG_SCAN_END.search(data, end)
            if scan_end is None:
                return None
            scanned = True
            end = scan_end.start()
        pos = end


def _png_end(data: memoryview) -> int | None:
    """Given bytes starting with the PNG signature, return the offset just past IEND's CRC."""
    size = len(data)
    pos = len(_PNG_SIGNATURE)
    has_data = False
    while True:
        if pos + 12 > size:
            return None
        length, kind = _PNG_CHUNK_HEAD.unpack_from(data, pos)
        end = pos + 12 + length
        if length > _PNG_MAX_LENGTH or end > size or not kind.isalpha():
            return None
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            return None
        if pos == len(_PNG_SIGNATURE) and kind != b"IHDR":
            return None
        if kind == b"IDAT":
            has_data = True
        elif kind == b"IEND":
            return end if has_data and length == 0 else None
        pos = end


def image_end(data: bytes | bytearray | memoryview) -> int | None:
    """Given a file's bytes, return the offset just past the end of the JPEG (its EOI) or PNG
    (IEND's CRC) they start with, or None if they do not hold a whole one. Bytes after the end
    are allowed (padding). Never raises on any bytes-like input."""
    try:
        view = memoryview(data).cast("B")
    except TypeError:  # a non-contiguous view cannot be cast; its copy can
        view = memoryview(memoryview(data).tobytes())
    kind = content_kind(bytes(view[:8]))
    if kind == "jpeg":
        return _jpeg_end(view)
    if kind == "png":
        return _png_end(view)
    return None


def is_complete_image(data: bytes | bytearray | memoryview) -> bool:
    """Given a file's bytes, return whether they hold a whole JPEG or PNG (padding after its end
    allowed)."""
    return image_end(data) is not None


# Each folder below a camera's root is opened relative to the one above it and never through a
# symbolic link: O_NOFOLLOW on a single name is atomic, a check of the whole path followed by an
# open of it again is not (a folder swapped for a link in between leads anywhere).
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
# The camera's root itself was resolved by the configuration; the administrator, not the
# uploaders, owns the path up to it.
_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY
# O_NONBLOCK: opening a FIFO planted under an image name must not hang the worker.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


def check_complete(path: str, root: str | os.PathLike[str] | None = None) -> bool:
    """Given a path, return whether the file there is a complete JPEG or PNG, reading it whole.
    Symbolic links, non-regular files and files that cannot be read are never complete, except
    that a PermissionError on opening propagates: the caller reports it at once rather than
    waiting for the file to complete. Given the camera's resolved folder as `root`, the path is
    opened one folder at a time below it (see `open_below`), so that a folder swapped for a
    symbolic link is not followed either; outside the folder, the file is never complete."""
    try:
        fd = os.open(path, _FILE_FLAGS) if root is None else open_below(root, path)
    except PermissionError:
        raise
    except (OSError, UnsafePath):
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        data = os.pread(fd, st.st_size, 0)
    except OSError:
        return False
    finally:
        os.close(fd)
    return image_end(data) is not None


def parts_below(root: str | os.PathLike[str], path: str) -> list[str]:
    """Given a camera's resolved folder and a path below it, return the path's names below the
    folder (the last is the file's). Raise UnsafePath if the path is not below the folder. The
    path is normalised without looking at the disk: what it names is then opened name by name
    below the folder, never through a link."""
    base = os.path.normpath(os.fspath(root))
    prefix = base if base.endswith(os.sep) else base + os.sep
    full = os.path.normpath(os.path.abspath(path))
    if not full.startswith(prefix) or full == base:
        raise UnsafePath("resolves outside the camera folder")
    parts = full[len(prefix) :].split(os.sep)
    if any(part in ("", ".", "..") for part in parts):  # normpath leaves none; kept as a guard
        raise UnsafePath("resolves outside the camera folder")
    return parts


def open_folder(root: str | os.PathLike[str], names: list[str]) -> int:
    """Open the camera's resolved folder, then each of `names` in turn as a folder inside the
    previous one, never following a symbolic link. Return the descriptor of the last (the
    caller closes it). Raise UnsafePath if one of them is a symbolic link (or anything else that
    is not a folder: OSError ENOTDIR), FileNotFoundError if one vanished."""
    fd = os.open(root, _ROOT_FLAGS)
    try:
        for name in names:
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                # Linux says ENOTDIR (not ELOOP) for a link opened with O_DIRECTORY|O_NOFOLLOW:
                # look at the entry itself (lstat, in the folder already open) to say which.
                if exc.errno in (errno.ENOTDIR, errno.ELOOP) and _is_link(name, fd):
                    raise UnsafePath("is in a symbolically linked folder") from None
                raise
            os.close(fd)
            fd = sub
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_below(root: str | os.PathLike[str], path: str) -> int:
    """Open a file below a camera's resolved folder for reading, every folder on the way and the
    file itself without following a symbolic link. Return the descriptor (not checked to be a
    regular file: fstat it). Raise UnsafePath for a link or a path outside the folder."""
    parts = parts_below(root, path)
    folder = open_folder(root, parts[:-1])
    try:
        return os.open(parts[-1], _FILE_FLAGS, dir_fd=folder)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last name is a symbolic link
            raise UnsafePath("is a symbolic link") from None
        raise
    finally:
        os.close(folder)


def check_size(size: int, max_bytes: int) -> None:
    """Raise TooLarge if a file of `size` bytes is over `max_bytes`: the one wording of the
    daemon's skip and of `camwatch caption`'s refusal."""
    if size > max_bytes:
        raise TooLarge(f"{size} bytes > max_image_bytes {max_bytes}")


@dataclass(frozen=True)
class Snapshot:
    """A snapshot's bytes as read, with the stat taken on the same open file."""

    data: bytes
    size: int
    mtime_ns: int


def read_snapshot(root: Path, path: str, max_bytes: int) -> Snapshot:
    """Given a camera's resolved folder and a path below it, return the file's bytes. Raise
    UnsafePath if the path is a symbolic link, goes through one, is not a regular file, has more
    than one hard link, or is outside the folder; TooLarge above `max_bytes`; FileNotFoundError
    if it vanished.

    Every name is opened relative to the folder above it (`open_below`), so a folder swapped for
    a symbolic link between a check and the open cannot lead outside: there is no second
    lookup of the path."""
    fd = open_below(root, path)
    try:
        # Checked before fdopen: it refuses a folder with IsADirectoryError (and keeps the fd).
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath("is not a regular file")
        if st.st_nlink > 1:
            # Another name for the same bytes may be outside the camera folder (a hard link to
            # a file the service can read): the bytes are not known to belong to the camera.
            raise UnsafePath("has more than one hard link")
        check_size(st.st_size, max_bytes)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TooLarge(f"more than max_image_bytes {max_bytes}")
    return Snapshot(data=data, size=len(data), mtime_ns=st.st_mtime_ns)


def printable_path(path: str) -> str:
    """Given a path as the OS gave it, return it as valid text: unchanged when it is valid
    UTF-8, else with each undecodable byte written as `\\xNN` (a name from a legacy Latin-1
    client), so that it can go into a JSON body or a multipart header."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    return path
