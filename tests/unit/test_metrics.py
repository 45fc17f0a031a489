"""The metrics: counters started at 0 for what the configuration names, each caption request
counted once (with the real client against the stand-in API too), gauges read from a real
state database and gate at scrape time, `/healthz`'s judgement, and the exposition formats."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from camwatch.caption import CaptionClient
from camwatch.config import CaptionConfig, Config, parse_config
from camwatch.errors import AuthError, CaptionAborted, PermanentCaptionError
from camwatch.gate import CaptionGate
from camwatch.health import health
from camwatch.metrics import Metrics
from camwatch.prompts import Prompts
from camwatch.state_view import CameraLook, Look, Parts, ServiceView
from camwatch.store import AlertCandidate, NewImage, Store
from camwatch.store.report import Backlog
from camwatch.testing import StandinCaptionAPI, jpeg_with_caption

KEY = "sk-metrics-test-5d0e7a"


def config(tmp_path: Path, cameras: tuple[str, ...] = ("front", "back")) -> Config:
    car = [{"name": "car", "any": ["car"], "cameras": ["back"]}] if "back" in cameras else []
    return parse_config(
        {
            "cameras": [{"name": n, "path": str(tmp_path / n)} for n in cameras],
            "state_dir": str(tmp_path / "state"),
            "rules": [
                {"name": "person", "any": ["person"]},
                *car,
            ],
            "webhooks": [{"name": "main", "url": "http://127.0.0.1:9/"}],
            "notify": [{"name": "phones", "urls": ["json://127.0.0.1:9/"]}],
        }
    )


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_known_series_start_at_zero_and_a_reload_adds_new_ones(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.prime(config(tmp_path))
    for camera in ("front", "back"):
        for outcome in ("captioned", "skipped", "failed", "deduped"):
            assert value(metrics, "camwatch_images_total", camera=camera, outcome=outcome) == 0
        for direction in ("input", "output"):
            assert value(metrics, "camwatch_tokens_total", camera=camera, direction=direction) == 0
    assert value(metrics, "camwatch_alerts_total", rule="person", camera="front") == 0
    assert value(metrics, "camwatch_alerts_total", rule="car", camera="back") == 0
    assert value(metrics, "camwatch_alerts_total", rule="car", camera="front") is None
    for target in ("main", "phones"):
        for result in ("delivered", "failed", "dropped"):
            assert value(metrics, "camwatch_deliveries_total", target=target, result=result) == 0
    for result in ("ok", "retry", "failed"):
        assert value(metrics, "camwatch_caption_requests_total", result=result) == 0
    assert value(metrics, "camwatch_caption_duration_seconds_count") == 0
    assert value(metrics, "camwatch_build_info", version=_version(), python=_python()) == 1
    assert time.time() - 60 < value(metrics, "camwatch_start_time_seconds") <= time.time()  # type: ignore[operator]

    metrics.image_finished("front", "captioned")
    metrics.prime(config(tmp_path, ("front", "side")))
    assert value(metrics, "camwatch_images_total", camera="front", outcome="captioned") == 1
    assert value(metrics, "camwatch_images_total", camera="side", outcome="deduped") == 0
    assert value(metrics, "camwatch_images_total", camera="back", outcome="captioned") == 0


def _version() -> str:
    import camwatch

    return camwatch.__version__


def _python() -> str:
    import platform

    return platform.python_version()


def test_outcomes_are_counted_by_their_metric_names() -> None:
    metrics = Metrics()
    for outcome in ("captioned", "duplicate", "skipped", "failed", "requeued", "paused", "saved"):
        metrics.image_finished("front", outcome)
    for outcome in ("captioned", "deduped", "skipped", "failed"):
        assert value(metrics, "camwatch_images_total", camera="front", outcome=outcome) == 1
    assert value(metrics, "camwatch_images_total", camera="front", outcome="requeued") is None

    metrics.captioned("front", 300, 12, ["person", "person", "car"])
    metrics.captioned("front", 200, 8, [])
    assert value(metrics, "camwatch_tokens_total", camera="front", direction="input") == 500
    assert value(metrics, "camwatch_tokens_total", camera="front", direction="output") == 20
    assert value(metrics, "camwatch_alerts_total", rule="person", camera="front") == 2
    assert value(metrics, "camwatch_alerts_total", rule="car", camera="front") == 1

    metrics.delivery("main", "failed")
    metrics.delivery("main", "delivered")
    assert value(metrics, "camwatch_deliveries_total", target="main", result="failed") == 1
    assert value(metrics, "camwatch_deliveries_total", target="main", result="delivered") == 1


class _Retryable(Exception):
    """Stands for the client's private signal to try again (anything not a CaptionError)."""


def _script(*steps: Any) -> Callable[[], str]:
    """Return a request that, call after call, returns or raises the next step."""
    remaining = list(steps)

    def send() -> str:
        step = remaining.pop(0)
        if isinstance(step, BaseException):
            raise step
        return str(step)

    return send


@pytest.mark.parametrize(
    ("steps", "ok", "retry", "failed"),
    [
        (["caption"], 1, 0, 0),
        ([_Retryable(), _Retryable(), "caption"], 1, 2, 0),
        ([_Retryable(), _Retryable(), _Retryable()], 0, 2, 1),  # the last try fails the image
        ([AuthError("401")], 0, 0, 1),  # an answer no retry changes
        ([_Retryable(), PermanentCaptionError("422")], 0, 1, 1),
        ([_Retryable(), CaptionAborted("stopping")], 0, 1, 0),  # shutdown: not an answer
    ],
)
def test_each_caption_request_is_counted_once(
    steps: list[Any], ok: int, retry: int, failed: int
) -> None:
    metrics = Metrics()
    counted = metrics.caption_attempts(_script(*steps), attempts=3)
    for _ in steps:
        with contextlib.suppress(Exception):
            counted()
    assert value(metrics, "camwatch_caption_requests_total", result="ok") == ok
    assert value(metrics, "camwatch_caption_requests_total", result="retry") == retry
    assert value(metrics, "camwatch_caption_requests_total", result="failed") == failed
    assert value(metrics, "camwatch_caption_duration_seconds_count") == ok


@pytest.fixture
def api() -> Iterator[StandinCaptionAPI]:
    with StandinCaptionAPI(captions={}, api_key=KEY, latency=0.05) as server:
        yield server


@pytest.mark.usefixtures("no_thread_leaks")
def test_the_client_counts_its_requests(api: StandinCaptionAPI) -> None:
    metrics = Metrics()
    caption = CaptionConfig(
        base_url=api.url, retry={"attempts": 3, "backoff_initial": 0.01, "backoff_max": 0.02}
    )
    prompts = Prompts("What is here?", "You watch a house.", False)
    with CaptionClient(caption, KEY, metrics=metrics) as client:
        api.fail_next(1, 503)
        result = client.caption_file(jpeg_with_caption("A cat."), "cat.jpg", prompts)
        assert result.text == "A cat."
        api.fail_next(1, 401)
        with pytest.raises(AuthError):
            client.caption_file(jpeg_with_caption("A dog."), "dog.jpg", prompts)
    assert [r.status for r in api.requests] == [503, 200, 401]
    assert value(metrics, "camwatch_caption_requests_total", result="ok") == 1
    assert value(metrics, "camwatch_caption_requests_total", result="retry") == 1
    assert value(metrics, "camwatch_caption_requests_total", result="failed") == 1
    # The one success took at least the stand-in's latency, in the matching buckets.
    assert value(metrics, "camwatch_caption_duration_seconds_bucket", le="0.05") == 0
    assert value(metrics, "camwatch_caption_duration_seconds_bucket", le="+Inf") == 1
    assert 0.05 <= value(metrics, "camwatch_caption_duration_seconds_sum") < 5  # type: ignore[operator]


def _alert(event_id: str, camera: str, target: str = "main") -> AlertCandidate:
    return AlertCandidate(event_id, "camera_silent", camera, 0.0, [("webhook", target)], "{}")


def test_gauges_are_read_from_the_service_at_scrape_time(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    now = time.time()
    store = Store(cfg.state_dir, clock=lambda: now - 600)  # what it writes is 10 minutes old
    try:
        store.add_pending(
            [
                NewImage("front", f"/cams/front/{i}.jpg", f"{i}.jpg", 10, 1, now - 30)
                for i in range(3)
            ]
        )
        store.mark_silent(_alert("e1", "front"), now - 900)
        store.mark_silent(_alert("e2", "back"), now - 900)
        dead = store.due_alerts("webhook", "main")[1]
        store.dead_letter(dead.id, "HTTP 410 from webhook 'main'")
        gate = CaptionGate.for_config(cfg.caption)
        watching = {"front": ("inotify", None), "back": (None, "no such folder")}
        view = ServiceView(
            Parts(
                state_dir=cfg.state_dir,
                config=lambda: cfg,
                gate=gate,
                watching=lambda: watching,
                busy=lambda: 2,
                settling=lambda: 5,
            )
        )
        metrics = Metrics()
        metrics.watch(view)

        assert value(metrics, "camwatch_queue_depth") == 3
        assert value(metrics, "camwatch_workers_busy") == 2
        assert value(metrics, "camwatch_settling_files") == 5
        assert value(metrics, "camwatch_outbox_pending", target="main") == 1
        assert value(metrics, "camwatch_outbox_pending", target="phones") == 0
        assert value(metrics, "camwatch_dead_letters", target="main") == 1
        oldest = value(metrics, "camwatch_outbox_oldest_seconds")
        assert oldest is not None and 600 <= oldest < 660
        assert value(metrics, "camwatch_camera_up", camera="front") == 1
        assert value(metrics, "camwatch_camera_up", camera="back") == 0
        assert value(metrics, "camwatch_watch_mode", camera="front", mode="inotify") == 1
        assert value(metrics, "camwatch_watch_mode", camera="front", mode="poll") == 0
        assert value(metrics, "camwatch_last_image_timestamp_seconds", camera="front") == now - 30
        assert value(metrics, "camwatch_last_image_timestamp_seconds", camera="back") is None
        assert value(metrics, "camwatch_captioning_paused") == 0
        assert value(metrics, "camwatch_caption_gate", state="closed") == 1

        # Read again at the next scrape: the gate paused, one image taken off the queue.
        gate.pause("HTTP 401 from caption API (is the API key right?)", probe=False)
        store.claim()
        watching["back"] = ("poll", None)
        assert value(metrics, "camwatch_captioning_paused") == 1
        assert value(metrics, "camwatch_caption_gate", state="paused") == 1
        assert value(metrics, "camwatch_caption_gate", state="closed") == 0
        assert value(metrics, "camwatch_queue_depth") == 3  # claimed: still in the queue
        assert value(metrics, "camwatch_camera_up", camera="back") == 1
        assert value(metrics, "camwatch_watch_mode", camera="back", mode="poll") == 1

        state = health(view.look())
        assert not state.ok
        assert state.as_json() == {
            "status": "degraded",
            "problems": [
                "captioning paused: HTTP 401 from caption API (is the API key right?)",
                "webhook main: 1 alert undelivered, the oldest for 10m",
            ],
        }
        view.close()
    finally:
        store.close()


def test_an_unreadable_database_is_unknown_not_zero(tmp_path: Path) -> None:
    cfg = config(tmp_path)  # its state_dir holds no database
    view = ServiceView(
        Parts(
            state_dir=cfg.state_dir,
            config=lambda: cfg,
            gate=CaptionGate.for_config(cfg.caption),
            watching=lambda: {"front": ("inotify", None), "back": ("inotify", None)},
            busy=lambda: 0,
            settling=lambda: 0,
        )
    )
    metrics = Metrics()
    metrics.watch(view)
    assert value(metrics, "camwatch_queue_depth") is None
    assert value(metrics, "camwatch_outbox_pending", target="main") is None
    assert value(metrics, "camwatch_camera_up", camera="front") == 1
    problems = health(view.look()).problems
    assert len(problems) == 1 and problems[0].startswith("state database unreadable: no state")


def _look(**changes: Any) -> Look:
    fields: dict[str, Any] = {
        "at": 10_000.0,
        "gate": "closed",
        "gate_reason": None,
        "cameras": [CameraLook("front", "inotify", None, None)],
        "targets": ["main"],
        "busy": 0,
        "settling": 0,
        "queue": 0,
        **changes,
    }
    return Look(**fields)


@pytest.mark.parametrize(
    ("changes", "problems"),
    [
        ({}, []),
        ({"gate": "open", "gate_reason": "HTTP 503"}, []),  # an outage: images wait
        ({"gate": "paused", "gate_reason": "HTTP 402"}, ["captioning paused: HTTP 402"]),
        (
            {"cameras": [CameraLook("front", None, "unmounted (/mnt/cams)", 1.0)]},
            ["camera front unavailable: unmounted (/mnt/cams)"],
        ),
        (
            {"cameras": [CameraLook("front", None, None, None)]},
            ["camera front unavailable: not watched"],
        ),
        ({"backlogs": [Backlog("webhook", "main", 4, 10_000.0 - 300)]}, []),  # 5 min: not yet
        (
            {"backlogs": [Backlog("notify", "phones", 4, 10_000.0 - 301)]},
            ["notify phones: 4 alerts undelivered, the oldest for 5m"],
        ),
        (
            {"backlogs": [Backlog("webhook", "main", 1, 10_000.0 - 90_000)]},
            ["webhook main: 1 alert undelivered, the oldest for 1d1h"],
        ),
    ],
)
def test_health(changes: dict[str, Any], problems: list[str]) -> None:
    state = health(_look(**changes))
    assert state.problems == problems
    assert state.as_json()["status"] == ("ok" if not problems else "degraded")


def test_the_exposition_is_prometheus_text_or_openmetrics(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.prime(config(tmp_path))
    metrics.image_finished("front", "captioned")
    content_type, body = metrics.render(None)
    assert content_type.startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    images = families["camwatch_images"].samples
    captioned = [s for s in images if s.labels == {"camera": "front", "outcome": "captioned"}]
    assert [(s.name, s.value) for s in captioned] == [("camwatch_images_total", 1)]

    content_type, body = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_registries_are_separate() -> None:
    # Two daemons' worth of metrics in one process (the tests) never share a series.
    first, second = Metrics(), Metrics()
    first.image_finished("front", "captioned")
    assert value(second, "camwatch_images_total", camera="front", outcome="captioned") is None


def test_collecting_from_threads_at_once(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    store = Store(cfg.state_dir)
    try:
        view = ServiceView(
            Parts(
                state_dir=cfg.state_dir,
                config=lambda: cfg,
                gate=CaptionGate.for_config(cfg.caption),
                watching=lambda: {},
                busy=lambda: 0,
                settling=lambda: 0,
            )
        )
        metrics = Metrics()
        metrics.watch(view)
        errors: list[BaseException] = []

        def scrape() -> None:
            try:
                for _ in range(20):
                    metrics.render(None)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=scrape, name=f"scrape-{i}") for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors
        assert value(metrics, "camwatch_queue_depth") == 0
        view.close()
    finally:
        store.close()
