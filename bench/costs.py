"""Measure what the costs and privacy options change per image: bytes uploaded, and CPU.

    python bench/costs.py                  # 40 images
    python bench/costs.py --images 100

The images are camera-like 1920x1080 JPEGs (camwatch/testing/scenes.py, with sensor noise, at
quality 90: about 300 KB each) carrying what a camera writes into them: EXIF (IFD0; an Exif IFD
with exposure data and a 4 KB maker note; a GPS IFD; IFD1 with a 160x90 JPEG thumbnail), an XMP
packet with its usual 2 KB of padding, and a comment.

Table 1, bytes uploaded per image (mean), for each option as `caption` would set it:
as is, `strip_metadata`, and `upload_max_side` 1280, 960, 640 with `jpeg_quality` 85 and 75
(camwatch/upload.py `prepare`, the pipeline's call).

Table 2, CPU per image (time.process_time_ns around one call per image, median and p95): the
near-duplicate fingerprint (camwatch/similar.py: the 64-bit dHash and the 32x18 grid, from one
decode; target <= 3 ms on 1080p), stripping, scaling to 1280; with sha256 of the bytes and a full
decode as yardsticks.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from camwatch.similar import fingerprint  # noqa: E402
from camwatch.testing.scenes import noisy, scene  # noqa: E402
from camwatch.upload import UploadPlan, prepare, strip_metadata  # noqa: E402

HASH_TARGET_MS = 3.0
XMP = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Camera XMP Core 5.1">\n'
    b' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
    b'  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
    b'    xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/"\n'
    b'    xmp:CreatorTool="IPC firmware V5.7.3 build 230512" xmp:CreateDate="2024-05-01T12:00:00"\n'
    b'    tiff:Make="Hikvision" tiff:Model="DS-2CD2143G2-I" exif:GPSLatitude="52,22.125N"\n'
    b'    exif:GPSLongitude="4,53.5E" exif:GPSAltitude="12/1"/>\n'
    b" </rdf:RDF>\n</x:xmpmeta>\n" + b" " * 2048 + b'\n<?xpacket end="w"?>'
)


# -- camera-like files -----------------------------------------------------------------------------


def _exif(seed: int, thumbnail: bytes) -> bytes:
    """Return an Exif APP1 payload as cameras write it, with `thumbnail` in IFD1."""
    rng = random.Random(seed)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Hikvision", "DS-2CD2143G2-I"  # Make, Model
    exif[0x0131], exif[0x0132] = "V5.7.3 build 230512", "2024:05:01 12:00:00"
    exif[0x0112] = 1  # Orientation
    sub = exif.get_ifd(0x8769)  # the Exif IFD
    sub[0x9003] = "2024:05:01 12:00:00"  # DateTimeOriginal
    sub[0x829A], sub[0x829D] = 1 / 50, 1.6  # ExposureTime, FNumber
    sub[0x8827], sub[0x920A] = 400, 2.8  # ISO, FocalLength
    sub[0x927C] = rng.randbytes(4096)  # MakerNote
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (52.0, 22.0, 7.5)
    gps[3], gps[4] = "E", (4.0, 53.0, 30.0)
    gps[5], gps[6] = 0, 12.0  # altitude
    gps[0x1D] = "2024:05:01"
    payload = exif.tobytes()
    # Pillow writes no IFD1: link one (the thumbnail's) from IFD0's next-IFD pointer.
    tiff = bytearray(payload[6:])
    order = "<" if tiff[:2] == b"II" else ">"
    ifd0 = struct.unpack_from(order + "I", tiff, 4)[0]
    count = struct.unpack_from(order + "H", tiff, ifd0)[0]
    if len(tiff) % 2:
        tiff += b"\x00"
    ifd1 = len(tiff)
    struct.pack_into(order + "I", tiff, ifd0 + 2 + 12 * count, ifd1)
    thumb_at = ifd1 + 2 + 3 * 12 + 4
    tiff += struct.pack(order + "H", 3)
    tiff += struct.pack(order + "HHIHH", 0x0103, 3, 1, 6, 0)  # Compression: JPEG
    tiff += struct.pack(order + "HHII", 0x0201, 4, 1, thumb_at)  # JPEGInterchangeFormat
    tiff += struct.pack(order + "HHII", 0x0202, 4, 1, len(thumbnail))  # ...Length
    tiff += struct.pack(order + "I", 0) + thumbnail
    return b"Exif\x00\x00" + bytes(tiff)


def camera_jpeg(seed: int) -> bytes:
    """Return a 1920x1080 JPEG as a camera writes it (see the module's docstring)."""
    picture = noisy(scene(seed), seed, amount=4 + seed % 3)
    thumb = io.BytesIO()
    picture.resize((160, 90), Image.Resampling.BOX).save(thumb, "JPEG", quality=75)
    out = io.BytesIO()
    picture.save(
        out,
        "JPEG",
        quality=90,
        exif=_exif(seed, thumb.getvalue()),
        xmp=XMP,
        comment=b"CH01 Front door 2024-05-01 12:00:00",
    )
    return out.getvalue()


def metadata_bytes(data: bytes) -> int:
    """Return the bytes of a JPEG's APP1..APP15 and COM segments (metadata), up to SOS."""
    total, pos = 0, 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA:
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if 0xE1 <= marker <= 0xEF or marker == 0xFE:
            total += 2 + length
        pos += 2 + length
    return total


# -- measuring -----------------------------------------------------------------------------------


def cpu_ms(call: Callable[[bytes], object], images: list[bytes]) -> list[float]:
    """Return the CPU time of `call` on each image, in ms (after one call to warm up)."""
    call(images[0])
    times = []
    for data in images:
        started = time.process_time_ns()
        call(data)
        times.append((time.process_time_ns() - started) / 1e6)
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    args = parser.parse_args()
    started = time.perf_counter()
    images = [camera_jpeg(seed) for seed in range(args.images)]
    made = time.perf_counter() - started
    mean_file = statistics.mean(len(d) for d in images)
    mean_meta = statistics.mean(metadata_bytes(d) for d in images)
    print(
        f"{len(images)} camera-like 1920x1080 JPEGs (quality 90) made in {made:.0f} s:"
        f" {mean_file / 1000:.0f} KB each on average, of which {mean_meta / 1000:.1f} KB"
        " metadata (EXIF with GPS and a thumbnail, XMP, comment)\n"
    )

    plans = [("as is", UploadPlan()), ("strip_metadata", UploadPlan(strip_metadata=True))]
    for side in (1280, 960, 640):
        for quality in (85, 75):
            label = f"upload_max_side {side}, jpeg_quality {quality}"
            plans.append((label, UploadPlan(False, side, quality)))
    print("| upload | size | bytes per image (mean) | of the file | metadata left |")
    print("|---|---|---:|---:|---:|")
    for label, plan in plans:
        sent = [prepare(data, plan).data for data in images]
        with Image.open(io.BytesIO(sent[0])) as first:
            size = f"{first.width}x{first.height}"
        mean = statistics.mean(len(d) for d in sent)
        left = statistics.mean(metadata_bytes(d) for d in sent)
        print(
            f"| {label} | {size} | {mean / 1000:,.1f} KB | {mean / mean_file:.1%} | {left:,.0f} B |"
        )

    print(f"\nCPU per image, {len(images)} images (time.process_time):\n")
    print("| step | median | p95 | target |")
    print("|---|---:|---:|---|")
    scale = UploadPlan(False, 1280, 85)
    steps: list[tuple[str, Callable[[bytes], object], float | None]] = [
        ("fingerprint (dHash + 32x18 grid), caption.dedupe", fingerprint, HASH_TARGET_MS),
        ("strip_metadata", strip_metadata, None),
        ("scale to 1280, jpeg_quality 85", lambda d: prepare(d, scale), None),
        ("yardstick: sha256 of the file", lambda d: hashlib.sha256(d).digest(), None),
        ("yardstick: full decode", _decode, None),
    ]
    for label, call, target in steps:
        times = cpu_ms(call, images)
        median, high = statistics.median(times), p95(times)
        verdict = ""
        if target is not None:
            verdict = f"<= {target:g} ms: {'ok' if median <= target else 'MISSED'}"
        print(f"| {label} | {median:.2f} ms | {high:.2f} ms | {verdict} |")
    by_file_size(min(len(images), 20))


def by_file_size(count: int) -> None:
    """Print the fingerprint's CPU per image by file size: decoding at 1/8 scale skips most
    of the inverse DCT but none of the entropy decoding, which grows with the bytes."""
    print("\nFingerprint CPU by file size (the same scenes, more or less sensor noise):\n")
    print("| noise | file size (mean) | median | p95 | <= 3 ms |")
    print("|---:|---:|---:|---:|---|")
    for amount in (0, 2, 4, 6, 8):
        files = []
        for seed in range(count):
            picture = scene(seed)
            if amount:
                picture = noisy(picture, seed, amount=amount)
            out = io.BytesIO()
            picture.save(out, "JPEG", quality=90)
            files.append(out.getvalue())
        times = cpu_ms(fingerprint, files)
        median = statistics.median(times)
        met = "ok" if median <= HASH_TARGET_MS else "no"
        print(
            f"| {amount} | {statistics.mean(len(f) for f in files) / 1000:.0f} KB"
            f" | {median:.2f} ms | {p95(times):.2f} ms | {met} |"
        )


def _decode(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.load()


if __name__ == "__main__":
    main()
