"""Exact completeness of JPEG and PNG bytes: `image_end`, `is_complete_image`, `check_complete`.

The images are real encoder output from Pillow (baseline, progressive and restart-marker JPEGs,
a camera-like JPEG with an EXIF thumbnail, multi-IDAT, palette and text PNGs), so the walker is
held to what encoders actually write, not to hand-made bytes alone.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import random
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image
from PIL.PngImagePlugin import PngInfo

from camwatch.files import check_complete, image_end, is_complete_image
from camwatch.testing.samples import exif_app1

# No example database: it would be written into the source tree, and failures here are
# reproducible from the printed example anyway.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _noise(size: tuple[int, int], seed: int, mode: str = "RGB") -> Image.Image:
    # Noise gives entropy-coded data full of 0xFF (stuffed as FF 00) and incompressible PNG data
    # that spreads over several IDAT chunks: the cases a walker can get wrong.
    data = random.Random(seed).randbytes(size[0] * size[1] * len(mode))
    return Image.frombytes(mode, size, data)


def _encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def _png_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """Return (type, start, end) of each chunk of a well-formed PNG."""
    chunks = []
    pos = len(PNG_SIGNATURE)
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        chunks.append((kind, pos, pos + 12 + length))
        pos += 12 + length
    return chunks


@functools.lru_cache(maxsize=1)
def thumbnail() -> bytes:
    """Return a small real JPEG, as a camera embeds in EXIF."""
    return _encode(_noise((40, 30), 7), "JPEG", quality=75)


@functools.cache
def sample(name: str) -> bytes:
    """Return the bytes of the named sample image (built once)."""
    photo = _noise((96, 64), 1)
    if name == "baseline":
        return _encode(photo, "JPEG", quality=90)
    if name == "grey":
        return _encode(_noise((64, 48), 2, "L"), "JPEG", quality=85)
    if name == "progressive":
        return _encode(photo, "JPEG", quality=90, progressive=True, optimize=True)
    if name == "restart_blocks":
        return _encode(photo, "JPEG", quality=90, restart_marker_blocks=1)
    if name == "restart_rows":
        return _encode(photo, "JPEG", quality=90, restart_marker_rows=1, progressive=True)
    if name == "exif":
        plain = _encode(photo, "JPEG", quality=90)
        return plain[:2] + exif_app1(thumbnail()) + plain[2:]
    if name == "png_idats":
        return _encode(_noise((160, 160), 3), "PNG")
    if name == "png_palette":
        pal = _noise((64, 48), 4).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        return _encode(pal, "PNG", transparency=0)
    if name == "png_text":
        info = PngInfo()
        info.add_text("Title", "front door")
        info.add_text("Comment", "zTXt " * 40, zip=True)
        info.add_itxt("Description", "iTXt \u00e9t\u00e9 " * 40, lang="fr", zip=True)
        return _encode(_noise((48, 32), 5), "PNG", pnginfo=info)
    raise KeyError(name)


JPEGS = ("baseline", "grey", "progressive", "restart_blocks", "restart_rows", "exif")
PNGS = ("png_idats", "png_palette", "png_text")
SAMPLES = JPEGS + PNGS


# -- the samples are what they claim to be ---------------------------------------------------------


def test_samples_decode_and_have_the_structure_under_test() -> None:
    for name in SAMPLES:
        Image.open(io.BytesIO(sample(name))).load()
    assert sample("progressive").count(b"\xff\xda") >= 2  # several scans
    assert sample("restart_blocks").count(b"\xff\xd0") >= 1
    assert sample("restart_rows").count(b"\xff\xd0") >= 1
    kinds = [kind for kind, _, _ in _png_chunks(sample("png_idats"))]
    assert kinds.count(b"IDAT") >= 2
    assert b"PLTE" in [kind for kind, _, _ in _png_chunks(sample("png_palette"))]
    assert {b"tEXt", b"zTXt", b"iTXt"} <= {kind for kind, _, _ in _png_chunks(sample("png_text"))}


def test_the_exif_sample_carries_a_readable_thumbnail() -> None:
    data = sample("exif")
    exif = Image.open(io.BytesIO(data)).getexif()
    ifd1 = exif.get_ifd(ExifTags.IFD.IFD1)
    offset, length = ifd1[0x0201], ifd1[0x0202]
    tiff_at = data.index(b"Exif\x00\x00") + 6
    assert data[tiff_at + offset : tiff_at + offset + length] == thumbnail()
    assert exif[0x0112] == 1


# -- properties over real images -------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_a_whole_image_ends_exactly_at_its_length(name: str) -> None:
    data = sample(name)
    assert image_end(data) == len(data)
    assert image_end(bytearray(data)) == len(data)
    assert image_end(memoryview(data)) == len(data)
    assert is_complete_image(data)


@pytest.mark.parametrize("name", [n for n in SAMPLES if len(sample(n)) <= 20_000])
def test_every_proper_prefix_of_a_small_image_is_incomplete(name: str) -> None:
    # Exhaustive where the image is small; the larger ones get the hypothesis test below.
    view = memoryview(sample(name))
    for cut in range(len(view)):
        assert image_end(view[:cut]) is None, cut


def _structural_cuts(data: bytes) -> set[int]:
    # Where a walker switches state: around every 0xFF (JPEG markers, stuffing) or every chunk
    # boundary and chunk field (PNG).
    points: set[int] = set()
    if data.startswith(PNG_SIGNATURE):
        for _, start, end in _png_chunks(data):
            points.update((start, start + 4, start + 8, end - 4, end))
    else:
        pos = data.find(b"\xff")
        while pos >= 0:
            points.add(pos)
            pos = data.find(b"\xff", pos + 1)
    return {p + d for p in points for d in (-1, 0, 1, 2, 3) if 0 <= p + d < len(data)}


@pytest.mark.parametrize("name", SAMPLES)
def test_cuts_at_structure_boundaries_are_incomplete(name: str) -> None:
    data = sample(name)
    view = memoryview(data)
    for cut in sorted(_structural_cuts(data)):
        assert image_end(view[:cut]) is None, cut


@FUZZ
@given(name=st.sampled_from(SAMPLES), draw=st.data())
def test_any_proper_prefix_is_incomplete(name: str, draw: st.DataObject) -> None:
    data = sample(name)
    cut = draw.draw(st.integers(min_value=0, max_value=len(data) - 1), label="cut")
    assert image_end(data[:cut]) is None


_PADDING = st.one_of(
    st.binary(max_size=1024),
    st.builds(lambda n, b: bytes([b]) * n, st.integers(1, 600), st.sampled_from([0x00, 0xFF])),
    # Padding that itself looks like image data must not move the end either.
    st.sampled_from(SAMPLES).map(sample),
    st.just(thumbnail()),
    st.just(EOI * 4),
)


@FUZZ
@given(name=st.sampled_from(SAMPLES), padding=_PADDING)
def test_anything_after_the_end_is_padding(name: str, padding: bytes) -> None:
    data = sample(name)
    assert image_end(data + padding) == len(data)


# -- explicit cases --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "padding",
    [b"\x00" * 300, b"\xff" * 300, random.Random(42).randbytes(300)],
    ids=["nuls", "ffs", "junk"],
)
@pytest.mark.parametrize("name", JPEGS)
def test_a_padded_jpeg_is_complete(name: str, padding: bytes) -> None:
    data = sample(name)
    assert is_complete_image(data + padding)
    assert image_end(data + padding) == len(data)


def test_a_file_cut_after_the_exif_thumbnail_is_incomplete() -> None:
    data = sample("exif")
    thumb = thumbnail()
    cut = data.index(thumb) + len(thumb)
    assert data[:cut].endswith(EOI)  # what fooled the ends-only check
    assert image_end(thumb) == len(thumb)  # the thumbnail alone is a whole JPEG...
    assert image_end(data[:cut]) is None  # ...but inside APP1 it does not end the file
    assert image_end(data[:cut] + b"\x00" * 300) is None


def test_a_png_with_a_bad_crc_is_incomplete() -> None:
    data = sample("png_idats")
    chunks = _png_chunks(data)
    for kind, start, end in chunks:
        for at in (end - 1, start + 4, (start + 8 + end - 4) // 2):  # CRC, type, data
            if kind == b"IEND" and at == (start + 8 + end - 4) // 2:
                continue  # IEND has no data; that offset is its CRC's first byte
            broken = bytearray(data)
            broken[at] ^= 0x01
            assert image_end(bytes(broken)) is None, (kind, at)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def test_pngs_that_are_not_whole_images() -> None:
    chunks = _png_chunks(sample("png_palette"))
    data = sample("png_palette")
    ihdr = data[chunks[0][1] : chunks[0][2]]
    iend = _png_chunk(b"IEND", b"")
    assert image_end(PNG_SIGNATURE + ihdr + iend) is None  # no image data
    assert image_end(PNG_SIGNATURE + iend) is None  # IHDR must come first
    idat = next(data[s:e] for kind, s, e in chunks if kind == b"IDAT")
    assert image_end(PNG_SIGNATURE + ihdr + idat + iend) is not None
    assert image_end(PNG_SIGNATURE + ihdr + idat + _png_chunk(b"IEND", b"x")) is None
    assert image_end(PNG_SIGNATURE + ihdr + idat + _png_chunk(b"I3ND", b"") + iend) is None
    huge = struct.pack(">I", 0x80000000) + b"tEXt"  # over PNG's 2**31 - 1 limit
    assert image_end(PNG_SIGNATURE + ihdr + huge + b"\x00" * 64) is None


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _split_jpeg(data: bytes) -> tuple[bytes, bytes, bytes]:
    """Return (SOI and the segments before SOS, the SOS segment and its data, EOI) of a
    baseline JPEG with one scan."""
    sos = data.index(b"\xff\xda")
    assert data.endswith(EOI)
    return data[:sos], data[sos:-2], data[-2:]


def test_jpeg_standalone_markers_and_fill_bytes() -> None:
    head, scan, tail = _split_jpeg(sample("baseline"))
    whole = head + scan + tail
    # TEM and fill bytes between segments, fill bytes before EOI.
    cases = [
        head[:2] + b"\xff\x01" + head[2:] + scan + tail,
        head[:2] + b"\xff\xff\xff" + head[2:] + scan + tail,
        head + b"\xff\xff" + scan + tail,
        head + scan + b"\xff\xff\xff" + tail,
    ]
    for data in cases:
        assert image_end(data) == len(data)
        for cut in range(len(data)):
            assert image_end(data[:cut]) is None
    assert image_end(whole[:2] + b"\x00" + whole[2:]) is None  # junk where a marker must be


def test_jpeg_restart_markers_after_fill_bytes_stay_in_the_scan() -> None:
    data = sample("restart_blocks")
    rst = data.index(b"\xff\xd0")
    filled = data[:rst] + b"\xff\xff" + data[rst:]
    assert image_end(filled) == len(filled)


def test_jpeg_with_dnl() -> None:
    # Pillow cannot write DNL: take a baseline JPEG, set the frame's height to 0 and give the
    # height in a DNL segment after the first scan, as the standard allows.
    head, scan, tail = _split_jpeg(sample("baseline"))
    sof = head.index(b"\xff\xc0")
    height = head[sof + 5 : sof + 7]
    head = head[: sof + 5] + b"\x00\x00" + head[sof + 7 :]
    data = head + scan + _segment(0xDC, height) + tail
    assert image_end(data) == len(data)
    assert image_end(data[: len(data) - 2]) is None
    assert image_end(data[: len(data) - 3]) is None


def test_jpegs_that_are_not_whole_images() -> None:
    head, scan, tail = _split_jpeg(sample("baseline"))
    assert image_end(head + tail) is None  # tables only, no scan
    sof = head.index(b"\xff\xc0")
    sof_len = struct.unpack_from(">H", head, sof + 2)[0]
    no_frame = head[:sof] + head[sof + 2 + sof_len :]
    assert image_end(no_frame + scan + tail) is None  # a scan with no frame
    assert image_end(SOI + SOI + head[2:] + scan + tail) is None  # SOI again
    assert image_end(SOI + b"\xff\xfe\x00\x01" + head[2:] + scan + tail) is None  # length < 2
    assert image_end(SOI + b"\xff\xfe\xff\xff" + b"x" * 100) is None  # segment past the end


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",
        SOI,
        SOI + b"\xff",
        SOI + EOI,
        SOI + b"\xff\xe0",
        SOI + b"\xff\xe0\x00",
        PNG_SIGNATURE,
        PNG_SIGNATURE[:5],
        PNG_SIGNATURE + b"\x00\x00\x00\x0dIHDR",
        b"GIF89a" + b"\x00" * 40 + EOI,
        b"\x00" * 100,
        b"\xff" * 100,
    ],
)
def test_short_and_foreign_inputs(data: bytes) -> None:
    assert image_end(data) is None
    assert not is_complete_image(data)


def test_unusual_buffers() -> None:
    data = sample("exif")
    assert image_end(bytearray(data) + b"pad") == len(data)
    # A non-contiguous view (every other byte of an interleaved buffer) is copied, not refused.
    interleaved = bytes(b for c in data for b in (c, 0xAA))
    assert image_end(memoryview(interleaved)[::2]) == len(data)
    assert image_end(memoryview(data).cast("c")) == len(data)


# -- fuzzing: never raises, and an end found is a stable one ---------------------------------------


def _assert_consistent(data: bytes) -> None:
    end = image_end(data)
    if end is None:
        return
    assert 0 < end <= len(data)
    # The end depends only on the bytes before it.
    assert image_end(data[:end]) == end
    assert image_end(data[:end] + b"\xff\xd9junk") == end
    assert image_end(data[: end - 1]) is None


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    _assert_consistent(data)


@FUZZ
@given(
    st.sampled_from([SOI, SOI + b"\xff", PNG_SIGNATURE, PNG_SIGNATURE + b"\x00\x00\x00\x0dIHDR"]),
    st.binary(max_size=4096),
)
def test_bytes_after_a_signature(signature: bytes, rest: bytes) -> None:
    _assert_consistent(signature + rest)


@st.composite
def mutated_samples(draw: st.DrawFn) -> bytes:
    """Draw a real sample with a few bytes overwritten, inserted or deleted."""
    data = bytearray(sample(draw(st.sampled_from(SAMPLES))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["set", "insert", "delete"]))
        byte = draw(st.sampled_from([0x00, 0xFF, 0xD9, 0xDA, 0xD0, 0x01, 0xDC, 0x42]))
        if action == "set":
            data[at] = byte
        elif action == "insert":
            data.insert(at, byte)
        else:
            del data[at]
    return bytes(data)


@FUZZ
@given(mutated_samples())
def test_mutated_images(data: bytes) -> None:
    _assert_consistent(data)


# -- check_complete on real files ------------------------------------------------------------------


def test_check_complete_on_files(tmp_path: Path) -> None:
    exif = sample("exif")
    thumb_end = exif.index(thumbnail()) + len(thumbnail())
    files = {
        "whole.jpg": (exif, True),
        "padded.jpg": (exif + random.Random(1).randbytes(300), True),
        "nul_padded.jpg": (exif + b"\x00" * 4096, True),
        "whole.png": (sample("png_idats"), True),
        "padded.png": (sample("png_text") + b"\x00" * 300, True),
        "half.jpg": (exif[: len(exif) // 2], False),
        "after_thumbnail.jpg": (exif[:thumb_end], False),
        "no_eoi.jpg": (exif[:-2], False),
        "no_iend.png": (sample("png_idats")[:-12], False),
        "empty.jpg": (b"", False),
        "text.jpg": (b"not an image\n" * 10, False),
    }
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    for name, (_, complete) in files.items():
        assert check_complete(str(tmp_path / name)) is complete, name
    assert not check_complete(str(tmp_path / "missing.jpg"))


def test_check_complete_refuses_links_folders_and_fifos(tmp_path: Path) -> None:
    (tmp_path / "real.jpg").write_bytes(sample("baseline"))
    (tmp_path / "link.jpg").symlink_to(tmp_path / "real.jpg")
    (tmp_path / "dir.jpg").mkdir()
    os.mkfifo(tmp_path / "fifo.jpg")
    assert check_complete(str(tmp_path / "real.jpg"))
    assert not check_complete(str(tmp_path / "link.jpg"))
    assert not check_complete(str(tmp_path / "dir.jpg"))
    assert not check_complete(str(tmp_path / "fifo.jpg"))  # and does not block on it


def test_check_complete_lets_permission_denied_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "locked.jpg"
    path.write_bytes(sample("baseline"))
    if os.geteuid() != 0:  # root opens a mode-000 file regardless
        path.chmod(0)
        with pytest.raises(PermissionError):
            check_complete(str(path))
        path.chmod(0o644)

    def refuse(*_args: object, **_kwargs: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(PermissionError):
        check_complete(str(path))

    def fail(*_args: object, **_kwargs: object) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "open", fail)
    assert not check_complete(str(path))
