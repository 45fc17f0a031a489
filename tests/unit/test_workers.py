"""The worker pool, stepped without threads through `work_one()` and `idle_wait()` (time
injected, as huey's `Worker.loop(now)` is tested), plus one run of its real threads.

The pool drives a real Pipeline over a real Store in tmp_path, a real CaptionGate, CaptionClient
and RuleSet, and image files in a camera folder; only the network is a scripted transport.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from http_fakes import ScriptedAdapter, session_with
from structlog.testing import capture_logs

from camwatch.caption import CaptionClient
from camwatch.config import Config, parse_config
from camwatch.gate import CaptionGate, GateState
from camwatch.pipeline import Outcome, Pipeline, Runtime
from camwatch.rules import RuleSet
from camwatch.store import NewImage, Store
from camwatch.workers import IDLE_WAIT_S, WorkerPool

KEY = "sk-unit-5d1c9e7a3b20"
T0 = 2_000_000_000.0
INTERNAL_ERROR_RETRY_S = 60.0
ANSWER = {
    "code": 0,
    "msg": "success",
    "data": {"text": "A quiet yard.", "token": {"input": 10, "output": 5, "total": 15}},
}


class Clock:
    """A settable clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ExplodingPipeline(Pipeline):
    """A pipeline with a bug: recording a caption raises (a failure the stages do not expect,
    so it reaches the worker)."""

    def settle(self, *args: Any, **kwargs: Any) -> Outcome:
        raise RuntimeError("settle exploded")


@dataclass
class Rig:
    """A worker pool over a real pipeline, with the handles a test needs."""

    config: Config
    wall: Clock
    stop: threading.Event
    adapter: ScriptedAdapter
    store: Store
    gate: CaptionGate
    pool: WorkerPool
    done: list[tuple[str, Outcome]] = field(default_factory=list)

    def queue(self, name: str, data: bytes, prio: int = 0) -> int:
        """Write `name` in the camera folder and queue it (prio 0: seen live, 1: by a scan);
        return the image's id."""
        path = self.config.cameras[0].path / name
        path.write_bytes(data)
        st = os.stat(path)
        image = NewImage("front", str(path), name, st.st_size, st.st_mtime_ns, self.wall.now, prio)
        assert self.store.add_pending([image]) == 1
        rows = self.store._read(
            "SELECT id FROM images WHERE path = ? AND state = 'pending'", (str(path),)
        )
        return int(rows[0][0])

    def row(self, image_id: int) -> tuple[Any, ...]:
        """Return an image's (state, next_at, attempts, last_error)."""
        rows = self.store._read(
            "SELECT state, next_at, attempts, last_error FROM images WHERE id = ?", (image_id,)
        )
        return rows[0]


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """Return `make(pipeline_class=Pipeline) -> Rig`; everything it opens is closed after."""
    closers: list[Callable[[], None]] = []

    def make(pipeline_class: type[Pipeline] = Pipeline) -> Rig:
        camera_dir = tmp_path / "cams" / "front"
        camera_dir.mkdir(parents=True, exist_ok=True)
        settings = {
            "state_dir": str(tmp_path / "state"),
            "cameras": [{"name": "front", "path": str(camera_dir)}],
            "caption": {
                "base_url": "http://caption.test",
                "api_key": KEY,
                "retry": {"attempts": 1, "backoff_initial": 0.01, "backoff_max": 2.0},
            },
        }
        config = parse_config(settings, environ={})
        wall = Clock(T0)
        stop = threading.Event()
        adapter = ScriptedAdapter(default=(200, ANSWER))
        session = session_with(adapter)
        closers.append(session.close)
        store = Store(config.state_dir, clock=wall)
        closers.append(store.close)
        gate = CaptionGate(0.05, 0.05, config.caption.pause_probe, clock=Clock(5_000.0))
        gate.tune(config.caption)
        client = CaptionClient(config.caption, KEY, stop=stop, session=session)
        closers.append(client.close)
        runtime = Runtime(config, client, RuleSet(config.rules, config.matching, config.timezone))
        done: list[tuple[str, Outcome]] = []
        pipeline = pipeline_class(
            store,
            gate,
            lambda: runtime,
            stop,
            retouch=lambda camera, path, rel: None,
            on_alerts=lambda: None,
            on_done=lambda job, outcome: done.append((job.relpath, outcome)),
            clock=wall,
        )
        pool = WorkerPool(store, pipeline, stop, clock=wall)
        closers.append(stop.set)  # frees any worker a failed test left behind
        return Rig(config, wall, stop, adapter, store, gate, pool, done)

    yield make
    for close in reversed(closers):
        close()


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    """Return a rig with the default settings and the real rules."""
    return make_rig()


def test_work_one_returns_none_when_nothing_is_due(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    assert rig.pool.work_one() is None

    image_id = rig.queue("a.jpg", make_image("JPEG", seed=1))
    job = rig.store.claim()
    assert job is not None
    rig.store.release(job.id, rig.wall.now + 10.0, "busy", charge=False)  # due in 10 s

    assert rig.pool.work_one() is None
    assert rig.row(image_id)[0] == "pending"  # not claimed, not touched
    assert rig.pool.busy == 0
    assert rig.adapter.requests == []


def test_live_images_first_then_scanned_each_oldest_first(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    rig.queue("scan-1.jpg", make_image("JPEG", seed=1), prio=1)
    rig.queue("scan-2.jpg", make_image("JPEG", seed=2), prio=1)
    rig.queue("live-1.jpg", make_image("JPEG", seed=3), prio=0)
    rig.queue("live-2.jpg", make_image("JPEG", seed=4), prio=0)

    outcomes = [rig.pool.work_one() for _ in range(5)]

    assert outcomes == [Outcome.CAPTIONED] * 4 + [None]
    order = ["live-1.jpg", "live-2.jpg", "scan-1.jpg", "scan-2.jpg"]
    assert rig.done == [(name, Outcome.CAPTIONED) for name in order]
    assert rig.store.counts()["done"] == 4
    assert len(rig.adapter.requests) == 4
    assert rig.pool.busy == 0


def test_a_job_that_raises_goes_back_to_the_queue_for_later(
    make_rig: Callable[..., Rig], make_image: Callable[..., bytes]
) -> None:
    rig = make_rig(pipeline_class=ExplodingPipeline)
    image_id = rig.queue("a.jpg", make_image("JPEG", seed=1))
    rig.pool.last_progress = 0.0
    started = time.monotonic()

    with capture_logs() as logs:
        outcome = rig.pool.work_one()  # must not raise

    assert outcome is Outcome.REQUEUED
    assert rig.row(image_id) == (
        "pending",
        rig.wall.now + INTERNAL_ERROR_RETRY_S,
        1,
        "internal error (RuntimeError)",
    )
    [failed] = [e for e in logs if e["event"] == "job_failed"]
    assert (failed["log_level"], failed["camera"]) == ("error", "front")
    assert failed["path"].endswith("a.jpg")
    assert failed.get("exc_info") is True
    assert rig.pool.busy == 0
    assert rig.pool.last_progress >= started  # a job that raised is progress too
    assert rig.gate.state is GateState.CLOSED  # the API answered; the bug is ours

    # Not before its time; then tried again.
    assert rig.pool.work_one() is None
    rig.wall.advance(INTERNAL_ERROR_RETRY_S)
    assert rig.pool.work_one() is Outcome.REQUEUED
    assert rig.row(image_id)[2] == 2
    # A third time: given up, with the reason, instead of being paid for at every round.
    rig.wall.advance(INTERNAL_ERROR_RETRY_S)
    assert rig.pool.work_one() is Outcome.FAILED
    assert rig.row(image_id)[0] == "failed"
    assert rig.pool.work_one() is None


def test_idle_wait_follows_the_next_due_image_capped(
    rig: Rig, make_image: Callable[..., bytes]
) -> None:
    assert rig.pool.idle_wait() == IDLE_WAIT_S  # empty queue

    image_id = rig.queue("a.jpg", make_image("JPEG", seed=1))
    assert rig.pool.idle_wait() == pytest.approx(0.01)  # due now: look again at once

    job = rig.store.claim()
    assert job is not None and job.id == image_id
    rig.store.release(image_id, rig.wall.now + 2.0, "busy", charge=False)
    assert rig.pool.idle_wait() == pytest.approx(2.0)
    rig.wall.advance(1.5)
    assert rig.pool.idle_wait() == pytest.approx(0.5)

    job = rig.store.claim()
    assert job is None  # not due yet
    rig.wall.advance(0.5)
    job = rig.store.claim()
    assert job is not None
    rig.store.release(image_id, rig.wall.now + 100 * IDLE_WAIT_S, "busy", charge=False)
    assert rig.pool.idle_wait() == IDLE_WAIT_S


def test_last_progress_advances_with_each_job(rig: Rig, make_image: Callable[..., bytes]) -> None:
    rig.pool.last_progress = 0.0
    assert rig.pool.work_one() is None
    assert rig.pool.last_progress == 0.0  # no job, no progress

    for n in range(2):
        rig.queue(f"img-{n}.jpg", make_image("JPEG", seed=n))
        started = time.monotonic()
        assert rig.pool.work_one() is Outcome.CAPTIONED
        assert rig.pool.last_progress >= started


@pytest.mark.usefixtures("no_thread_leaks")
def test_threads_caption_every_image_and_stop(
    rig: Rig, make_image: Callable[..., bytes], poll: Callable[..., None]
) -> None:
    rig.pool.resize(1)
    ids = [rig.queue(f"img-{n}.jpg", make_image("JPEG", seed=n)) for n in range(5)]
    rig.pool.wake()

    poll(lambda: rig.store.counts().get("done", 0) == 5, timeout=5.0, message="5 captions")

    assert [rig.row(i)[0] for i in ids] == ["done"] * 5
    assert len(rig.adapter.requests) == 5
    rig.stop.set()
    rig.pool.wake()  # as the service does on shutdown
    assert rig.pool.join(5.0) is True
    assert rig.pool.busy == 0
