"""The Prometheus metrics: counters kept where things happen, gauges read when scraped.

`Metrics` holds a registry of its own (never prometheus-client's global one: the tests run many
daemons' worth of parts in one process). The pipeline counts images, tokens and alerts, the
caption client its requests, the dispatcher its deliveries, each through a one-line call. What is
state rather than an event (the queue, the outbox, the gate, the cameras) is not counted at all:
`StateCollector` reads it from the service at each scrape (state_view.py), so it cannot drift.

Every counter starts at 0 for the label sets the configuration makes known (`prime`), so that a
graph or a `rate()` has no gap before the first event.

    series (all prefixed camwatch_)                  labels
    images_total                     counter         camera, outcome (captioned, skipped,
                                                     failed, deduped)
    caption_requests_total           counter         result (ok, retry, failed)
    caption_duration_seconds         histogram       (successful requests)
    tokens_total                     counter         camera, direction (input, output)
    alerts_total                     counter         rule, camera
    deliveries_total                 counter         target, result (delivered, failed,
                                                     dropped)
    queue_depth, outbox_oldest_seconds, captioning_paused, workers_busy, settling_files  gauges
    outbox_pending, dead_letters     gauge           target
    camera_up, last_image_timestamp_seconds          camera
    watch_mode                       gauge           camera, mode (inotify, poll)
    caption_gate                     gauge           state (closed, open, paused)
    build_info                       info            version, python
    start_time_seconds               gauge
and the standard process_* series (CPU, memory, open files) of the daemon's process.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from camwatch import __version__
from camwatch.config import Config
from camwatch.errors import CaptionAborted, CaptionError
from camwatch.state_view import Look, ServiceView

T = TypeVar("T")

# The pipeline's outcomes (pipeline.Outcome values) that end an image, by their metric label.
IMAGE_OUTCOMES = {
    "captioned": "captioned",
    "skipped": "skipped",
    "failed": "failed",
    "duplicate": "deduped",
    "deduped": "deduped",
}
REQUEST_RESULTS = ("ok", "retry", "failed")
DIRECTIONS = ("input", "output")
DELIVERY_RESULTS = ("delivered", "failed", "dropped")
GATE_STATES = ("closed", "open", "paused")
WATCH_MODES = ("inotify", "poll")
# A caption takes from a fraction of a second (a local model) to tens of seconds (a busy API).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0)


class Metrics:
    """The daemon's counters, in a registry of its own; `render` writes the exposition."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.images = Counter(
            "camwatch_images",
            "Images that reached an outcome: captioned, skipped (not captioned: vanished, too"
            " large, never whole, ...), failed (given up, with the reason), deduped (the same"
            " bytes were captioned before).",
            ["camera", "outcome"],
            registry=registry,
        )
        self.caption_requests = Counter(
            "camwatch_caption_requests",
            "Requests to the caption API: ok (a caption), retry (failed, tried again), failed"
            " (failed, the image's last try or an answer no retry changes).",
            ["result"],
            registry=registry,
        )
        self.caption_duration = Histogram(
            "camwatch_caption_duration_seconds",
            "How long a successful caption request took, upload and answer.",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "camwatch_tokens",
            "Tokens the caption API counted for captioned images, by direction.",
            ["camera", "direction"],
            registry=registry,
        )
        self.alerts = Counter(
            "camwatch_alerts",
            "Alerts decided (a rule matched a caption, outside its cooldown).",
            ["rule", "camera"],
            registry=registry,
        )
        self.deliveries = Counter(
            "camwatch_deliveries",
            "Alert delivery attempts: delivered, failed (tried again later), dropped (given up:"
            " refused for good, kept as a dead letter, or older than delivery.max_age).",
            ["target", "result"],
            registry=registry,
        )
        Info("camwatch_build", "The running camwatch.", registry=registry).info(
            {"version": __version__, "python": platform.python_version()}
        )
        Gauge(
            "camwatch_start_time_seconds",
            "When the daemon started, in seconds since the epoch.",
            registry=registry,
        ).set(time.time())
        ProcessCollector(registry=registry)
        for result in REQUEST_RESULTS:
            self.caption_requests.labels(result)

    def prime(self, config: Config) -> None:
        """Start at 0 the counters of every camera, rule and target `config` names (again
        after a reload: new names get their series, old ones keep theirs)."""
        cameras = [c.name for c in config.cameras]
        for camera in cameras:
            for outcome in IMAGE_OUTCOMES.values():
                self.images.labels(camera, outcome)
            for direction in DIRECTIONS:
                self.tokens.labels(camera, direction)
        for rule in config.rules:
            for camera in rule.cameras or cameras:
                self.alerts.labels(rule.name, camera)
        targets = [t.name for t in (*config.webhooks, *config.notify)]
        for name in targets + (["mqtt"] if config.mqtt is not None else []):
            for result in DELIVERY_RESULTS:
                self.deliveries.labels(name, result)

    def watch(self, view: ServiceView) -> None:
        """Report the service's state, read from `view` at every scrape."""
        self.registry.register(StateCollector(view))

    def render(self, accept: str | None) -> tuple[str, bytes]:
        """Return the content type and the exposition of every series, in the format the
        `Accept` header asks for (Prometheus' text format, or OpenMetrics)."""
        encoder, content_type = choose_encoder(accept or "")
        return content_type, encoder(self.registry)

    # -- the one-line calls where things happen -------------------------------------------------

    def image_finished(self, camera: str, outcome: str) -> None:
        """Count an image that reached `outcome` (a pipeline Outcome; the others, such as
        requeued, are not an end)."""
        label = IMAGE_OUTCOMES.get(str(outcome))
        if label is not None:
            self.images.labels(camera, label).inc()

    def captioned(self, camera: str, tokens_in: int, tokens_out: int, rules: Iterable[str]) -> None:
        """Count a caption's tokens and the alerts its rules decided."""
        self.tokens.labels(camera, "input").inc(max(tokens_in, 0))
        self.tokens.labels(camera, "output").inc(max(tokens_out, 0))
        for rule in rules:
            self.alerts.labels(rule, camera).inc()

    def delivery(self, target: str, result: str) -> None:
        """Count one delivery attempt to `target` (`delivered`, `failed` or `dropped`)."""
        self.deliveries.labels(target, result).inc()

    def caption_attempts(self, send: Callable[[], T], attempts: int) -> Callable[[], T]:
        """Given one caption call's request (`send`, tried up to `attempts` times), return it
        counting each try: ok (timed), retry (an error worth another try, with tries left), or
        failed (an answer no retry changes, or the last try)."""
        tries = 0

        def counted() -> T:
            nonlocal tries
            tries += 1
            started = time.monotonic()
            try:
                result = send()
            except CaptionAborted:
                raise  # shutting down: not an answer
            except CaptionError:
                # Raised as it is (auth, credits, a refused image): the client does not retry.
                self.caption_requests.labels("failed").inc()
                raise
            except Exception:
                # Anything else is the client's signal to try again, while tries are left.
                self.caption_requests.labels("retry" if tries < attempts else "failed").inc()
                raise
            self.caption_duration.observe(time.monotonic() - started)
            self.caption_requests.labels("ok").inc()
            return result

        return counted


class StateCollector:
    """The gauges of the service's state, read at each scrape (prometheus-client's custom
    collector interface: `collect` yields metric families)."""

    def __init__(self, view: ServiceView) -> None:
        self.view = view

    def describe(self) -> Iterator[Metric]:
        # The names, without reading anything: the registry checks them for clashes.
        yield from _families(None)

    def collect(self) -> Iterator[Metric]:
        yield from _families(self.view.look())


def _families(look: Look | None) -> Iterator[Metric]:
    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"camwatch_{name}", doc, labels=list(labels))

    paused = gauge("captioning_paused", "1 while captioning is paused (bad key, no credits).")
    gate = gauge(
        "caption_gate",
        "The caption gate: closed (captioning), open (an API outage: one probe at a time),"
        " paused (bad key or no credits). 1 for the current state.",
        ("state",),
    )
    up = gauge(
        "camera_up",
        "1 while the camera's folder is watched, 0 while it is unavailable.",
        ("camera",),
    )
    mode = gauge(
        "watch_mode",
        "1 for how the camera's folder is watched: inotify or poll.",
        ("camera", "mode"),
    )
    last = gauge(
        "last_image_timestamp_seconds",
        "When the camera's latest image was first seen, in seconds since the epoch (no series"
        " before its first image).",
        ("camera",),
    )
    busy = gauge("workers_busy", "Images being read, captioned or recorded right now.")
    settling = gauge("settling_files", "Files waiting to be quiet and whole before they queue.")
    queue = gauge("queue_depth", "Images queued or being captioned.")
    oldest = gauge(
        "outbox_oldest_seconds", "Age of the oldest undelivered alert (0 when none waits)."
    )
    pending = gauge("outbox_pending", "Undelivered alerts, by target.", ("target",))
    dead = gauge(
        "dead_letters",
        "Alerts the target refused for good, kept for `camwatch retry --alerts`.",
        ("target",),
    )
    families = [paused, gate, up, mode, last, busy, settling, queue, oldest, pending, dead]
    if look is None:
        yield from families
        return
    paused.add_metric([], 1.0 if look.gate == "paused" else 0.0)
    for state in GATE_STATES:
        gate.add_metric([state], 1.0 if look.gate == state else 0.0)
    for camera in look.cameras:
        up.add_metric([camera.name], 0.0 if camera.mode is None else 1.0)
        for name in WATCH_MODES:
            mode.add_metric([camera.name, name], 1.0 if camera.mode == name else 0.0)
        if camera.last_image_at is not None:
            last.add_metric([camera.name], camera.last_image_at)
    busy.add_metric([], look.busy)
    settling.add_metric([], look.settling)
    if look.queue is not None:  # else the database could not be read: unknown, not 0
        queue.add_metric([], look.queue)
        oldest_at = min((b.oldest_at for b in look.backlogs), default=None)
        oldest.add_metric([], 0.0 if oldest_at is None else max(look.at - oldest_at, 0.0))
        # A webhook and a notify target may share a name: one series each, summed.
        waiting = dict.fromkeys(look.targets, 0)
        for backlog in look.backlogs:
            waiting[backlog.target] = waiting.get(backlog.target, 0) + backlog.pending
        refused = dict.fromkeys(look.targets, 0)
        for letters in look.dead:
            refused[letters.target] = refused.get(letters.target, 0) + letters.count
        for target, count in sorted(waiting.items()):
            pending.add_metric([target], count)
        for target, count in sorted(refused.items()):
            dead.add_metric([target], count)
    yield from families
