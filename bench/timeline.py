"""Measure the timeline page's render time with 100,000 images in the state database.

    python bench/timeline.py                  # 100,000 images, 200 renders of each page
    python bench/timeline.py --images 20000 --renders 50

It builds a state database the way the daemon's schema makes it (`Store` creates it), then fills
it in one transaction with executemany: images over four cameras, one in 25 skipped or failed
with its reason, one in ten with an alert (two targets: a webhook and a notify target, in every
delivery state), the captions varied. The newest `--present` images have their file on disk (a
1920x1080 photo-like JPEG), so the first pages look at real files as the daemon's would; the
older ones are gone, as after `after: delete` (the card checks, finds none, shows no thumbnail).

Then it renders, through `Timeline.page` (the listener's call: the query, the rules' explanation
of each caption, the template), N times each: the first page, one camera's first page, the
alerts-only first page, one camera's alerts, and a deep page (`before` near the oldest image),
and prints the median and 95th percentile in a table. The target is under 100 ms. Last, the
thumbnail of a 1920x1080 JPEG: made (each image once: a cache miss) and served from the cache.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import percentile  # noqa: E402
from PIL import Image  # noqa: E402

from camwatch.config import parse_config  # noqa: E402
from camwatch.store import Store  # noqa: E402
from camwatch.timeline import Timeline  # noqa: E402

CAMERAS = ("frontdoor", "driveway", "backyard", "garage")
CAPTIONS = (
    "It shows a person lying on the ground in a hallway near a door, not moving.",
    "It shows a cardboard package left on the doorstep in front of a closed wooden door.",
    "It shows a red car parked on a driveway in front of a garage. Nobody is visible.",
    "It shows an empty driveway on a clear morning. No one is lying on the ground.",
    "It shows a backyard at night with a small shed and a wooden fence under the moon.",
    "A delivery driver walks up to the door holding a parcel; a white van waits at the curb.",
)
RULES = [
    {"name": "person-down", "any": ["lying on the ground", "collapsed"], "severity": "critical"},
    {"name": "package", "any": ["parcel", "package"], "severity": "info"},
    {"name": "vehicle", "any": ["car", "truck", "van"], "cameras": ["driveway"]},
    {"name": "person-at-night", "any": ["person", "someone"], "active": ["22:00-06:00"]},
    {"name": "fire", "any": ["fire", "smoke", "flames"], "severity": "critical"},
    {"name": "weapon", "any": ["gun", "knife", "rifle"], "severity": "critical"},
]
DELIVERIES = (
    ("delivered", 1, None),
    ("pending", 3, "HTTP 503 from webhook 'ops'"),
    ("dead", 1, "HTTP 410 from webhook 'ops'"),
    ("expired", 9, "undelivered after max_age 604800s"),
)


def photo_jpeg(seed: int = 7) -> bytes:
    """Return a 1920x1080 JPEG with photo-like detail (noise over gradients), about 0.5 MB."""
    rng = random.Random(seed)
    small = Image.new("RGB", (96, 54))
    small.putdata(
        [
            (x * 2 + rng.randrange(40), y * 4 + rng.randrange(40), 120 + rng.randrange(60))
            for y in range(54)
            for x in range(96)
        ]
    )
    big = small.resize((1920, 1080), Image.Resampling.BICUBIC)
    noise = Image.effect_noise((1920, 1080), 24).convert("RGB")
    out = io.BytesIO()
    Image.blend(big, noise, 0.25).save(out, "JPEG", quality=90)
    return out.getvalue()


def build(
    root: Path, images: int, present: int = 400, seed: int = 7
) -> tuple[Path, dict[str, object]]:
    """Create the camera folders and a state database holding `images` images, the newest
    `present` of them with their file on disk; return the state folder and the configuration
    (as parsed YAML) that goes with it."""
    rng = random.Random(seed)
    state = root / "state"
    cams = {name: root / "cams" / name for name in CAMERAS}
    for folder in cams.values():
        folder.mkdir(parents=True)
    photo = photo_jpeg(seed)
    digest = hashlib.sha256(photo).hexdigest()
    Store(state).close()  # the schema and pragmas exactly as the daemon makes them
    start = time.time() - images * 30.0
    rows = []
    alerts = []
    for image_id in range(1, images + 1):
        camera = CAMERAS[image_id % len(CAMERAS)]
        rel = f"2026-11-{1 + image_id // 5000 % 28:02d}/{image_id:07d}.jpg"
        seen = start + image_id * 30.0
        caption = f"{rng.choice(CAPTIONS)} (frame {image_id})"
        state_, error, kind = "done", None, None
        if image_id % 25 == 0:
            state_, error, kind = "skipped", "same bytes already captioned", "duplicate"
        elif image_id % 25 == 1:
            state_, error = "failed", "HTTP 422 from the caption API: image rejected"
        path = cams[camera] / rel
        size, mtime_ns, sha = 250_000, int(seen * 1e9), f"{image_id:064x}"
        if image_id > images - present:
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(photo)
            st = path.stat()
            size, mtime_ns, sha = st.st_size, st.st_mtime_ns, digest
        rows.append(
            (
                image_id,
                camera,
                str(path),
                rel,
                size,
                mtime_ns,
                sha,
                state_,
                error,
                kind,
                caption if state_ == "done" else None,
                300 if state_ == "done" else None,
                seen,
                seen + 0.9,
                seen + 0.9 if state_ == "done" else None,
            )
        )
        if state_ == "done" and image_id % 10 == 3:
            event = str(uuid.uuid4())
            body = json.dumps(
                {
                    "id": event,
                    "event": "camwatch.alert",
                    "rule": "package",
                    "severity": "info",
                    "camera": camera,
                    "caption": caption,
                    "matched": ["package"],
                }
            )
            status, attempts, error = DELIVERIES[image_id // 10 % len(DELIVERIES)]
            for kind_, target, text in (("webhook", "ops", body), ("notify", "phones", "{}")):
                alerts.append(
                    (event, image_id, camera, kind_, target, text, status, attempts, error, seen)
                )
    db = sqlite3.connect(state / "camwatch.db", isolation_level=None)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO images (id, camera, path, relpath, size, mtime_ns, sha256, state,"
        " last_error, skip_kind, caption, tokens_total, detected_at, updated_at, captioned_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    db.executemany(
        "INSERT INTO alerts (event_id, image_id, rule, camera, target_kind, target, body, state,"
        " attempts, last_error, next_at, created_at) VALUES (?, ?, 'package', ?, ?, ?, ?, ?, ?,"
        " ?, ?, ?)",
        [(*a[:9], a[9] + 60.0, a[9] + 1.0) for a in alerts],
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    config = {
        "cameras": [{"name": name, "path": str(path)} for name, path in cams.items()],
        "state_dir": str(state),
        "timezone": "Europe/Berlin",
        "rules": RULES,
        "webhooks": [{"name": "ops", "url": "https://hooks.example.com/camwatch"}],
        "notify": [{"name": "phones", "urls": ["ntfy://ntfy.sh/camwatch-bench"]}],
    }
    return state, config


def measure(timeline: Timeline, query: dict[str, list[str]], renders: int) -> list[float]:
    """Render the page `renders` times; return each render's time in milliseconds."""
    status, _, body = timeline.page(query)  # warm: the connection, the template
    assert status == 200, body[:200]
    times = []
    for _ in range(renders):
        started = time.perf_counter()
        status, _, body = timeline.page(query)
        times.append((time.perf_counter() - started) * 1000)
        assert status == 200
    return times


def measure_thumbnails(
    timeline: Timeline, newest: int, count: int
) -> tuple[list[float], list[float]]:
    """Ask for the thumbnails of the newest `count` images twice: made from the file (each
    image once), then from the cache. Return both lists of times in milliseconds."""
    ids = [str(newest - k) for k in range(count)]
    rounds: list[list[float]] = [[], []]
    for times in rounds:
        for image_id in ids:
            started = time.perf_counter()
            status, kind, _ = timeline.thumbnail(image_id)
            times.append((time.perf_counter() - started) * 1000)
            assert (status, kind) == (200, "image/jpeg"), (image_id, status)
    return rounds[0], rounds[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--renders", type=int, default=200)
    parser.add_argument("--present", type=int, default=400, help="newest images with a file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="camwatch-bench-timeline-") as tmp:
        started = time.perf_counter()
        state, data = build(Path(tmp), args.images, args.present)
        built = time.perf_counter() - started
        config = parse_config(data)
        timeline = Timeline(state, config)
        deep = str(args.images // 50)
        pages = [
            ("first page", {}),
            ("one camera", {"camera": ["driveway"]}),
            ("alerts only", {"alerts": ["1"]}),
            ("one camera's alerts", {"camera": ["garage"], "alerts": ["1"]}),
            (f"deep page (before={deep})", {"before": [deep]}),
            ("deep page, one camera", {"before": [deep], "camera": ["backyard"]}),
        ]
        print(f"database: {args.images} images, built in {built:.1f} s\n")
        print("| page | median | p95 | target |")
        print("|---|---:|---:|---|")
        for name, query in pages:
            times = measure(timeline, query, args.renders)
            median = statistics.median(times)
            p95 = percentile(times, 95)
            ok = "ok" if p95 < 100 else "MISSED"
            print(f"| {name} | {median:.1f} ms | {p95:.1f} ms | < 100 ms {ok} |")
        made, cached = measure_thumbnails(timeline, args.images, min(args.present, args.renders))
        for name, times in (("thumbnail, made (cache miss)", made), ("thumbnail, cached", cached)):
            median, p95 = statistics.median(times), percentile(times, 95)
            print(f"| {name} | {median:.1f} ms | {p95:.1f} ms | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
