"""What captioning may spend: the request pace, the daily token budget across a local midnight,
and the two cost alerts, once each, stepped through the real pipeline with injected clocks."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from PIL import Image
from structlog.testing import capture_logs
from test_pipeline import (  # noqa: F401  (fixtures)
    PERSON,
    Rig,
    caption_answer,
    error_answer,
    make_rig,
)

from camwatch.budget import (
    BUDGET_EXHAUSTED,
    CREDITS_EXHAUSTED,
    RequestPace,
    local_day,
    next_midnight,
)
from camwatch.files import Snapshot
from camwatch.gate import GateState
from camwatch.pipeline import Outcome, Runtime
from camwatch.testing.multipart import parse_request
from camwatch.testing.scenes import jpeg, noisy, scene, with_person

BERLIN = "Europe/Berlin"


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_pace_allows_a_burst_up_to_the_limit_then_one_per_freed_minute_slot() -> None:
    clock = Clock()
    pace = RequestPace(3, clock)
    stop = threading.Event()
    for _ in range(3):
        assert pace.wait_time() == 0
        assert pace.take(stop)
    assert pace.wait_time() == 60.0  # the 4th waits for the 1st to leave the window
    clock.now += 20
    assert pace.wait_time() == 40.0
    clock.now += 40
    assert pace.wait_time() == 0 and pace.take(stop)
    pace.set_rate(None)
    assert pace.wait_time() == 0


def test_a_waiting_request_gives_up_when_stopped() -> None:
    pace = RequestPace(1, Clock())
    stop = threading.Event()
    assert pace.take(stop)
    stop.set()
    assert pace.take(stop) is False


def _at(text: str, zone: str = BERLIN) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def test_local_days_and_midnights_follow_the_time_zone_across_a_dst_change() -> None:
    assert local_day(_at("2026-11-23T23:59:59"), BERLIN) == "2026-11-23"
    assert local_day(_at("2026-11-23T23:59:59"), "UTC") == "2026-11-23"
    assert local_day(_at("2026-11-24T00:30:00"), BERLIN) == "2026-11-24"
    assert local_day(_at("2026-11-24T00:30:00"), "UTC") == "2026-11-23"
    # The night the clocks go forward (29 March 2026) is 23 hours long.
    assert next_midnight(_at("2026-03-28T12:00:00"), BERLIN) == _at("2026-03-29T00:00:00")
    assert next_midnight(_at("2026-03-29T00:00:00"), BERLIN) - _at("2026-03-29T00:00:00") == (
        23 * 3600
    )


def _with(rig: Rig, **changes: object) -> None:
    """Swap in a configuration with `changes` (a reload, as the pipeline sees it)."""
    current = rig.current
    caption = {k: v for k, v in changes.items() if k in type(current.config.caption).model_fields}
    top = {k: v for k, v in changes.items() if k not in caption}
    config = current.config.model_copy(
        update={**top, "caption": current.config.caption.model_copy(update=caption)}
    )
    rig.current = Runtime(config, current.client, current.rules)


def _cost_alerts(rig: Rig, event: str) -> list[dict[str, object]]:
    bodies = [json.loads(row.body) for row in rig.store.due_alerts("webhook", "ops", limit=500)]
    return [body for body in bodies if body["event"] == event]


def test_the_daily_budget_pauses_until_local_midnight_and_alerts_once(
    make_rig: Callable[..., Rig],  # noqa: F811
    make_image: Callable[..., bytes],
) -> None:
    rig = make_rig()
    _with(rig, daily_tokens=200, timezone=BERLIN)
    rig.wall.now = _at("2026-11-23T23:50:00")
    ids = [rig.queue(f"snap-{i}.jpg", make_image("JPEG", seed=i)) for i in range(6)]
    for _ in range(2):
        rig.adapter.push((200, caption_answer(PERSON, (120, 15, 135))))
    assert rig.pipeline.process(rig.claim(ids[0])) is Outcome.CAPTIONED  # 135 tokens
    assert rig.pipeline.process(rig.claim(ids[1])) is Outcome.CAPTIONED  # 270: spent
    assert rig.store.tokens_on("2026-11-23") == 270

    # The budget is spent: the next images wait for midnight; one alert, to every target.
    assert rig.pipeline.process(rig.claim(ids[2])) is Outcome.PAUSED
    assert rig.pipeline.process(rig.claim(ids[3])) is Outcome.PAUSED
    assert rig.pipeline.process(rig.claim(ids[4])) is Outcome.PAUSED
    assert rig.pipeline.process(rig.claim(ids[5])) is Outcome.PAUSED
    midnight = _at("2026-11-24T00:00:00")
    assert rig.row(ids[2])["next_at"] == midnight and rig.row(ids[3])["next_at"] == midnight
    [alert] = _cost_alerts(rig, BUDGET_EXHAUSTED)
    assert (alert["day"], alert["daily_tokens"], alert["spent"]) == ("2026-11-23", 200, 270)
    assert alert["resumes_at"] == "2026-11-23T23:00:00.000Z"
    assert rig.store.claim() is None  # nothing is due before midnight (no API call either)

    # Past the local midnight: a new day, a new budget; the images waiting are captioned.
    rig.wall.now = midnight + 5
    rig.adapter.push((200, caption_answer(PERSON, (120, 15, 135))))
    rig.adapter.push((200, caption_answer(PERSON, (120, 15, 135))))
    assert rig.pipeline.process(rig.claim(ids[2])) is Outcome.CAPTIONED
    assert rig.pipeline.process(rig.claim(ids[3])) is Outcome.CAPTIONED
    assert rig.store.tokens_on("2026-11-24") == 270
    # ...and the new day's budget, spent, is announced again: once more, for that day.
    assert rig.pipeline.process(rig.claim(ids[4])) is Outcome.PAUSED
    assert rig.pipeline.process(rig.claim(ids[5])) is Outcome.PAUSED
    alerts = _cost_alerts(rig, BUDGET_EXHAUSTED)
    assert [a["day"] for a in alerts] == ["2026-11-23", "2026-11-24"]


def test_credits_exhausted_pauses_and_alerts_once_per_pause(
    make_rig: Callable[..., Rig],  # noqa: F811
    make_image: Callable[..., bytes],
) -> None:
    rig = make_rig()
    first = rig.queue("a.jpg", make_image("JPEG", seed=1))
    rig.adapter.push((200, error_answer(402, "insufficient credits")))
    assert rig.pipeline.process(rig.claim(first)) is Outcome.PAUSED
    assert rig.gate.state is GateState.PAUSED
    [alert] = _cost_alerts(rig, CREDITS_EXHAUSTED)
    assert "credits" in str(alert["reason"])

    # The probe meets the same answer: still the same pause, no second alert.
    rig.mono.advance(rig.config.caption.pause_probe + 1)
    rig.wall.advance(rig.config.caption.pause_probe + 1)
    rig.adapter.push((200, error_answer(402, "insufficient credits")))
    assert rig.pipeline.process(rig.claim(first)) is Outcome.PAUSED
    assert len(_cost_alerts(rig, CREDITS_EXHAUSTED)) == 1

    # Topped up: the probe succeeds and captioning resumes; the next exhaustion is a new pause.
    rig.mono.advance(rig.config.caption.pause_probe + 1)
    rig.wall.advance(rig.config.caption.pause_probe + 1)
    rig.adapter.push((200, caption_answer(PERSON)))
    assert rig.pipeline.process(rig.claim(first)) is Outcome.CAPTIONED
    second = rig.queue("b.jpg", make_image("JPEG", seed=2))
    rig.adapter.push((200, error_answer(402, "insufficient credits")))
    assert rig.pipeline.process(rig.claim(second)) is Outcome.PAUSED
    assert len(_cost_alerts(rig, CREDITS_EXHAUSTED)) == 2


def test_a_near_duplicate_is_deduped_with_the_image_it_matched_and_raises_no_alert(
    make_rig: Callable[..., Rig],  # noqa: F811
) -> None:
    rig = make_rig(dedupe={"window": "30s"})
    base = scene(21)
    first = rig.queue("a.jpg", jpeg(base))
    again = rig.queue("b.jpg", jpeg(noisy(base, 3), quality=70))
    person = rig.queue("c.jpg", jpeg(with_person(base, 4)))
    rig.adapter.push((200, caption_answer(PERSON)))
    assert rig.pipeline.process(rig.claim(first)) is Outcome.CAPTIONED
    alerts_before = len(rig.store.due_alerts("webhook", "ops"))

    with capture_logs() as logs:
        assert rig.pipeline.process(rig.claim(again)) is Outcome.DEDUPED
    rows = rig.store._read("SELECT state, skip_kind, deduped_of FROM images WHERE id = ?", (again,))
    assert rows == [("skipped", "deduped", first)]
    [line] = [e for e in logs if e["event"] == "image_deduped"]
    assert line["matched"].endswith("a.jpg") and line["distance"] <= 5
    assert len(rig.store.due_alerts("webhook", "ops")) == alerts_before  # no alert of its own
    assert len(rig.adapter.requests) == 1  # no API call for it

    # Someone walked in: that frame is captioned.
    rig.adapter.push((200, caption_answer(PERSON)))
    assert rig.pipeline.process(rig.claim(person)) is Outcome.CAPTIONED


def test_stripping_happens_on_what_is_uploaded_not_on_the_file(
    make_rig: Callable[..., Rig],  # noqa: F811
) -> None:
    rig = make_rig(strip_metadata=True)
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    out = io.BytesIO()
    scene(22, (640, 360)).save(out, "JPEG", exif=exif, comment=b"gate cam")
    data = out.getvalue()
    image_id = rig.queue("a.jpg", data)
    rig.adapter.push((200, caption_answer(PERSON)))
    assert rig.pipeline.process(rig.claim(image_id)) is Outcome.CAPTIONED
    [request] = rig.adapter.requests
    uploaded = parse_request(request.content_type, request.body).file_bytes
    assert uploaded is not None
    assert b"CameraMaker" not in uploaded and b"gate cam" not in uploaded
    assert (rig.camera_dir / "a.jpg").read_bytes() == data  # the file is as it was
    assert rig.row(image_id)["sha256"] == hashlib.sha256(data).hexdigest()


def test_with_strip_metadata_attachments_and_snapshots_carry_no_metadata(
    make_rig: Callable[..., Rig],  # noqa: F811
) -> None:
    # strip_metadata: EXIF, GPS, XMP and comments never leave the machine, by any path: the
    # notify attachment and the MQTT snapshot get the stripped bytes, at full size.
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    out = io.BytesIO()
    scene(23, (640, 360)).save(out, "JPEG", exif=exif, comment=b"gate cam")
    data = out.getvalue()
    snap = Snapshot(data, len(data), 0)
    stripping = make_rig(strip_metadata=True, upload_max_side=320)
    shared = stripping.pipeline.shareable(snap, stripping.current.config)
    assert b"CameraMaker" not in shared and b"gate cam" not in shared
    with Image.open(io.BytesIO(shared)) as a, Image.open(io.BytesIO(data)) as b:
        assert a.size == (640, 360) and a.tobytes() == b.tobytes()
    keeping = make_rig()
    assert keeping.pipeline.shareable(snap, keeping.current.config) == data
