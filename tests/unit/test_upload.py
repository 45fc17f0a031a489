"""What is uploaded: metadata stripped without touching the pixels, scaled only when larger."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, PngImagePlugin

from camwatch.files import image_end
from camwatch.testing.scenes import scene
from camwatch.upload import UploadError, UploadPlan, prepare, strip_metadata

XMP = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>secret place</x:xmpmeta>"


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def camera_jpeg(size: tuple[int, int] = (1920, 1080)) -> bytes:
    """Return a JPEG as a camera writes one: JFIF, EXIF with GPS, XMP, an ICC profile, a
    comment, and a recorder's padding after EOI."""
    image = scene(11, size)
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    exif[0x0110] = "Model X"
    gps = {1: "N", 2: (48.0, 8.0, 29.0), 3: "E", 4: (11.0, 34.0, 10.0)}
    exif[0x8825] = gps
    out = io.BytesIO()
    icc = b"\x00\x00\x02\x0cicc-profile-bytes" * 4
    image.save(out, "JPEG", quality=90, exif=exif, comment=b"cam1 front door", icc_profile=icc)
    data = out.getvalue()
    # XMP after the SOI and JFIF segment, as cameras put it.
    end_of_app0 = 2 + 2 + int.from_bytes(data[4:6], "big")
    data = data[:end_of_app0] + _segment(0xE1, XMP) + data[end_of_app0:]
    return data + b"\x00" * 512


def _pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()


def test_stripping_a_jpeg_removes_exif_gps_xmp_and_comments_but_not_a_pixel() -> None:
    data = camera_jpeg()
    stripped = strip_metadata(data)
    for secret in (b"Exif\x00\x00", b"CameraMaker", b"secret place", b"cam1 front door"):
        assert secret in data and secret not in stripped
    assert b"ICC_PROFILE\x00" in stripped  # colours, not metadata
    assert b"JFIF\x00" in stripped
    assert _pixels(stripped) == _pixels(data)  # no re-encoding
    assert image_end(stripped) == len(stripped)  # the padding went too
    with Image.open(io.BytesIO(stripped)) as image:
        assert not image.getexif()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def test_stripping_a_png_removes_text_time_and_exif_chunks() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Location", "home, 48.1N 11.5E")
    info.add_itxt("Comment", "front door camera", lang="en")
    out = io.BytesIO()
    scene(12, (320, 180)).save(out, "PNG", pnginfo=info)
    data = out.getvalue()
    iend = data.rindex(b"IEND") - 4
    data = data[:iend] + _png_chunk(b"tIME", b"\x07\xea\x0b\x17\x0c\x00\x01")
    data += _png_chunk(b"eXIf", b"MM\x00*gps") + out.getvalue()[iend:]
    stripped = strip_metadata(data)
    for kind in (b"tEXt", b"iTXt", b"tIME", b"eXIf"):
        assert kind in data and kind not in stripped
    assert b"48.1N" not in stripped
    assert _pixels(stripped) == _pixels(data)


def test_scaling_keeps_the_aspect_and_drops_the_metadata() -> None:
    data = camera_jpeg()
    prepared = prepare(data, UploadPlan(max_side=1280, jpeg_quality=80))
    assert prepared.scaled_to == (1280, 720)
    with Image.open(io.BytesIO(prepared.data)) as image:
        assert image.size == (1280, 720) and image.format == "JPEG"
        assert not image.getexif()
    assert b"secret place" not in prepared.data and b"cam1 front door" not in prepared.data
    assert len(prepared.data) < len(data)


def test_a_small_image_is_not_scaled_and_without_strip_goes_as_it_is() -> None:
    data = camera_jpeg((640, 360))
    prepared = prepare(data, UploadPlan(max_side=1280))
    assert prepared.data == data and prepared.scaled_to is None
    stripped = prepare(data, UploadPlan(strip_metadata=True, max_side=1280))
    assert stripped.stripped and b"CameraMaker" not in stripped.data
    assert _pixels(stripped.data) == _pixels(data)


def test_a_png_is_scaled_to_a_png() -> None:
    out = io.BytesIO()
    scene(13, (2000, 1000)).save(out, "PNG")
    prepared = prepare(out.getvalue(), UploadPlan(max_side=500))
    assert prepared.content_type == "image/png" and prepared.scaled_to == (500, 250)


def test_nothing_to_do_returns_the_same_bytes() -> None:
    data = camera_jpeg((320, 180))
    assert prepare(data, UploadPlan()).data is data


@pytest.mark.parametrize(
    "data",
    [b"GIF89a....", b"\xff\xd8\xff\xe1\x00\x10Exif", b"\x89PNG\r\n\x1a\n\x00\x00"],
    ids=["gif", "cut-jpeg", "cut-png"],
)
def test_what_cannot_be_walked_is_refused(data: bytes) -> None:
    with pytest.raises(UploadError):
        prepare(data, UploadPlan(strip_metadata=True))
