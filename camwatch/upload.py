"""What is uploaded for an image: the file's bytes, or a copy with its metadata stripped and, when
it is larger than `upload_max_side`, scaled down. The file on disk is never changed.

Stripping works on the container, not the pixels: a JPEG keeps SOI, its JFIF (APP0), ICC profile
(APP2) and Adobe (APP14, which says how to decode the colours) segments, its tables and frame,
and every byte from the first scan to EOI, so the decoded pixels are identical; EXIF and XMP
(APP1), the other APPn and COM go. Bytes after EOI (a recorder's padding, or a maker's trailer)
go too. A PNG loses its text (tEXt, zTXt, iTXt), time (tIME) and EXIF (eXIf) chunks.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image

from camwatch.files import content_kind, image_end

# APPn kept, by marker and the identifier its payload starts with.
_KEEP_APP = {0xE0: (b"JFIF\x00", b"JFXX\x00"), 0xE2: (b"ICC_PROFILE\x00",), 0xEE: (b"Adobe",)}
_SOS, _COM = 0xDA, 0xFE
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DROP = frozenset({b"tEXt", b"zTXt", b"iTXt", b"tIME", b"eXIf"})
_PNG_CHUNK = struct.Struct(">I4s")
MAX_PIXELS = 80_000_000


class UploadError(ValueError):
    """The image could not be prepared for upload (not decodable, not a JPEG or PNG)."""


@dataclass(frozen=True)
class UploadPlan:
    """How to turn a file's bytes into the bytes uploaded."""

    strip_metadata: bool = False
    max_side: int | None = None
    jpeg_quality: int = 85

    @property
    def changes_anything(self) -> bool:
        return self.strip_metadata or self.max_side is not None


@dataclass(frozen=True)
class Prepared:
    """The bytes to upload, their type, and what was done to them (for the log)."""

    data: bytes
    content_type: str
    stripped: bool = False
    scaled_to: tuple[int, int] | None = None


def prepare(data: bytes, plan: UploadPlan) -> Prepared:
    """Return what to upload for an image's bytes under `plan`. Raise UploadError if it is not a
    JPEG or PNG that can be prepared."""
    kind = content_kind(data[:16])
    if kind is None:
        raise UploadError("not a JPEG or PNG")
    content_type = f"image/{kind}"
    if not plan.changes_anything:
        return Prepared(data, content_type)
    if plan.max_side is not None:
        scaled = _scaled(data, kind, plan)
        if scaled is not None:
            return scaled
    if plan.strip_metadata:
        return Prepared(strip_metadata(data), content_type, stripped=True)
    return Prepared(data, content_type)


def strip_metadata(data: bytes) -> bytes:
    """Return a JPEG's or PNG's bytes without metadata (see the module's docstring). Raise
    UploadError if the structure cannot be walked."""
    kind = content_kind(data[:16])
    if kind == "jpeg":
        return _strip_jpeg(data)
    if kind == "png":
        return _strip_png(data)
    raise UploadError("not a JPEG or PNG")


def _strip_jpeg(data: bytes) -> bytes:
    end = image_end(data)
    if end is None:
        raise UploadError("not a complete JPEG")
    out = bytearray(data[:2])  # SOI
    pos = 2
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            raise UploadError(f"no JPEG marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            out += data[pos : pos + 2]
            pos += 2
            continue
        if marker == _SOS:
            out += data[pos:end]  # the scans, any segments between them, and EOI: as they are
            return bytes(out)
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segment = data[pos : pos + 2 + length]
        if length < 2 or len(segment) < 2 + length:
            raise UploadError(f"a JPEG segment at byte {pos} runs past the end")
        if marker == _COM or (0xE0 <= marker <= 0xEF and not _kept_app(marker, segment[4:])):
            pass  # metadata: left out
        else:
            out += segment
        pos += 2 + length
    raise UploadError("a JPEG without a scan")


def _kept_app(marker: int, payload: bytes) -> bool:
    return any(payload.startswith(ident) for ident in _KEEP_APP.get(marker, ()))


def _strip_png(data: bytes) -> bytes:
    end = image_end(data)
    if end is None:
        raise UploadError("not a complete PNG")
    out = bytearray(_PNG_SIGNATURE)
    pos = len(_PNG_SIGNATURE)
    while pos < end:
        length, kind = _PNG_CHUNK.unpack_from(data, pos)
        chunk_end = pos + 12 + length  # length, type, data, CRC
        if kind not in _PNG_DROP:
            out += data[pos:chunk_end]
        pos = chunk_end
    return bytes(out)


def _scaled(data: bytes, kind: str, plan: UploadPlan) -> Prepared | None:
    """Return the image scaled so that its longer side is `plan.max_side`, re-encoded in its own
    format; None when it is not larger than that."""
    assert plan.max_side is not None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if max(width, height) <= plan.max_side:
                    return None
                if width * height > MAX_PIXELS:
                    raise UploadError(f"{width}x{height} is more than {MAX_PIXELS} px")
                scale = plan.max_side / max(width, height)
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                image.draft(image.mode, size)  # JPEG: decode at 1/2..1/8 where that suffices
                icc = image.info.get("icc_profile")
                resized = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
                # A resized image inherits `info`, from which Pillow's writers take the comment,
                # XMP, EXIF and text chunks: only the colour profile is carried over, so that
                # colours stay right.
                resized.info = {}
                out = io.BytesIO()
                if kind == "jpeg":
                    if resized.mode not in ("RGB", "L", "CMYK"):
                        resized = resized.convert("RGB")
                    resized.save(
                        out, "JPEG", quality=plan.jpeg_quality, optimize=True, icc_profile=icc
                    )
                else:
                    resized.save(out, "PNG", optimize=False, icc_profile=icc)
    except UploadError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning) as exc:
        raise UploadError(f"cannot scale the image: {exc}") from None
    return Prepared(out.getvalue(), f"image/{kind}", stripped=True, scaled_to=size)
