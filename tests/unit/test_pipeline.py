"""One job through `Pipeline.process`, in-process, for every outcome.

Everything is real (the Store in tmp_path, the CaptionGate, the CaptionClient, the RuleSet, the
image files in a camera folder) except the network, which is a scripted transport
(http_fakes), and the clocks: the store's and the pipeline's wall clock and the gate's
monotonic clock are settable, so that "due in 2 s" and "after complete_timeout" are stepped,
not slept through. Each test asserts the outcome returned AND what the store holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from http_fakes import ScriptedAdapter, session_with
from structlog.testing import capture_logs

from camwatch.caption import CaptionClient
from camwatch.config import Config, parse_config
from camwatch.gate import CaptionGate, GateState
from camwatch.pipeline import MAX_ROUNDS, Outcome, Pipeline, Runtime
from camwatch.rules import MAX_CAPTION_CHARS, RuleSet
from camwatch.store import ImageJob, NewImage, Store
from camwatch.testing.multipart import parse_request

KEY = "sk-unit-5d1c9e7a3b20"
BASE_URL = "http://caption.test"
ENDPOINT = "/v1/understand/uploadImg"
T0 = 2_000_000_000.0  # the wall clock's start (2033: later than any real file's mtime)
PERIOD = 2.0  # retry.backoff_max: how long the first outage opens the gate
PAUSE_PROBE = 600.0
GUARD_S = 10.0  # a test that leaves the gate shut must fail (SAVED), not hang in acquire()
PERSON = "A person stands at the front door."


class Clock:
    """A settable clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def caption_answer(text: str, tokens: tuple[int, int, int] = (120, 15, 135)) -> dict[str, Any]:
    """Return the API's success answer (its wire format)."""
    tin, tout, total = tokens
    return {
        "code": 0,
        "msg": "success",
        "data": {"text": text, "token": {"input": tin, "output": tout, "total": total}},
    }


def error_answer(status: int, msg: str) -> dict[str, Any]:
    """Return the API's error envelope."""
    return {"code": status, "msg": msg, "data": None}


def settings(tmp_path: Path, **caption: Any) -> dict[str, Any]:
    """Return a configuration: one camera `front`, a rule `person` alerting webhook `ops`, one
    try per caption call (a 503 is an outage at once), the gate open PERIOD after it."""
    camera_dir = tmp_path / "cams" / "front"
    camera_dir.mkdir(parents=True, exist_ok=True)
    return {
        "state_dir": str(tmp_path / "state"),
        "cameras": [{"name": "front", "path": str(camera_dir)}],
        "caption": {
            "base_url": BASE_URL,
            "api_key": KEY,
            "concurrency": 1,
            "pause_probe": PAUSE_PROBE,
            "retry": {"attempts": 1, "backoff_initial": 0.01, "backoff_max": PERIOD},
            **caption,
        },
        "rules": [{"name": "person", "any": ["person"], "webhooks": ["ops"]}],
        "webhooks": [{"name": "ops", "url": "http://hooks.test/alert"}],
    }


@dataclass
class Rig:
    """A pipeline over real parts, with the handles a test needs."""

    config: Config
    wall: Clock
    mono: Clock
    stop: threading.Event
    adapter: ScriptedAdapter
    store: Store
    gate: CaptionGate
    pipeline: Pipeline
    current: Runtime  # what the pipeline's `runtime()` returns: a test may swap it
    retouched: list[tuple[str, str, str]] = field(default_factory=list)
    alert_wakes: list[None] = field(default_factory=list)
    done: list[tuple[int, Outcome]] = field(default_factory=list)

    @property
    def camera_dir(self) -> Path:
        return self.config.cameras[0].path

    def write(self, name: str, data: bytes) -> str:
        """Write a file in the camera folder; return its path."""
        path = self.camera_dir / name
        path.write_bytes(data)
        return str(path)

    def queue(self, name: str, data: bytes | None = None, camera: str = "front") -> int:
        """Queue the camera folder's file `name` (written first if `data` is given), as the
        debouncer would; return the image's id."""
        path = self.write(name, data) if data is not None else str(self.camera_dir / name)
        st = os.lstat(path)
        image = NewImage(camera, path, name, st.st_size, st.st_mtime_ns, self.wall.now)
        assert self.store.add_pending([image]) == 1
        rows = self.store._read(
            "SELECT id FROM images WHERE camera = ? AND path = ? AND state = 'pending'",
            (camera, path),
        )
        return int(rows[0][0])

    def claim(self, image_id: int | None = None) -> ImageJob:
        """Claim the next due image (checking it is `image_id`)."""
        job = self.store.claim()
        assert job is not None, "nothing was due"
        if image_id is not None:
            assert job.id == image_id
        return job

    def row(self, image_id: int) -> dict[str, Any]:
        """Return an image's record."""
        columns = (
            "state",
            "next_at",
            "attempts",
            "last_error",
            "caption",
            "tokens_input",
            "tokens_output",
            "tokens_total",
            "sha256",
            "size",
            "mtime_ns",
            "captioned_at",
        )
        rows = self.store._read(
            f"SELECT {', '.join(columns)} FROM images WHERE id = ?", (image_id,)
        )
        assert rows, f"no image {image_id}"
        return dict(zip(columns, rows[0], strict=True))


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """Return `make(**caption settings) -> Rig`; everything it opens is closed afterwards."""
    closers: list[Callable[[], None]] = []

    def make(**caption: Any) -> Rig:
        config = parse_config(settings(tmp_path, **caption), environ={})
        wall, mono = Clock(T0), Clock(5_000.0)
        stop = threading.Event()
        guard = threading.Timer(GUARD_S, stop.set)
        guard.daemon = True
        guard.start()
        closers.append(guard.join)
        closers.append(guard.cancel)
        adapter = ScriptedAdapter()
        session = session_with(adapter)
        closers.append(session.close)
        store = Store(config.state_dir, clock=wall)
        closers.append(store.close)
        # CaptionGate.for_config takes no clock: the same gate, built with the clock injected.
        gate = CaptionGate(0.05, 0.05, config.caption.pause_probe, clock=mono)
        gate.tune(config.caption)
        client = CaptionClient(config.caption, KEY, stop=stop, session=session)
        closers.append(client.close)
        runtime = Runtime(config, client, RuleSet(config.rules, config.matching, config.timezone))
        holder: list[Rig] = []
        pipeline = Pipeline(
            store,
            gate,
            lambda: holder[0].current,
            stop,
            retouch=lambda camera, path, rel: holder[0].retouched.append((camera, path, rel)),
            on_alerts=lambda: holder[0].alert_wakes.append(None),
            on_done=lambda job, outcome: holder[0].done.append((job.id, outcome)),
            clock=wall,
        )
        rig = Rig(config, wall, mono, stop, adapter, store, gate, pipeline, runtime)
        holder.append(rig)
        return rig

    yield make
    for close in reversed(closers):
        close()


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    """Return a rig with the default settings."""
    return make_rig()


# -- CAPTIONED ------------------------------------------------------------------------------------


def test_captioned_records_caption_tokens_and_queues_the_alert(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    data = make_image("JPEG", seed=1)
    image_id = rig.queue("snap-1.jpg", data)
    rig.adapter.push((200, caption_answer(PERSON)))
    job = rig.claim(image_id)
    rig.wall.advance(3.0)

    with capture_logs() as logs:
        outcome = rig.pipeline.process(job)

    assert outcome is Outcome.CAPTIONED
    assert rig.done == [(image_id, Outcome.CAPTIONED)]
    sha256 = hashlib.sha256(data).hexdigest()
    assert rig.row(image_id) | {"mtime_ns": None} == {
        "state": "done",
        "next_at": 0.0,
        "attempts": 0,
        "last_error": None,
        "caption": PERSON,
        "tokens_input": 120,
        "tokens_output": 15,
        "tokens_total": 135,
        "sha256": sha256,
        "size": len(data),
        "mtime_ns": None,
        "captioned_at": rig.wall.now,
    }
    assert rig.row(image_id)["mtime_ns"] == os.stat(job.path).st_mtime_ns
    assert rig.gate.state is GateState.CLOSED
    assert rig.pipeline.last_caption == f"front: {PERSON}"

    # The alert is in the outbox, for the rule's webhook, with the body built once.
    [alert] = rig.store.due_alerts("webhook", "ops")
    assert (alert.rule, alert.camera, alert.attempts) == ("person", "front", 0)
    body = json.loads(alert.body)
    assert body["id"] == alert.event_id
    assert (body["rule"], body["camera"], body["image"]) == ("person", "front", job.path)
    assert (body["caption"], body["sha256"], body["matched"]) == (PERSON, sha256, ["person"])
    assert rig.alert_wakes == [None]  # the dispatcher is told

    decided = [e for e in logs if e["event"] == "alert_decided"]
    assert len(decided) == 1
    assert decided[0] | {"event_id": None} == {
        "event": "alert_decided",
        "log_level": "info",
        "camera": "front",
        "path": job.path,
        "outcome": "alert",
        "rule": "person",
        "event_id": None,
        "matched": ["person"],
        "targets": ["ops"],
    }
    assert decided[0]["event_id"] == alert.event_id
    [captioned] = [e for e in logs if e["event"] == "image_captioned"]
    assert (captioned["outcome"], captioned["tokens"], captioned["rules"]) == (
        "captioned",
        135,
        ["person"],
    )

    # What went over the wire: one multipart upload, the key in its header only.
    [sent] = rig.adapter.requests
    assert (sent.method, sent.url) == ("POST", BASE_URL + ENDPOINT)
    assert sent.headers["Authorization"] == KEY
    parsed = parse_request(sent.content_type, sent.body)
    assert parsed.error is None
    assert parsed.parts == ["req", "file"]
    assert (parsed.file_name, parsed.file_content_type) == ("snap-1.jpg", "image/jpeg")
    assert parsed.file_bytes == data
    assert parsed.json == {
        "user_prompt": rig.config.caption.user_prompt,
        "system_prompt": rig.config.caption.system_prompt,
        "thinking": False,
    }
    assert KEY.encode() not in sent.body


def test_captioned_without_a_matching_rule_queues_no_alert(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    image_id = rig.queue("empty.jpg", make_image("JPEG", seed=2))
    rig.adapter.push((200, caption_answer("An empty driveway.", (10, 5, 15))))

    with capture_logs() as logs:
        outcome = rig.pipeline.process(rig.claim(image_id))

    assert outcome is Outcome.CAPTIONED
    row = rig.row(image_id)
    assert (row["state"], row["caption"], row["tokens_total"]) == (
        "done",
        "An empty driveway.",
        15,
    )
    assert rig.store.due_alerts("webhook", "ops") == []
    assert rig.store.counts()["alerts_pending"] == 0
    assert rig.alert_wakes == []
    assert not [e for e in logs if e["event"] == "alert_decided"]


# -- DUPLICATE ------------------------------------------------------------------------------------


def test_duplicate_same_bytes_captioned_before_are_not_sent_again(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    data = make_image("JPEG", seed=3)
    first = rig.queue("dup.jpg", data)
    rig.adapter.push((200, caption_answer("A cat on the steps.")))
    assert rig.pipeline.process(rig.claim(first)) is Outcome.CAPTIONED

    # The camera writes the same bytes again: a new mtime queues it again, the hash stops it.
    path = rig.write("dup.jpg", data)
    later = os.stat(path).st_mtime_ns + 5_000_000_000
    os.utime(path, ns=(later, later))
    second = rig.queue("dup.jpg")
    assert second != first

    with capture_logs() as logs:
        outcome = rig.pipeline.process(rig.claim(second))

    assert outcome is Outcome.DUPLICATE
    row = rig.row(second)
    assert (row["state"], row["last_error"]) == ("skipped", "same bytes already captioned")
    assert (row["sha256"], row["size"]) == (hashlib.sha256(data).hexdigest(), len(data))
    assert rig.row(first)["state"] == "done"
    assert len(rig.adapter.requests) == 1  # no second API call, no second bill
    [skipped] = [e for e in logs if e["event"] == "image_skipped"]
    assert (skipped["log_level"], skipped["outcome"]) == ("info", "duplicate")


# -- SKIPPED --------------------------------------------------------------------------------------


def test_skipped_when_the_file_vanished(rig: Rig, make_image: Callable[..., bytes]) -> None:
    image_id = rig.queue("gone.jpg", make_image("JPEG", seed=4))
    os.unlink(rig.camera_dir / "gone.jpg")

    with capture_logs() as logs:
        outcome = rig.pipeline.process(rig.claim(image_id))

    assert outcome is Outcome.SKIPPED
    row = rig.row(image_id)
    assert (row["state"], row["last_error"]) == ("skipped", "file vanished before it was read")
    assert rig.adapter.requests == []
    [skipped] = [e for e in logs if e["event"] == "image_skipped"]
    assert (skipped["log_level"], skipped["reason"]) == ("info", "file vanished")


def test_skipped_when_larger_than_max_image_bytes(
    make_rig: Callable[..., Rig], make_image: Callable[..., bytes]
) -> None:
    rig = make_rig(max_image_bytes=100)
    data = make_image("JPEG", seed=5)
    assert len(data) > 100
    image_id = rig.queue("big.jpg", data)

    with capture_logs() as logs:
        outcome = rig.pipeline.process(rig.claim(image_id))

    assert outcome is Outcome.SKIPPED
    row = rig.row(image_id)
    assert row["state"] == "skipped"
    assert row["last_error"] == f"{len(data)} bytes > max_image_bytes 100"
    assert row["size"] == len(data)
    assert rig.adapter.requests == []
    [skipped] = [e for e in logs if e["event"] == "image_skipped"]
    assert skipped["log_level"] == "warning"


def test_skipped_when_the_path_is_a_symbolic_link(
    rig: Rig, tmp_path: Path, make_image: Callable[..., bytes]
) -> None:
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(make_image("JPEG", seed=6))
    (rig.camera_dir / "link.jpg").symlink_to(outside)
    image_id = rig.queue("link.jpg")

    outcome = rig.pipeline.process(rig.claim(image_id))

    assert outcome is Outcome.SKIPPED
    row = rig.row(image_id)
    assert (row["state"], row["last_error"]) == ("skipped", "is a symbolic link")
    assert row["sha256"] is None  # the target was never read
    assert rig.adapter.requests == []


def test_skipped_when_the_camera_is_not_configured(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    image_id = rig.queue("attic.jpg", make_image("JPEG", seed=7), camera="attic")

    outcome = rig.pipeline.process(rig.claim(image_id))

    assert outcome is Outcome.SKIPPED
    row = rig.row(image_id)
    assert (row["state"], row["last_error"]) == ("skipped", "camera not configured")
    assert rig.adapter.requests == []


def _truncated(make_image: Callable[..., bytes]) -> bytes:
    data = make_image("JPEG", seed=8)
    return data[: len(data) // 2]


def test_skipped_when_never_complete_after_complete_timeout(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    timeout = rig.config.complete_timeout
    image_id = rig.queue("cut.jpg", _truncated(make_image))
    changed = rig.wall.now - timeout  # last changed exactly complete_timeout ago
    os.utime(rig.camera_dir / "cut.jpg", ns=(int(changed * 1e9), int(changed * 1e9)))

    with capture_logs() as logs:
        outcome = rig.pipeline.process(rig.claim(image_id))

    assert outcome is Outcome.SKIPPED
    row = rig.row(image_id)
    assert row["state"] == "skipped"
    assert row["last_error"] == f"not a complete JPEG/PNG {timeout:g}s after its last change"
    assert rig.retouched == []
    assert rig.adapter.requests == []
    assert [e["log_level"] for e in logs if e["event"] == "image_skipped"] == ["warning"]


# -- WAITING --------------------------------------------------------------------------------------


def test_waiting_when_still_being_written_goes_back_to_the_debouncer(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    image_id = rig.queue("cut.jpg", _truncated(make_image))
    changed = rig.wall.now - rig.config.complete_timeout + 1.0  # one second short of giving up
    os.utime(rig.camera_dir / "cut.jpg", ns=(int(changed * 1e9), int(changed * 1e9)))
    job = rig.claim(image_id)

    outcome = rig.pipeline.process(job)

    assert outcome is Outcome.WAITING
    assert rig.retouched == [("front", job.path, "cut.jpg")]
    row = rig.row(image_id)
    assert (row["state"], row["last_error"]) == ("skipped", "incomplete; waiting for the rest")
    assert rig.adapter.requests == []


# -- REQUEUED -------------------------------------------------------------------------------------


def test_requeued_on_503_opens_the_gate_and_is_due_after_its_period(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    image_id = rig.queue("busy.jpg", make_image("JPEG", seed=9))
    rig.adapter.push((503, error_answer(503, "overloaded")))
    job = rig.claim(image_id)

    with capture_logs() as logs:
        outcome = rig.pipeline.process(job)

    assert outcome is Outcome.REQUEUED
    reason = "HTTP 503 from caption API: overloaded"
    row = rig.row(image_id)
    assert (row["state"], row["attempts"], row["last_error"]) == ("pending", 1, reason)
    assert row["next_at"] == rig.wall.now + PERIOD
    assert (rig.gate.state, rig.gate.reason) == (GateState.OPEN, reason)
    assert len(rig.adapter.requests) == 1  # retry.attempts: 1
    [requeued] = [e for e in logs if e["event"] == "image_requeued"]
    assert (requeued["log_level"], requeued["wait_s"]) == ("warning", PERIOD)

    # Not due before its time, due after it.
    assert rig.store.claim() is None
    rig.wall.advance(PERIOD)
    assert rig.claim().id == image_id


def test_requeued_honours_retry_after(rig: Rig, make_image: Callable[..., bytes]) -> None:
    image_id = rig.queue("later.jpg", make_image("JPEG", seed=10))
    rig.adapter.push((429, error_answer(429, "slow down"), {"Retry-After": "30"}))

    outcome = rig.pipeline.process(rig.claim(image_id))

    assert outcome is Outcome.REQUEUED
    row = rig.row(image_id)
    assert (row["state"], row["next_at"]) == ("pending", rig.wall.now + 30.0)
    assert rig.gate.state is GateState.OPEN


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (
            requests.ConnectionError("[Errno 111] Connection refused"),
            "cannot reach caption API (connection refused)",
        ),
        (requests.Timeout("read timed out"), "caption API timed out after 30s"),
    ],
    ids=["refused", "timeout"],
)
def test_requeued_when_the_request_fails(
    rig: Rig, make_image: Callable[..., bytes], failure: Exception, reason: str
) -> None:
    image_id = rig.queue("down.jpg", make_image("JPEG", seed=11))
    rig.adapter.push(failure)

    outcome = rig.pipeline.process(rig.claim(image_id))

    assert outcome is Outcome.REQUEUED
    row = rig.row(image_id)
    assert (row["state"], row["attempts"], row["last_error"]) == ("pending", 1, reason)
    assert row["next_at"] == rig.wall.now + PERIOD
    assert rig.gate.state is GateState.OPEN


def test_a_lone_image_in_an_outage_is_never_given_up(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    """Only the first failure of a round is charged: the later ones are the half-open gate's
    probes, which say the API is down, not that this image is bad."""
    image_id = rig.queue("lone.jpg", make_image("JPEG", seed=12))
    rig.adapter.default = (503, error_answer(503, "down"))
    rounds = MAX_ROUNDS + 2
    for _ in range(rounds):
        assert rig.pipeline.process(rig.claim(image_id)) is Outcome.REQUEUED
        wait = rig.row(image_id)["next_at"] - rig.wall.now
        assert wait > 0
        rig.wall.advance(wait)
        rig.mono.advance(wait)

    row = rig.row(image_id)
    assert (row["state"], row["attempts"]) == ("pending", 1)
    assert len(rig.adapter.requests) == rounds
    assert rig.gate.state is GateState.OPEN


# -- FAILED ---------------------------------------------------------------------------------------


def test_failed_on_400_and_the_gate_stays_closed(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    data = make_image("JPEG", seed=13)
    image_id = rig.queue("bad.jpg", data)
    rig.adapter.push((400, error_answer(400, "cannot decode image")))

    with capture_logs() as logs:
        outcome = rig.pipeline.process(rig.claim(image_id))

    assert outcome is Outcome.FAILED
    row = rig.row(image_id)
    assert row["state"] == "failed"
    assert row["last_error"] == "HTTP 400 from caption API: cannot decode image"
    assert row["sha256"] == hashlib.sha256(data).hexdigest()
    assert rig.gate.state is GateState.CLOSED
    assert len(rig.adapter.requests) == 1  # a permanent error is not retried
    assert [e["log_level"] for e in logs if e["event"] == "image_failed"] == ["warning"]


def test_failed_after_max_rounds_while_other_images_caption(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    """An image that fails a whole round MAX_ROUNDS times while others caption (so the gate
    closes between its rounds) is given up."""
    stubborn = rig.queue("stubborn.jpg", make_image("JPEG", seed=14))
    others = [
        rig.queue(f"ok-{n}.jpg", make_image("JPEG", seed=20 + n)) for n in range(MAX_ROUNDS - 1)
    ]
    down = (503, error_answer(503, "overloaded"))
    reason = "HTTP 503 from caption API: overloaded"

    outcomes: list[Outcome] = []
    with capture_logs() as logs:
        for n in range(MAX_ROUNDS):
            # The stubborn image's round: the gate is closed, so this failure is charged.
            assert rig.gate.state is GateState.CLOSED
            rig.adapter.push(down)
            outcomes.append(rig.pipeline.process(rig.claim(stubborn)))
            if n == MAX_ROUNDS - 1:
                break  # given up: no round follows
            assert rig.row(stubborn)["attempts"] == n + 1
            # Another image probes the half-open gate once its period is over, and succeeds.
            rig.mono.advance(PERIOD)
            rig.adapter.push((200, caption_answer(f"Quiet {n}.")))
            assert rig.pipeline.process(rig.claim(others[n])) is Outcome.CAPTIONED
            assert rig.gate.state is GateState.CLOSED
            rig.wall.advance(PERIOD)  # the stubborn image is due again

    row = rig.row(stubborn)
    assert row["state"] == "failed"
    assert row["attempts"] == MAX_ROUNDS
    assert row["last_error"] == f"gave up after {MAX_ROUNDS} rounds of retries: {reason}"
    assert [rig.row(i)["state"] for i in others] == ["done"] * len(others)
    [failed] = [e for e in logs if e["event"] == "image_failed"]
    assert failed["reason"] == row["last_error"]
    assert len([e for e in logs if e["event"] == "image_requeued"]) == MAX_ROUNDS - 1
    # What process() returns (and tells on_done) is what the store holds: the image failed.
    assert outcomes == [Outcome.REQUEUED] * (MAX_ROUNDS - 1) + [Outcome.FAILED]
    assert rig.done[-1] == (stubborn, Outcome.FAILED)


# -- PAUSED ---------------------------------------------------------------------------------------


def test_paused_on_401_pauses_the_gate_and_keeps_the_image(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    image_id = rig.queue("key.jpg", make_image("JPEG", seed=15))
    rig.adapter.push((401, error_answer(401, "invalid api key")))

    with capture_logs() as logs:
        outcome = rig.pipeline.process(rig.claim(image_id))

    assert outcome is Outcome.PAUSED
    reason = "HTTP 401 from caption API (is the API key right?): invalid api key"
    assert (rig.gate.state, rig.gate.reason) == (GateState.PAUSED, reason)
    row = rig.row(image_id)
    assert (row["state"], row["attempts"], row["last_error"]) == ("pending", 0, reason)
    assert len(rig.adapter.requests) == 1  # an auth error is not retried
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["captioning_paused"]
    [requeued] = [e for e in logs if e["event"] == "image_requeued"]
    assert (requeued["outcome"], requeued["wait_s"]) == ("paused", PAUSE_PROBE)
    assert KEY not in json.dumps(logs, default=str)


# -- RELOADED -------------------------------------------------------------------------------------


def test_reloaded_when_the_configuration_changed_during_a_401(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    image_id = rig.queue("reload.jpg", make_image("JPEG", seed=16))
    old = rig.current
    new = Runtime(old.config, old.client, RuleSet(old.config.rules))

    def reload_then_refuse(request: requests.PreparedRequest) -> tuple[int, Any]:
        rig.current = new  # a SIGHUP arrives while the request is in flight
        return 401, error_answer(401, "invalid api key")

    rig.adapter.push(reload_then_refuse)

    outcome = rig.pipeline.process(rig.claim(image_id))

    assert outcome is Outcome.RELOADED
    assert rig.gate.state is GateState.CLOSED  # the old key's 401 does not pause the new one
    row = rig.row(image_id)
    assert (row["state"], row["attempts"], row["next_at"]) == ("pending", 0, 0.0)
    assert rig.claim().id == image_id  # due again at once


# -- SAVED ----------------------------------------------------------------------------------------


def test_saved_when_stopping_before_the_gate(rig: Rig, make_image: Callable[..., bytes]) -> None:
    image_id = rig.queue("late.jpg", make_image("JPEG", seed=17))
    job = rig.claim(image_id)
    rig.stop.set()

    outcome = rig.pipeline.process(job)

    assert outcome is Outcome.SAVED
    row = rig.row(image_id)
    assert (row["state"], row["attempts"], row["next_at"], row["last_error"]) == (
        "pending",
        0,
        0.0,
        None,
    )
    assert rig.adapter.requests == []
    assert rig.gate.state is GateState.CLOSED


# -- recovering from an outage -----------------------------------------------------------------


def test_a_successful_probe_makes_every_waiting_image_due_now(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    first = rig.queue("first.jpg", make_image("JPEG", seed=31))
    waiting = rig.queue("waiting.jpg", make_image("JPEG", seed=32))
    rig.adapter.push((503, error_answer(503, "down")), (200, caption_answer("a quiet porch")))
    assert rig.pipeline.process(rig.claim(first)) is Outcome.REQUEUED
    # Requeued during the outage with a long wait of its own (its backoff had grown).
    job = rig.claim(waiting)
    rig.store.release(job.id, rig.wall.now + 480.0, "HTTP 503", charge=True)
    rig.wall.advance(PERIOD)
    rig.mono.advance(PERIOD)

    assert rig.pipeline.process(rig.claim(first)) is Outcome.CAPTIONED  # the probe succeeds
    assert rig.gate.state is GateState.CLOSED
    assert rig.store.claim().id == waiting  # due now, not 480 s from now


@pytest.mark.parametrize("error", [RecursionError("deep JSON"), OSError("bad CA bundle")])
def test_an_unexpected_error_in_a_probe_releases_it(
    rig: Rig, make_image: Callable[..., bytes], error: BaseException
) -> None:
    image_id = rig.queue("odd.jpg", make_image("JPEG", seed=33))
    rig.adapter.push((503, error_answer(503, "down")), error)
    assert rig.pipeline.process(rig.claim(image_id)) is Outcome.REQUEUED
    rig.wall.advance(PERIOD)
    rig.mono.advance(PERIOD)
    assert rig.pipeline.process(rig.claim(image_id)) is Outcome.REQUEUED  # the probe: it raised
    assert rig.gate.state is GateState.OPEN
    rig.mono.advance(60.0)
    assert rig.gate.acquire(rig.stop) is False  # the next probe is allowed: nothing wedged
    rig.gate.released(True)


def test_a_caption_the_rules_choke_on_fails_the_image_once(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    class Choking(RuleSet):
        def matching(self, text: str, camera: str | None = None, **_: Any) -> list[Any]:
            raise RecursionError("a caption built to hurt")

    config = rig.current.config
    rig.current = Runtime(config, rig.current.client, Choking(config.rules, config.matching))
    image_id = rig.queue("hostile.jpg", make_image("JPEG", seed=34))
    rig.adapter.push((200, caption_answer("((((((((((")))

    assert rig.pipeline.process(rig.claim(image_id)) is Outcome.FAILED
    row = rig.row(image_id)
    assert (row["state"], row["last_error"]) == ("failed", "rule matching failed (RecursionError)")
    assert rig.gate.state is GateState.CLOSED


def test_a_huge_caption_is_cut_before_it_is_matched_stored_or_sent(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    image_id = rig.queue("wall.jpg", make_image("JPEG", seed=35))
    huge = "A person lying on the ground. " + "graffiti " * 200_000  # about 1.8 MB
    rig.adapter.push((200, caption_answer(huge)))

    assert rig.pipeline.process(rig.claim(image_id)) is Outcome.CAPTIONED
    stored = rig.row(image_id)["caption"]
    assert len(stored) == MAX_CAPTION_CHARS + 1 and stored.endswith("…")
