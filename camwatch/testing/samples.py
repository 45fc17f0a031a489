"""Sample images and captions: the bundled snapshots, and JPEGs that carry their own caption.

`jpeg_with_caption` puts a `caption:<text>` comment segment in a real JPEG; the stand-in caption
API answers an upload that has one with that text, so a test decides the caption of each image
it drops. `sample_images` returns the small snapshots bundled in `camwatch/samples` with their
captions (what `camwatch demo` and the benchmarks drop).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from importlib import resources
from typing import Any

CAPTION_PREFIX = b"caption:"


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """Given JPEG bytes, yield (marker, start, end) of each header segment after SOI, up to
    (not including) the first SOS or EOI; stop quietly at anything malformed."""
    pos = 2
    while pos + 4 <= len(data):  # bounded: pos grows on every pass
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xDA, 0xD9):
            return
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2 or pos + 2 + length > len(data):
            return
        yield marker, pos, pos + 2 + length
        pos += 2 + length


def jpeg_caption(data: bytes) -> str | None:
    """Given image bytes, return the text after `caption:` in the first JPEG comment (COM)
    segment that starts so, or None."""
    if not data.startswith(b"\xff\xd8"):
        return None
    for marker, start, end in _jpeg_segments(data):
        if marker == 0xFE and data[start + 4 : end].startswith(CAPTION_PREFIX):
            return data[start + 4 + len(CAPTION_PREFIX) : end].decode("utf-8", "replace").strip()
    return None


def jpeg_with_caption(caption: str, base: bytes | None = None) -> bytes:
    """Given a caption, return a real JPEG (`base`, default a bundled sample) with a comment
    segment `caption:<text>` right after SOI, which the stand-in API answers with. Any caption
    comment `base` already had is dropped. Raise ValueError if `base` is not a JPEG or the caption
    does not fit in one segment (64 KB)."""
    if base is None:
        base = next(data for name, data, _ in sample_images() if name.endswith(".jpg"))
    if not base.startswith(b"\xff\xd8\xff"):
        raise ValueError("base is not a JPEG (no SOI marker)")
    payload = CAPTION_PREFIX + caption.encode("utf-8")
    if len(payload) + 2 > 0xFFFF:
        raise ValueError("caption too long for a JPEG comment segment")
    kept = bytearray()
    pos = 2
    for marker, start, end in _jpeg_segments(base):
        kept += base[pos:start]
        if not (marker == 0xFE and base[start + 4 : end].startswith(CAPTION_PREFIX)):
            kept += base[start:end]
        pos = end
    kept += base[pos:]
    segment = b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload
    return b"\xff\xd8" + segment + bytes(kept)


def _samples_dir() -> Any:
    """Return the bundled samples folder (a Traversable: it may be inside a zip or wheel)."""
    return resources.files("camwatch") / "samples"


def bundled_captions() -> dict[str, str]:
    """Return file name -> caption of each bundled sample (`samples/captions.json`)."""
    text = (_samples_dir() / "captions.json").read_text(encoding="utf-8")
    captions: dict[str, str] = json.loads(text)
    return captions


def sample_images() -> list[tuple[str, bytes, str]]:
    """Return (file name, bytes, caption) of each bundled sample snapshot, in the order of
    `samples/captions.json`."""
    folder = _samples_dir()
    return [(name, (folder / name).read_bytes(), text) for name, text in bundled_captions().items()]


def _tiff_entry(tag: int, kind: int, value: int) -> bytes:
    if kind == 3:  # SHORT: left-justified in the 4-byte value field
        return struct.pack(">HHIHH", tag, kind, 1, value, 0)
    return struct.pack(">HHII", tag, kind, 1, value)


def exif_app1(thumbnail: bytes) -> bytes:
    """Return an APP1 segment as a camera writes it: Exif header, a big-endian TIFF header, IFD0
    (Orientation) linking to IFD1, whose JPEGInterchangeFormat/-Length give `thumbnail` (a
    small JPEG whose own EOI must not end the image it is embedded in)."""
    ifd0_at = 8
    ifd1_at = ifd0_at + 2 + 12 + 4
    thumb_at = ifd1_at + 2 + 3 * 12 + 4
    tiff = b"MM\x00\x2a" + struct.pack(">I", ifd0_at)
    tiff += struct.pack(">H", 1) + _tiff_entry(0x0112, 3, 1) + struct.pack(">I", ifd1_at)
    tiff += struct.pack(">H", 3)
    tiff += _tiff_entry(0x0103, 3, 6)  # Compression: JPEG (old-style thumbnail)
    tiff += _tiff_entry(0x0201, 4, thumb_at)  # JPEGInterchangeFormat
    tiff += _tiff_entry(0x0202, 4, len(thumbnail))  # JPEGInterchangeFormatLength
    tiff += struct.pack(">I", 0)
    assert len(tiff) == thumb_at
    payload = b"Exif\x00\x00" + tiff + thumbnail
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
