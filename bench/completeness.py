"""Measure the completeness check: the structural walk against the old ends-only check.

    python bench/completeness.py               # 50 repetitions of each
    python bench/completeness.py --runs 200

It builds a camera-like JPEG of about 5 MB (an 8-megapixel photo-like image at quality 95, with
an EXIF APP1 segment carrying a thumbnail JPEG, as cameras write) and a PNG of about 5 MB, and
times with time.perf_counter_ns, median and 95th percentile:

- `image_end(data)` on the bytes in memory (the pipeline's call, after its read);
- `check_complete(path)`: open, fstat, one read of the whole file from the page cache, the walk
  (the debouncer's call);
- the old ends-only check, copied below: `old_check_complete(path)` reads 8 + 64 bytes.

The same functions also run on a padded JPEG (junk after EOI) and on one cut right after its
EXIF thumbnail, to show what the old check got wrong. Each measurement stops after --runs
repetitions or --budget seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import stat
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from camwatch.files import check_complete, image_end  # noqa: E402

# -- the ends-only check this replaced, verbatim but for the names ---------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"


def old_is_complete_image(data: bytes) -> bool:
    """The old check: SOI/signature at the start, EOI (NULs allowed after it) or IEND at the
    end."""
    if data[:2] == b"\xff\xd8":
        return data.rstrip(b"\x00")[-2:] == b"\xff\xd9" and len(data) > 4
    if data[:8] == _PNG_SIGNATURE:
        return data[-8:] == _PNG_IEND and len(data) > 16
    return False


def old_check_complete(path: str) -> bool:
    """The old check on a file: its first 8 bytes and its last 64."""
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
        return old_is_complete_image(head + tail)
    except OSError:
        return False
    finally:
        os.close(fd)


# -- camera-like images ----------------------------------------------------------------------------


def photo_like(width: int, height: int) -> Image.Image:
    """Return an RGB image with smooth gradients under sensor-like noise: JPEG data of a real
    photo's density, full of 0xFF bytes stuffed as FF 00. (Pillow draws the noise itself, so
    sizes vary by a few kB from run to run.)"""
    gradient = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 40)
    flip = Image.Transpose
    channels = (
        Image.blend(gradient, noise, 0.5),
        Image.blend(
            gradient.transpose(flip.FLIP_LEFT_RIGHT), noise.transpose(flip.ROTATE_180), 0.4
        ),
        Image.blend(
            gradient.transpose(flip.FLIP_TOP_BOTTOM), noise.transpose(flip.FLIP_LEFT_RIGHT), 0.3
        ),
    )
    return Image.merge("RGB", channels)


def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def exif_app1(thumbnail: bytes) -> bytes:
    """Return an APP1 segment: Exif header, big-endian TIFF header, IFD0 (Orientation) linking to
    IFD1, whose JPEGInterchangeFormat/-Length point at `thumbnail`."""

    def entry(tag: int, kind: int, value: int) -> bytes:
        if kind == 3:  # SHORT, left-justified in the value field
            return struct.pack(">HHIHH", tag, kind, 1, value, 0)
        return struct.pack(">HHII", tag, kind, 1, value)

    ifd1_at = 8 + 2 + 12 + 4
    thumb_at = ifd1_at + 2 + 3 * 12 + 4
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8)
    tiff += struct.pack(">H", 1) + entry(0x0112, 3, 1) + struct.pack(">I", ifd1_at)
    tiff += struct.pack(">H", 3) + entry(0x0103, 3, 6)
    tiff += entry(0x0201, 4, thumb_at) + entry(0x0202, 4, len(thumbnail)) + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff + thumbnail
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def camera_jpeg() -> tuple[bytes, int]:
    """Return an 8-megapixel quality-95 JPEG with an EXIF thumbnail, and where the thumbnail
    ends in it."""
    img = photo_like(3264, 2448)
    thumb = encode(img.resize((160, 120)), "JPEG", quality=80)
    plain = encode(img, "JPEG", quality=95)
    app1 = exif_app1(thumb)
    data = plain[:2] + app1 + plain[2:]
    return data, 2 + len(app1)


def big_png() -> bytes:
    """Return a PNG of about 5 MB (photo-like, so it barely compresses)."""
    return encode(photo_like(1750, 1300), "PNG")


# -- timing ----------------------------------------------------------------------------------------


def measure(call: Callable[[], object], runs: int, budget: float) -> tuple[float, float, int]:
    """Return the median and 95th percentile in milliseconds of `call`, and how many runs."""
    call()  # warm: page cache, lazily compiled patterns
    samples: list[int] = []
    stop = time.monotonic() + budget
    while len(samples) < runs and time.monotonic() < stop:
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(samples) / 1e6, p95 / 1e6, len(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="repetitions per measurement")
    parser.add_argument("--budget", type=float, default=5.0, help="seconds per measurement")
    args = parser.parse_args(argv)

    started = time.monotonic()
    jpeg, thumb_end = camera_jpeg()
    png = big_png()
    padded = jpeg + random.Random(3).randbytes(300)
    cut = jpeg[:thumb_end]
    print(f"images built in {time.monotonic() - started:.1f} s")
    print(
        f"JPEG: {len(jpeg):,} bytes (3264x2448, quality 95, EXIF thumbnail ending at {thumb_end})"
    )
    print(f"PNG:  {len(png):,} bytes (1750x1300 RGB)")
    print()

    rows: list[tuple[str, str, float, float, int, bool]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "JPEG 5 MB": jpeg,
            "PNG 5 MB": png,
            "JPEG + 300 B junk": padded,
            "JPEG cut after thumbnail": cut,
        }
        for label, data in cases.items():
            path = os.path.join(tmp, "snapshot")
            Path(path).write_bytes(data)
            for name, call in (
                ("image_end(bytes)", lambda d=data: image_end(d)),
                ("check_complete(path)", lambda p=path: check_complete(p)),
                ("old ends-only check(path)", lambda p=path: old_check_complete(p)),
            ):
                median, p95, runs = measure(call, args.runs, args.budget)
                result = call()
                complete = result is not None and result is not False
                rows.append((label, name, median, p95, runs, complete))
            os.unlink(path)

    print("| image | check | median ms | p95 ms | runs | says complete |")
    print("|---|---|---:|---:|---:|---|")
    for label, name, median, p95, runs, complete in rows:
        print(f"| {label} | {name} | {median:.3f} | {p95:.3f} | {runs} | {complete} |")
    print()
    print("Expected: complete for the first three, not for the cut one.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
