"""The timeline page and its thumbnails, on a real state database written through the Store (as
the pipeline writes it) and real files: escaping, filters, paging, delivery states, and the
thumbnail's guards (a gone file, a changed one, a symbolic link, a decompression bomb)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import sqlite3
import struct
import time
import urllib.parse
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from camwatch.alerts import alert_candidates
from camwatch.config import Config, parse_config
from camwatch.rules import RuleSet
from camwatch.store import NewImage, SkipKind, Store
from camwatch.store.readonly import connect_readonly
from camwatch.store.records import ImageState
from camwatch.store.timeline import images_page
from camwatch.testing import jpeg_with_caption
from camwatch.thumbnails import (
    MAX_DECODED_PIXELS,
    ThumbnailRefused,
    declared_size,
    make_thumbnail,
)
from camwatch.timeline import Timeline

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
HOSTILE = "A note on the door reads <script>alert(1)</script> and <img src=x onerror=alert(2)>."


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Page(HTMLParser):
    """A rendered page, parsed: its elements (tag, attributes) and its text."""

    def __init__(self, body: bytes) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []
        self._in_style = False
        self.feed(body.decode("utf-8"))
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if not self._in_style:
            self.texts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.texts).split())

    def all(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            a
            for t, a in self.elements
            if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())
        ]

    def card_ids(self) -> list[int]:
        return [int(str(a["id"]).removeprefix("image-")) for a in self.all("article")]

    def link(self, text: str) -> str | None:
        """Return the href of the first link whose text is `text`."""
        found = re.search(
            r'<a [^>]*href="([^"]*)"[^>]*>' + re.escape(text) + "</a>", self.rawdata_copy
        )
        return found.group(1).replace("&amp;", "&") if found else None

    def feed(self, data: str) -> None:
        self.rawdata_copy = data
        super().feed(data)


class Camwatch:
    """A state database written the pipeline's way, the camera folders, and the Timeline."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cams = {name: root / "cams" / name for name in ("front", "drive")}
        for folder in self.cams.values():
            folder.mkdir(parents=True)
        (root / "outside").mkdir()
        self.clock = Clock()
        self.config: Config = parse_config(
            {
                "cameras": [{"name": n, "path": str(p)} for n, p in self.cams.items()],
                "state_dir": str(root / "state"),
                "timezone": "America/New_York",
                "rules": [
                    {"name": "person-down", "any": ["lying on the ground"], "severity": "critical"},
                    {"name": "package", "any": ["parcel", "package"], "severity": "info"},
                ],
                "webhooks": [
                    {"name": "main", "url": "http://127.0.0.1:9/hook"},
                    {"name": "backup", "url": "http://127.0.0.1:9/backup"},
                ],
            }
        )
        self.rules = RuleSet(self.config.rules, timezone=self.config.timezone)
        self.store = Store(root / "state", clock=self.clock)

    def timeline(self, page_size: int = 40) -> Timeline:
        return Timeline(self.root / "state", self.config, page_size=page_size, clock=self.clock)

    def file(self, camera: str, name: str, data: bytes) -> Path:
        path = self.cams[camera] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def queue(self, camera: str, name: str, data: bytes | None = None) -> tuple[int, Path]:
        """Put a file in the queue and claim it, as a worker does; return its id and path."""
        path = self.cams[camera] / name
        if data is not None:
            self.file(camera, name, data)
        st = path.stat() if path.exists() else None
        self.clock.now += 10
        self.store.add_pending(
            [
                NewImage(
                    camera=camera,
                    path=str(path),
                    relpath=name,
                    size=st.st_size if st else 1,
                    mtime_ns=st.st_mtime_ns if st else 1,
                    detected_at=self.clock.now,
                )
            ]
        )
        job = self.store.claim()
        assert job is not None and job.path == str(path)
        return job.id, path

    def captioned(self, camera: str, name: str, caption: str) -> int:
        """Caption a new image (its file written) and queue its alerts; return its id."""
        data = jpeg_with_caption(caption)
        image_id, path = self.queue(camera, name, data)
        st = path.stat()
        sha = hashlib.sha256(data).hexdigest()
        when = datetime.fromtimestamp(self.clock.now, UTC)
        decisions = self.rules.matching(caption, camera, when)
        candidates = alert_candidates(
            self.config, decisions, camera, str(path), sha, caption, self.clock.now, self.clock.now
        )
        self.store.complete(
            image_id, sha, st.st_size, st.st_mtime_ns, caption, (100, 20, 120), candidates
        )
        return image_id

    def alert_rows(self, target: str) -> list[Any]:
        self.clock.now += 1
        return self.store.due_alerts("webhook", target)

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def cw(tmp_path: Path) -> Iterator[Camwatch]:
    made = Camwatch(Path(os.path.realpath(tmp_path)))
    try:
        yield made
    finally:
        made.close()


def render(timeline: Timeline, **query: str) -> Page:
    status, kind, body = timeline.page({k: [v] for k, v in query.items()})
    assert status == 200, body
    assert kind == "text/html; charset=utf-8"
    return Page(body)


# -- escaping -------------------------------------------------------------------------------------


def test_a_hostile_caption_and_file_name_stay_text(cw: Camwatch) -> None:
    cw.captioned("front", "<b>bold</b> name.jpg", HOSTILE + " A parcel lies there.")
    status, _, body = cw.timeline().page({})
    assert status == 200
    html = body.decode()
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    page = Page(body)
    assert page.all("script") == [] and page.all("b") == []
    for tag, attrs in page.elements:
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
    assert all(a["src"] is not None and a["src"].startswith("/thumb/") for a in page.all("img"))
    assert HOSTILE in page.text  # shown as the text it is
    assert "<b>bold</b> name.jpg" in page.text
    # The page loads nothing but its thumbnails: no script, no stylesheet, no font, no frame.
    assert page.all("link") == [] and page.all("iframe") == []


# -- what a card shows ----------------------------------------------------------------------------


def test_cards_show_rules_phrases_deliveries_and_reasons(cw: Camwatch) -> None:
    down = cw.captioned("front", "down.jpg", "A man is lying on the ground by the door.")
    parcel = cw.captioned("drive", "parcel.jpg", "A parcel sits on the step.")
    refused = cw.captioned("drive", "refused.jpg", "A package by the gate.")
    old = cw.captioned("front", "old.jpg", "Another package on the mat.")
    rows = {row.event_id: row for row in cw.alert_rows("main")}
    backups = cw.alert_rows("backup")
    assert len(rows) == 4 and len(backups) == 4
    main = sorted(rows.values(), key=lambda r: r.id)  # down, parcel, refused, old
    backup = sorted(backups, key=lambda r: r.id)
    cw.store.delivered(main[0].id)
    cw.store.postpone(backup[0].id, cw.clock.now + 90, "HTTP 503 from webhook 'backup'")
    cw.store.postpone(backup[0].id, cw.clock.now + 90, "HTTP 503 from webhook 'backup'")
    cw.store.dead_letter(main[2].id, "HTTP 410 from webhook 'main'")
    cw.store.expire(main[3].id, "undelivered after max_age 604800s")
    failed, _ = cw.queue("front", "failed.jpg", b"\xff\xd8junk")
    cw.store.finish(failed, ImageState.FAILED, "HTTP 422 from the caption API: image rejected")
    skipped, _ = cw.queue("drive", "big.jpg", b"\xff\xd8" + b"x" * 100)
    cw.store.finish(
        skipped, ImageState.SKIPPED, "101 bytes > max_image_bytes 100", kind="too_large"
    )
    waiting, _ = cw.queue("drive", "half.jpg", b"\xff\xd8")
    cw.store.finish(waiting, ImageState.SKIPPED, "incomplete; waiting", kind=SkipKind.WAITING)

    page = render(cw.timeline())
    # Newest first; a row handed back to the debouncer is no image's last word: not shown.
    assert page.card_ids() == [skipped, failed, old, refused, parcel, down]
    text = page.text
    assert "front" in text and "drive" in text
    assert "person-down critical matched “lying on the ground”" in text
    assert "package info matched “parcel”" in text
    assert "delivered webhook main" in text
    assert (
        "pending webhook backup 2 attempts failed (HTTP 503 from webhook 'backup'); next try at"
        in text
    )
    assert "dead-lettered webhook main refused for good: HTTP 410 from webhook 'main'" in text
    assert "dropped webhook main undelivered after max_age 604800s" in text
    assert "pending webhook backup not tried yet" in text
    assert "failed failed.jpg Why: HTTP 422 from the caption API: image rejected" in text
    assert "Why: 101 bytes > max_image_bytes 100" in text
    # Severity colours the card by its highest alert.
    (card,) = page.all("article", id=f"image-{down}")
    assert "sev-critical" in str(card["class"])
    # Local time in the configured zone.
    detected = datetime.fromtimestamp(T0 + 10, ZoneInfo("America/New_York"))
    assert page.all("time")[-1]["datetime"] == detected.isoformat(timespec="seconds")


def test_the_explanation_lists_phrases_found_but_not_counted(cw: Camwatch) -> None:
    cw.captioned("front", "a.jpg", "No one is lying on the ground; a parcel is on the step.")
    page = render(cw.timeline())
    assert "1 phrase found but not counted" in page.text
    assert "person-down: any 'lying on the ground' negated by 'no one'" in page.text


def test_a_rule_that_matches_without_an_alert_says_so(cw: Camwatch) -> None:
    image_id, path = cw.queue("front", "a.jpg", jpeg_with_caption("x"))
    st = path.stat()
    # Recorded without alerts (a cooldown, or no target at the time).
    cw.store.complete(image_id, "ab", st.st_size, st.st_mtime_ns, "a parcel", (1, 1, 2), [])
    page = render(cw.timeline())
    assert "Also matches package (“parcel”), no alert" in page.text


# -- filters and paging ---------------------------------------------------------------------------


def test_filters_by_camera_and_alerts_with_links_to_toggle_them(cw: Camwatch) -> None:
    quiet = cw.captioned("front", "quiet.jpg", "An empty porch.")
    parcel = cw.captioned("front", "parcel.jpg", "A parcel on the porch.")
    drive = cw.captioned("drive", "car.jpg", "A package in the car.")
    timeline = cw.timeline()
    assert render(timeline).card_ids() == [drive, parcel, quiet]
    front = render(timeline, camera="front")
    assert front.card_ids() == [parcel, quiet]
    assert render(timeline, alerts="1").card_ids() == [drive, parcel]
    both = render(timeline, camera="front", alerts="1")
    assert both.card_ids() == [parcel]
    # The links keep the other filter and start again from the newest.
    assert both.link("All cameras") == "/?alerts=1"
    assert both.link("drive") == "/?camera=drive&alerts=1"
    assert both.link("Alerts only") == "/?camera=front"
    assert front.link("Alerts only") == "/?camera=front&alerts=1"
    on = [a["href"] for a in both.all("a") if a.get("aria-current") == "true"]
    assert on == ["/?camera=front&amp;alerts=1".replace("&amp;", "&"), "/?camera=front"]
    assert render(timeline, camera="nosuch").card_ids() == []
    assert "No images yet from nosuch." in render(timeline, camera="nosuch").text


def test_pages_are_keyset_paged_on_the_image_id(cw: Camwatch) -> None:
    ids = [cw.captioned("front", f"{n}.jpg", f"Frame {n}, a parcel.") for n in range(7)]
    timeline = cw.timeline(page_size=3)
    first = render(timeline)
    assert first.card_ids() == ids[6:3:-1]
    assert first.link("← Newest") is None
    older = first.link("Older →")
    assert older == f"/?before={ids[4]}"
    second = render(timeline, before=str(ids[4]))
    assert second.card_ids() == ids[3:0:-1]
    assert second.link("← Newest") == "/"
    third = render(timeline, before=str(ids[1]))
    assert third.card_ids() == [ids[0]]
    assert third.link("Older →") is None  # the last page
    assert render(timeline, before=str(ids[0])).card_ids() == []
    assert "No older images." in render(timeline, before=str(ids[0])).text
    # Exactly a page left: no link to an empty page.
    assert render(timeline, before=str(ids[3])).link("Older →") is None
    # Filters are kept from page to page.
    paged = render(timeline, alerts="1", camera="front").link("Older →")
    assert paged == f"/?camera=front&alerts=1&before={ids[4]}"
    assert render(timeline, before="9" * 19).card_ids() == ids[6:3:-1]  # above every id


def test_a_cameras_pages_follow_when_its_images_were_seen_ties_included(cw: Camwatch) -> None:
    ids = []
    for n in range(7):
        cw.clock.now = T0 if n < 5 else T0 + 100  # five seen in the same second, then two
        ids.append(cw.captioned("front", f"{n}.jpg", f"Frame {n}."))
        cw.captioned("drive", f"{n}.jpg", f"Frame {n} of the other camera.")
    timeline = cw.timeline(page_size=2)
    seen: list[int] = []
    query = {"camera": "front"}
    for _ in range(10):  # 4 pages of 2
        page = render(timeline, **query)
        seen += page.card_ids()
        older = page.link("Older →")
        if older is None:
            break
        query = {k: v[0] for k, v in urllib.parse.parse_qs(older.removeprefix("/?")).items()}
        assert query["camera"] == "front"
    assert seen == ids[::-1]


@pytest.mark.parametrize("before", ["x", "-1", "1.5", "١٢", "1" * 20])
def test_a_before_that_is_not_an_id_is_a_bad_request(cw: Camwatch, before: str) -> None:
    status, kind, body = cw.timeline().page({"before": [before]})
    assert (status, kind) == (400, "text/plain; charset=utf-8")
    assert b"before: expected an image id" in body


def test_no_database_yet_is_unavailable_not_created(tmp_path: Path) -> None:
    config = parse_config(
        {"cameras": [{"name": "a", "path": str(tmp_path)}], "state_dir": str(tmp_path / "s")}
    )
    timeline = Timeline(tmp_path / "s", config)
    assert timeline.page({})[0] == 503
    assert timeline.thumbnail("1")[0] == 503
    assert not (tmp_path / "s").exists()


def test_every_query_is_answered_from_an_index(cw: Camwatch) -> None:
    for n in range(30):
        cw.captioned("front" if n % 3 else "drive", f"{n}.jpg", f"Frame {n}, a parcel.")
    db = connect_readonly(cw.root / "state")
    plans: list[str] = []

    class Explained:
        def execute(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
            plans.extend(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, args))
            return db.execute(sql, args)

    try:
        for camera in (None, "front"):
            for alerts_only in (False, True):
                for before in (None, 10):
                    plans.clear()
                    images_page(Explained(), 41, camera, alerts_only, before)  # type: ignore[arg-type]
                    assert plans, "no plan"
                    for line in plans:
                        assert not line.startswith("SCAN"), (camera, alerts_only, before, plans)
                        assert "TEMP B-TREE" not in line, (camera, alerts_only, before, plans)
    finally:
        db.close()


# -- thumbnails -----------------------------------------------------------------------------------


def test_a_thumbnail_is_a_small_jpeg_of_the_file_while_it_is_there(cw: Camwatch) -> None:
    image_id = cw.captioned("front", "a.jpg", "A parcel.")
    path = cw.cams["front"] / "a.jpg"
    timeline = cw.timeline()
    status, kind, thumb = timeline.thumbnail(str(image_id))
    assert (status, kind) == (200, "image/jpeg")
    with Image.open(io.BytesIO(thumb)) as small:
        assert small.format == "JPEG" and small.width <= 400
    assert timeline.thumbnail(str(image_id))[2] == thumb  # the same, from the cache
    assert render(timeline).all("img")[0]["src"] == f"/thumb/{image_id}"

    # Deleted: the page says so and the thumbnail is gone, even though it was cached.
    path.unlink()
    assert timeline.thumbnail(str(image_id))[0] == 404
    page = render(timeline)
    assert page.all("img") == []
    assert "file gone" in page.text


def test_a_thumbnail_of_a_large_photo_is_bounded(cw: Camwatch) -> None:
    photo = io.BytesIO()
    Image.new("RGB", (4000, 3000), (10, 120, 200)).save(photo, "JPEG")
    made = make_thumbnail(photo.getvalue())
    with Image.open(io.BytesIO(made)) as small:
        assert small.size == (400, 300)


def test_no_thumbnail_for_a_file_replaced_or_swapped_for_a_link(cw: Camwatch) -> None:
    swapped = cw.captioned("front", "swapped.jpg", "A parcel.")
    changed = cw.captioned("front", "changed.jpg", "A parcel.")
    folder = cw.captioned("front", "day/in-folder.jpg", "A parcel.")
    timeline = cw.timeline()
    for image_id in (swapped, changed, folder):
        assert timeline.thumbnail(str(image_id))[0] == 200

    # The file swapped for a link to a file outside the camera's folder (same bytes, same
    # mtime: only the link gives it away).
    target = cw.root / "outside" / "secret.jpg"
    original = cw.cams["front"] / "swapped.jpg"
    target.write_bytes(original.read_bytes())
    st = original.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    original.unlink()
    original.symlink_to(target)
    # A folder on the way swapped for a link.
    day = cw.cams["front"] / "day"
    moved = cw.root / "outside" / "day"
    day.rename(moved)
    day.symlink_to(moved)
    # Another image written under the same name.
    (cw.cams["front"] / "changed.jpg").write_bytes(jpeg_with_caption("something else"))

    for image_id in (swapped, changed, folder):
        status, kind, body = timeline.thumbnail(str(image_id))
        assert (status, kind) == (404, "text/plain; charset=utf-8"), image_id
        assert not body.startswith(b"\xff\xd8")
    text = render(timeline).text
    assert "not shown: is a symbolic link" in text
    assert "not shown: is in a symbolically linked folder" in text
    assert "file changed since" in text


def test_a_hard_link_or_the_same_size_and_mtime_with_other_bytes_is_refused(cw: Camwatch) -> None:
    linked = cw.captioned("front", "linked.jpg", "A parcel.")
    forged = cw.captioned("front", "forged.jpg", "A parcel.")
    timeline = cw.timeline()
    os.link(cw.cams["front"] / "linked.jpg", cw.root / "outside" / "other-name.jpg")
    path = cw.cams["front"] / "forged.jpg"
    st = path.stat()
    path.write_bytes(bytes(b ^ 1 if i == 40 else b for i, b in enumerate(path.read_bytes())))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert timeline.thumbnail(str(linked))[0] == 404
    assert timeline.thumbnail(str(forged))[0] == 404  # the sha256 recorded gives it away


@pytest.mark.parametrize("image_id", ["abc", "", "1/../2", "99999", "1" * 30, "٣"])
def test_a_thumbnail_of_no_such_image_is_404(cw: Camwatch, image_id: str) -> None:
    cw.captioned("front", "a.jpg", "A parcel.")
    assert cw.timeline().thumbnail(image_id)[0] == 404


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A whole, valid-looking PNG that declares `width` x `height` pixels, in a few hundred
    bytes (its data is a little zlib stream of zeros)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" * 100_000, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def bomb_jpeg(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header is rewritten to declare `width` x `height`."""
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "JPEG")
    data = bytearray(out.getvalue())
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (bomb_png(100_000, 100_000), (100_000, 100_000)),
        (bomb_png(5000, 5000), (5000, 5000)),  # just over MAX_DECODED_PIXELS
        (bomb_jpeg(65_000, 65_000), (65_000, 65_000)),
    ],
)
def test_a_decompression_bomb_is_refused_from_its_header(
    data: bytes, size: tuple[int, int]
) -> None:
    assert declared_size(data) == size
    assert size[0] * size[1] > MAX_DECODED_PIXELS
    started = time.monotonic()
    with pytest.raises(ThumbnailRefused, match="pixels"):
        make_thumbnail(data)
    assert time.monotonic() - started < 1.0


def test_a_bomb_in_a_camera_folder_gets_no_thumbnail_and_the_page_still_renders(
    cw: Camwatch,
) -> None:
    image_id, path = cw.queue("front", "bomb.png", bomb_png(60_000, 60_000))
    st = path.stat()
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    cw.store.complete(image_id, sha, st.st_size, st.st_mtime_ns, "noise", (1, 1, 2), [])
    timeline = cw.timeline()
    started = time.monotonic()
    assert timeline.thumbnail(str(image_id))[0] == 404
    assert time.monotonic() - started < 1.0
    assert render(timeline).card_ids() == [image_id]


def test_garbage_and_too_many_scans_are_refused() -> None:
    with pytest.raises(ThumbnailRefused):
        make_thumbnail(b"GIF89a" + b"\x00" * 100)
    with pytest.raises(ThumbnailRefused):
        make_thumbnail(bomb_jpeg(8, 8)[:40])  # cut in its headers
    scans = bomb_jpeg(8, 8)
    many = scans[:2] + (b"\xff\xfe\x00\x04\xff\xda" * 70) + scans[2:]
    with pytest.raises(ThumbnailRefused, match="scans"):
        make_thumbnail(many)
