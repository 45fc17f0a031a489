"""Thumbnails for the timeline page: made on request from the image's file while it is there,
kept in a small cache, and never served once the file is gone.

The file is opened the way the daemon reads a snapshot (`files.open_below` / `read_snapshot`):
every folder below the camera's and the file itself without following a symbolic link, a
regular file with one link, inside the camera's folder. It must still be the image recorded
(the same size and mtime, and the same sha256 when one was recorded), so a file replaced under
the same name is not shown as the old image.

Decoding is bounded before Pillow sees the bytes: the width and height the file declares are
read from its header (PNG IHDR, JPEG SOF) and an image larger than `MAX_PIXELS` (JPEG, decoded
at a reduced scale with `draft`) or `MAX_DECODED_PIXELS` (PNG, decoded whole) is refused, as is
a JPEG with more than `MAX_JPEG_SCANS` scans (each progressive scan is another pass over the
whole image). A decompression bomb costs a header read.

The cache is keyed by (image id, size, mtime): a cached thumbnail is only ever returned after the
file was opened again and found unchanged, so a deleted file's thumbnail is never served.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import structlog
from PIL import Image, ImageOps, UnidentifiedImageError

from camwatch.errors import ImageError
from camwatch.files import content_kind, open_below, read_snapshot

log = structlog.get_logger(__name__)

THUMB_BOX = (400, 400)  # the largest thumbnail, width and height (aspect kept)
JPEG_QUALITY = 75
MAX_PIXELS = 64_000_000  # a JPEG may declare this many pixels (decoded at 1/8 of each side)
MAX_DECODED_PIXELS = 16_000_000  # a PNG may declare this many (decoded whole: ~64 MB at most)
MAX_JPEG_SCANS = 64
CACHE_BYTES = 8_000_000
DECODERS = 2  # thumbnails made at once: a page's burst of requests must not starve the pipeline

# JPEG start-of-frame markers (C4 DHT, C8 JPG and CC DAC share the range but are not frames).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class ThumbnailRefused(Exception):
    """The file cannot be made into a thumbnail: not a JPEG or PNG, too large, or undecodable."""


@dataclass(frozen=True)
class ImageFile:
    """Where an image's file is, and what it was when it was recorded."""

    id: int
    root: Path  # the camera's resolved folder
    path: str
    size: int | None
    mtime_ns: int | None
    sha256: str | None


def declared_size(data: bytes) -> tuple[int, int] | None:
    """Given the bytes of a JPEG or PNG, return the (width, height) its header declares, or None
    if the header cannot be read."""
    kind = content_kind(data[:8])
    if kind == "png":
        if len(data) >= 24 and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return width, height
        return None
    if kind != "jpeg":
        return None
    pos = 2
    while pos + 4 <= len(data):  # pos grows on every pass
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length follows
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # a scan or the end before any frame header
            return None
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        if length < 2:
            return None
        pos += 2 + length
    return None


def make_thumbnail(data: bytes, box: tuple[int, int] = THUMB_BOX) -> bytes:
    """Given the bytes of a JPEG or PNG, return a JPEG thumbnail fitting in `box`, turned the
    way its EXIF orientation says. Raise ThumbnailRefused for anything else, for an image
    larger than the limits above, and for bytes that do not decode."""
    kind = content_kind(data[:8])
    size = declared_size(data)
    if kind is None or size is None:
        raise ThumbnailRefused("not a JPEG or PNG")
    pixels = size[0] * size[1]
    limit = MAX_PIXELS if kind == "jpeg" else MAX_DECODED_PIXELS
    if pixels == 0 or pixels > limit:
        raise ThumbnailRefused(f"{size[0]}x{size[1]} pixels (at most {limit})")
    if kind == "jpeg" and data.count(b"\xff\xda") > MAX_JPEG_SCANS:
        raise ThumbnailRefused(f"more than {MAX_JPEG_SCANS} JPEG scans")
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG", "PNG")) as image:
            if image.width * image.height > limit:  # Pillow read another header than ours
                raise ThumbnailRefused(f"{image.width}x{image.height} pixels (at most {limit})")
            if kind == "jpeg":
                # Decode at 1/2, 1/4 or 1/8 scale, the smallest still at least twice the box.
                image.draft("RGB", (box[0] * 2, box[1] * 2))
            image.thumbnail(box)
            turned = ImageOps.exif_transpose(image)
            small = turned.convert("RGB")
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError):
        # OSError: truncated or corrupt data; SyntaxError: Pillow's word for a bad header.
        raise ThumbnailRefused("cannot be decoded") from None
    out = io.BytesIO()
    small.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


class _ByteLRU:
    """Thumbnails by key, the least recently used dropped first once over `capacity` bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0
        self._items: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int, int]) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[int, int, int], value: bytes) -> None:
        if len(value) > self.capacity:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.size -= len(old)
            self._items[key] = value
            self.size += len(value)
            while self.size > self.capacity:  # ends: each pass removes one item
                _, dropped = self._items.popitem(last=False)
                self.size -= len(dropped)


class Thumbnails:
    """The thumbnails of recorded images, made from their files while these are there."""

    def __init__(
        self, max_image_bytes: int, cache_bytes: int = CACHE_BYTES, box: tuple[int, int] = THUMB_BOX
    ) -> None:
        """Given the largest file that may be read (`caption.max_image_bytes`), the cache's
        capacity in bytes and the thumbnails' box, make an empty cache."""
        self.max_image_bytes = max_image_bytes
        self.box = box
        self._cache = _ByteLRU(cache_bytes)
        self._decoders = threading.BoundedSemaphore(DECODERS)

    def missing(self, image: ImageFile) -> str | None:
        """Return None when the image's file is there, safe to open, and still the image
        recorded (size and mtime); else why there is no thumbnail ("file gone", ...)."""
        return _probe(image, self.max_image_bytes)[1]

    def get(self, image: ImageFile) -> bytes | None:
        """Return the image's thumbnail (a JPEG), or None when its file is gone, changed,
        unsafe to open, or cannot be made into one. The file is looked at on every call."""
        st, _ = _probe(image, self.max_image_bytes)
        if st is None:
            return None
        key = (image.id, st.st_size, st.st_mtime_ns)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        with self._decoders:
            try:
                snap = read_snapshot(image.root, image.path, self.max_image_bytes)
            except (OSError, ImageError):
                return None
            if (snap.size, snap.mtime_ns) != key[1:]:
                return None  # replaced since it was looked at
            if image.sha256 is not None and hashlib.sha256(snap.data).hexdigest() != image.sha256:
                return None
            try:
                thumb = make_thumbnail(snap.data, self.box)
            except ThumbnailRefused as exc:
                log.info("thumbnail_refused", image_id=image.id, reason=str(exc))
                return None
        self._cache.put(key, thumb)
        return thumb


def _probe(image: ImageFile, max_bytes: int) -> tuple[os.stat_result | None, str | None]:
    """Open the image's file as the daemon would; return its status, or None and why not: gone,
    unsafe to open (a link, outside the folder, not a regular file, hard-linked), not the image
    recorded (another size or mtime), or larger than the daemon reads."""
    try:
        fd = open_below(image.root, image.path)
    except (FileNotFoundError, NotADirectoryError):
        return None, "file gone"
    except ImageError as exc:
        return None, f"not shown: {exc}"
    except OSError as exc:
        return None, f"file unreadable ({exc.strerror or type(exc).__name__})"
    try:
        st = os.fstat(fd)
    except OSError as exc:
        return None, f"file unreadable ({exc.strerror or type(exc).__name__})"
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        return None, "not shown: is not a regular file"
    if st.st_nlink != 1:
        return None, "not shown: has more than one hard link"
    if image.size not in (None, st.st_size) or image.mtime_ns not in (None, st.st_mtime_ns):
        return None, "file changed since"
    if st.st_size > max_bytes:
        return None, "file too large to show"
    return st, None
