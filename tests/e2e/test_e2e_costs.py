"""End to end: costs and privacy (issue 14). The real daemon uploads stripped and scaled copies
(checked on the bytes the stand-in API received, the files on disk untouched), skips near
duplicates per camera within `window`, pauses on a spent daily budget or exhausted credits with
one alert each, and keeps to `max_per_minute`."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from camwatch.testing import StandinCaptionAPI, WebhookReceiver, jpeg_with_caption
from camwatch.testing.multipart import ParsedRequest
from camwatch.testing.scenes import brighter, jpeg, noisy, scene, shifted, with_person
from camwatch.testing.server import Handler

from .support import (
    API_KEY,
    HOOK_SECRET,
    SECRET_ENV,
    ConfigWriter,
    Daemon,
    Tree,
    assert_alert,
    base_config,
    drop,
    image,
    run_cli,
    wait_until,
)

StartDaemon = Callable[..., Daemon]

# What a camera puts in its files and must not leave the machine with strip_metadata.
MAKER = "E2ECamMaker-31c9"
MODEL = "e2e-model-7f3a"
DATUM = "WGS-84-e2e-b02"  # in the GPS IFD, next to the coordinates
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-'
    b'syntax-ns#"><rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
    b'xmp:Label="xmp-secret-5520"/></rdf:RDF></x:xmpmeta>'
)
COMMENT = b"comment-secret-1846"
SECRETS = (MAKER.encode(), MODEL.encode(), DATUM.encode(), b"xmp-secret-5520", COMMENT)
PNG_DROPPED = {b"tEXt", b"zTXt", b"iTXt", b"tIME", b"eXIf"}


# -- camera-like files ---------------------------------------------------------------------------


def _exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = MAKER  # Make
    exif[0x0110] = MODEL  # Model
    exif[0x0132] = "2024:05:01 12:00:00"  # DateTime
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (52.0, 22.0, 7.5)  # latitude
    gps[3], gps[4] = "E", (4.0, 53.0, 30.0)  # longitude
    gps[0x12] = DATUM  # GPSMapDatum
    return exif


def camera_jpeg(seed: int, size: tuple[int, int] = (1920, 1080)) -> bytes:
    """Return a JPEG as a camera writes it: EXIF with GPS, an XMP packet, a comment."""
    out = io.BytesIO()
    scene(seed, size).save(out, "JPEG", quality=90, exif=_exif(), xmp=XMP, comment=COMMENT)
    data = out.getvalue()
    assert all(secret in data for secret in SECRETS)
    return data


def camera_png(seed: int, size: tuple[int, int] = (640, 360)) -> bytes:
    """Return a PNG with text (tEXt, iTXt), time (tIME) and EXIF (eXIf) chunks."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", COMMENT.decode())
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    info.add(b"tIME", struct.pack(">HBBBBB", 2024, 5, 1, 12, 0, 0))
    out = io.BytesIO()
    scene(seed, size).save(out, "PNG", pnginfo=info, exif=_exif())
    data = out.getvalue()
    assert PNG_DROPPED - {b"zTXt"} <= {kind for kind, _ in png_chunks(data)}
    return data


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """Return (marker, payload) of a JPEG's header segments up to SOS, then (0xDA, the rest)."""
    assert data[:2] == b"\xff\xd8"
    found: list[tuple[int, bytes]] = []
    pos = 2
    while pos < len(data):  # bounded: pos grows on every pass
        assert data[pos] == 0xFF, f"no marker at {pos}"
        marker = data[pos + 1]
        if marker == 0xDA:
            found.append((marker, data[pos:]))
            return found
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        found.append((marker, data[pos + 4 : pos + 2 + length]))
        pos += 2 + length
    raise AssertionError("a JPEG without SOS")


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Return (type, data) of a PNG's chunks."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    found: list[tuple[bytes, bytes]] = []
    pos = 8
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        found.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return found


def pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as decoded:
        return decoded.mode, decoded.size, decoded.tobytes()


# -- a stand-in API that keeps the bytes it received ---------------------------------------------


class RecordingAPI(StandinCaptionAPI):
    """The stand-in caption API, also keeping each upload's file bytes by file name."""

    def __init__(self, captions: dict[str, str]) -> None:
        super().__init__(captions=captions, api_key=API_KEY)
        self._lock = threading.Lock()
        self._uploads: dict[str, list[bytes]] = {}

    def _decide(self, handler: Handler, parsed: ParsedRequest) -> tuple[Any, str | None]:
        if parsed.file_name is not None:
            with self._lock:
                self._uploads.setdefault(parsed.file_name, []).append(parsed.file_bytes)
        return super()._decide(handler, parsed)

    def uploaded(self, name: str) -> bytes:
        """Return the bytes uploaded under `name` (exactly one upload)."""
        with self._lock:
            got = list(self._uploads.get(name, []))
        assert len(got) == 1, f"{len(got)} uploads of {name}"
        return got[0]


CAPTIONS = {
    "cam.jpg": "A parcel on the step.",
    "shot.png": "A parcel by the gate.",
    "big.jpg": "A parcel on the path.",
    "small.jpg": "A parcel on the mat.",
    "big.png": "A parcel near the bins.",
}


@pytest.fixture
def rapi() -> Iterator[RecordingAPI]:
    with RecordingAPI(CAPTIONS) as server:
        yield server


@pytest.fixture
def rconfig(
    tree: Tree, rapi: RecordingAPI, hooks: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> ConfigWriter:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    return ConfigWriter(tree.root / "config.yaml", base_config(tree, rapi, hooks))


def _drop_and_caption(
    daemon: Daemon, hooks: WebhookReceiver, files: dict[Path, bytes]
) -> dict[Path, int]:
    """Drop `files`, wait until each is captioned and its alert (a parcel) delivered; check
    the alert names the file's sha256. Return each file's mtime_ns."""
    for path, data in files.items():
        drop(path, data)
    mtimes = {path: os.stat(path).st_mtime_ns for path in files}
    for path in files:
        daemon.wait_event("image_captioned", path=str(path))
    assert hooks.wait_for_delivered(len(files), 30), daemon.tail()
    by_image = {r.json["image"]: r for r in hooks.delivered}
    for path, data in files.items():
        assert_alert(
            by_image[str(path)],
            rule="package",
            camera="frontdoor",
            image=path,
            matched=["parcel"],
            data=data,
        )
    return mtimes


def _unchanged(files: dict[Path, bytes], mtimes: dict[Path, int]) -> None:
    for path, data in files.items():
        assert path.read_bytes() == data, f"{path} changed on disk"
        assert os.stat(path).st_mtime_ns == mtimes[path], f"{path} touched"


# -- stripping and scaling -----------------------------------------------------------------------


def test_without_the_options_the_files_bytes_are_uploaded_as_they_are(
    tree: Tree,
    rapi: RecordingAPI,
    hooks: WebhookReceiver,
    rconfig: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(rconfig.write())
    files = {
        tree.frontdoor / "cam.jpg": camera_jpeg(1, (960, 540)),
        tree.frontdoor / "shot.png": camera_png(2),
    }
    mtimes = _drop_and_caption(daemon, hooks, files)
    for path, data in files.items():
        assert rapi.uploaded(path.name) == data
    _unchanged(files, mtimes)
    assert daemon.terminate()[0] == 0


def test_strip_metadata_uploads_the_same_pixels_without_exif_gps_xmp_or_comments(
    tree: Tree,
    rapi: RecordingAPI,
    hooks: WebhookReceiver,
    rconfig: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    data = rconfig.data()
    data["caption"]["strip_metadata"] = True
    daemon = start_daemon(rconfig.write(data))
    cam, shot = tree.frontdoor / "cam.jpg", tree.frontdoor / "shot.png"
    files = {cam: camera_jpeg(1), shot: camera_png(2)}
    mtimes = _drop_and_caption(daemon, hooks, files)

    sent = rapi.uploaded("cam.jpg")
    for secret in (*SECRETS, b"Exif\x00\x00", b"http://ns.adobe.com/xap/1.0/"):
        assert secret not in sent, secret
    markers = [marker for marker, _ in jpeg_segments(sent)]
    assert 0xE1 not in markers and 0xFE not in markers, [hex(m) for m in markers]
    assert markers[0] == 0xE0  # JFIF kept: it says how to read the colours
    with Image.open(io.BytesIO(sent)) as decoded:
        assert not decoded.getexif()
        assert not {"exif", "xmp", "comment"} & set(decoded.info)
    # Not re-encoded: the same scan bytes, the same pixels.
    assert jpeg_segments(sent)[-1] == jpeg_segments(files[cam])[-1]
    assert pixels(sent) == pixels(files[cam])
    assert len(sent) < len(files[cam])

    sent_png = rapi.uploaded("shot.png")
    kinds = [kind for kind, _ in png_chunks(sent_png)]
    assert not PNG_DROPPED & set(kinds), kinds
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    for secret in SECRETS:
        assert secret not in sent_png, secret
    idat = [body for kind, body in png_chunks(files[shot]) if kind == b"IDAT"]
    assert [body for kind, body in png_chunks(sent_png) if kind == b"IDAT"] == idat
    assert pixels(sent_png) == pixels(files[shot])

    _unchanged(files, mtimes)
    assert daemon.terminate()[0] == 0


def test_upload_max_side_scales_large_images_and_sends_small_ones_unchanged(
    tree: Tree,
    rapi: RecordingAPI,
    hooks: WebhookReceiver,
    rconfig: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    data = rconfig.data()
    data["caption"].update(upload_max_side=1280, jpeg_quality=80)
    daemon = start_daemon(rconfig.write(data))
    files = {
        tree.frontdoor / "big.jpg": camera_jpeg(3),
        tree.frontdoor / "small.jpg": camera_jpeg(4, (640, 360)),
        tree.frontdoor / "big.png": camera_png(5, (1920, 1080)),
    }
    mtimes = _drop_and_caption(daemon, hooks, files)

    big = rapi.uploaded("big.jpg")
    with Image.open(io.BytesIO(big)) as decoded:
        assert (decoded.format, decoded.size) == ("JPEG", (1280, 720))
    assert len(big) < len(files[tree.frontdoor / "big.jpg"])
    big_png = rapi.uploaded("big.png")
    with Image.open(io.BytesIO(big_png)) as decoded:
        assert (decoded.format, decoded.size) == ("PNG", (1280, 720))
    # Not larger than upload_max_side: the file's bytes as they are (metadata too, as asked).
    assert rapi.uploaded("small.jpg") == files[tree.frontdoor / "small.jpg"]

    _unchanged(files, mtimes)
    assert daemon.terminate()[0] == 0


# -- near duplicates -----------------------------------------------------------------------------


def _status(config: Path) -> dict[str, Any]:
    result = run_cli("status", "-c", str(config), "--json")
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def test_a_burst_is_captioned_once_per_camera_and_again_after_the_window(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    window = 4.0
    data = config.data()
    data["caption"]["dedupe"] = {"window": f"{window}s", "max_distance": 5}
    path = config.write(data)
    daemon = start_daemon(path)

    base = scene(11)
    parcel = "A parcel on the step."

    def frame(picture: Image.Image, caption: str = parcel, quality: int = 85) -> bytes:
        return jpeg_with_caption(caption, base=jpeg(picture, quality=quality))

    first = frame(base)
    burst = {
        "burst-0.jpg": first,
        "burst-1.jpg": frame(base, quality=70),  # re-encoded
        "burst-2.jpg": frame(noisy(base, 11)),
        "burst-3.jpg": frame(shifted(base, 2, 1)),
        "burst-4.jpg": frame(brighter(base, 1.05)),
    }
    burst_paths = [tree.frontdoor / name for name in burst]
    person = tree.frontdoor / "person.jpg"
    other = tree.frontdoor / "other.jpg"
    elsewhere = tree.driveway / "burst-0.jpg"
    for name, body in burst.items():
        drop(tree.frontdoor / name, body)
    drop(person, frame(with_person(base, 11), "A man is lying on the ground."))
    drop(other, frame(scene(12), "An empty street."))
    drop(elsewhere, first)  # the same frame on another camera

    daemon.wait_event("image_deduped", count=4)
    deduped = daemon.named("image_deduped")
    kept = Path(deduped[0]["matched"])  # the one frame of the burst that was captioned
    for target in (kept, person, other, elsewhere):
        daemon.wait_event("image_captioned", path=str(target))
    seen_at = time.monotonic()  # after the daemon recorded it: its window started before
    captioned = {e["path"] for e in daemon.named("image_captioned")}
    assert [p for p in burst_paths if str(p) in captioned] == [kept]
    assert sorted(e["path"] for e in deduped) == sorted(str(p) for p in burst_paths if p != kept)
    for event in deduped:
        assert event["camera"] == "frontdoor"
        assert event["matched"] == str(kept)
        assert event["outcome"] == "deduped"

    # The database names the image each near duplicate matched.
    db = sqlite3.connect(f"file:{tree.state / 'camwatch.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT d.path, c.path FROM images d JOIN images c ON c.id = d.deduped_of"
        ).fetchall()
    finally:
        db.close()
    assert sorted(rows) == sorted((e["path"], str(kept)) for e in deduped)

    # After `window`, the same frame is captioned again (the same bytes at a new path).
    wait_until(lambda: time.monotonic() > seen_at + window + 0.5, window + 5, "the window")
    later = drop(tree.frontdoor / "later.jpg", first)
    daemon.wait_event("image_captioned", path=str(later))
    assert len(daemon.named("image_deduped")) == 4

    # One alert each for the captioned images; none for the near duplicates.
    assert hooks.wait_for_delivered(4, 30), daemon.tail()
    alerted = sorted((r.json["rule"], r.json["image"]) for r in hooks.delivered)
    assert alerted == sorted(
        [
            ("package", str(kept)),
            ("person-down", str(person)),
            ("package", str(elsewhere)),
            ("package", str(later)),
        ]
    )
    assert len(api.requests) == 5

    status = _status(path)
    assert status["cameras"]["frontdoor"]["today"] == {
        "captioned": 4,
        "skipped": 0,
        "failed": 0,
        "deduped": 4,
    }
    assert status["cameras"]["driveway"]["today"]["captioned"] == 1
    assert status["outbox"]["main"]["pending"] == 0
    assert daemon.terminate()[0] == 0


# -- the daily budget, credits, the request pace ---------------------------------------------------


def _tokens_of(request: Any) -> int:
    """The stand-in's answer: `input` 258 + a quarter of the prompts, `output` 1 + a quarter of
    the caption."""
    prompt = f"{request.json['user_prompt']} {request.json['system_prompt']}"
    return int(258 + len(prompt) // 4 + 1 + len(request.caption) // 4)


def _logged_at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def _cost_alerts(hooks: WebhookReceiver, event: str) -> list[Any]:
    return [r for r in hooks.delivered if r.json.get("event") == event]


def test_a_spent_daily_budget_pauses_once_and_a_raised_budget_resumes_on_sighup(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    budget = 500  # about 270 tokens per image: the second one spends it
    data = config.data(timezone="UTC")
    data["caption"].update(daily_tokens=budget, concurrency=1)
    path = config.write(data)
    first = start_daemon(path)
    images = [drop(tree.frontdoor / f"quiet-{i}.jpg", image(f"Quiet porch {i}.")) for i in range(5)]

    exhausted = first.wait_event("budget_exhausted")
    assert hooks.wait_for_delivered(1, 30), first.tail()
    wait_until(lambda: len(first.named("image_requeued")) >= 3, 30, "the rest put off")
    done = [r for r in api.requests if r.status == 200]
    assert len(done) == 2, [r.file_name for r in api.requests]
    spent = sum(_tokens_of(r) for r in done)
    assert spent >= budget > spent - _tokens_of(done[-1])

    (alert,) = _cost_alerts(hooks, "camwatch.budget_exhausted")
    body = alert.json
    assert set(body) == {"id", "event", "day", "daily_tokens", "spent", "resumes_at", "detected_at"}
    today = datetime.now(UTC).date()
    assert body["day"] == today.isoformat() == exhausted["day"]
    assert (body["daily_tokens"], body["spent"]) == (budget, spent)
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)
    assert datetime.fromisoformat(body["resumes_at"]) == midnight
    assert body["detected_at"].endswith("Z")
    assert alert.event_id == body["id"]
    assert WebhookReceiver.verify_signature(alert.body, alert.signature, HOOK_SECRET)
    assert alert.wall_time - _logged_at(exhausted) < 5.0  # sent at once, not at a later poll
    status = _status(path)
    assert status["queue"] == 3
    assert status["tokens"]["today"] == spent
    assert len(first.named("budget_exhausted")) == 1
    assert first.terminate()[0] == 0

    # A restart, and one more image: still paused, and no second alert.
    second = start_daemon(path)
    extra = drop(tree.frontdoor / "quiet-5.jpg", image("Quiet porch 5."))
    second.wait_event("image_requeued", path=str(extra))
    assert _status(path)["outbox"]["main"]["pending"] == 0
    assert len(hooks.received) == 1
    assert not second.named("budget_exhausted")
    assert len(api.requests) == 2
    assert second.terminate()[0] == 0

    # Started again (nothing new: this process has not met the spent budget itself), then a
    # raised budget and a reload: captioning resumes at once.
    third = start_daemon(path)
    data["caption"]["daily_tokens"] = 100_000
    config.write(data)
    third.hup()
    third.wait_event("reloaded")
    captioned = {e["path"] for e in first.named("image_captioned")}
    waiting = [p for p in images if str(p) not in captioned]
    assert len(waiting) == 3
    for target in [*waiting, extra]:
        third.wait_event("image_captioned", path=str(target), timeout=15)
    assert _status(path)["queue"] == 0
    assert len(hooks.received) == 1
    assert third.terminate()[0] == 0


def test_exhausted_credits_alert_once_keep_the_queue_and_a_probe_resumes(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    api.set_outage(402)
    path = config.write()  # pause_probe: 1s
    daemon = start_daemon(path)
    images = [drop(tree.frontdoor / f"c-{i}.jpg", image(f"Quiet porch {i}.")) for i in range(3)]
    daemon.wait_event("captioning_paused")
    announced = daemon.wait_event("credits_exhausted")
    assert hooks.wait_for_delivered(1, 30), daemon.tail()
    assert hooks.delivered[0].wall_time - _logged_at(announced) < 5.0
    before = api.count
    assert api.wait_for(before + 2, 30), daemon.tail()  # two probes later: still one alert
    (alert,) = _cost_alerts(hooks, "camwatch.credits_exhausted")
    assert {"id", "event", "detected_at"} <= set(alert.json)
    assert WebhookReceiver.verify_signature(alert.body, alert.signature, HOOK_SECRET)
    assert _status(path)["queue"] == 3
    assert not daemon.named("image_failed")

    api.set_outage(None)  # credits bought: the next probe succeeds
    daemon.wait_event("captioning_resumed")
    for target in images:
        daemon.wait_event("image_captioned", path=str(target))
    assert len(hooks.received) == 1
    assert len(daemon.named("credits_exhausted")) == 1
    assert daemon.terminate()[0] == 0


def test_max_per_minute_lets_a_burst_through_up_to_the_limit_then_holds(
    tree: Tree,
    api: StandinCaptionAPI,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    data = config.data()
    data["caption"]["max_per_minute"] = 3
    daemon = start_daemon(config.write(data))
    for i in range(5):
        drop(tree.frontdoor / f"paced-{i}.jpg", image(f"Quiet porch {i}."))
    assert api.wait_for(3, 30), daemon.tail()
    assert api.requests[2].time - api.requests[0].time < 5.0  # up to the limit at once
    assert not api.wait_for(4, 3.0), "a 4th request within the minute"
    assert len(daemon.named("image_captioned")) == 3
    code, took = daemon.terminate()
    assert code == 0 and took < 10.0
    assert len(api.requests) == 3
