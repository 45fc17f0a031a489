"""One job, from a queued file to its caption and its alerts in the outbox; and the worker pool.

A job reads the file once (safely, inside the camera's folder), checks it is a whole image,
hashes it, skips it if those exact bytes were done before, passes the gate, captions it, matches
the rules, and writes the caption with its alerts in one transaction. Every outcome is logged
once, with the camera, the path and the outcome.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from camwatch.alerts import alert_body, new_event_id, notify_body
from camwatch.archive import apply_after
from camwatch.caption import CaptionClient, CaptionResult, Prompts, public_url_for
from camwatch.config import CameraConfig, Config
from camwatch.errors import (
    CaptionAborted,
    PausingCaptionError,
    PermanentCaptionError,
    StateError,
    TransientCaptionError,
)
from camwatch.files import (
    TooLarge,
    UnsafePath,
    is_complete_image,
    printable_path,
    read_snapshot,
)
from camwatch.gate import CaptionGate
from camwatch.log import get_logger
from camwatch.rules import RuleDecision, RuleSet
from camwatch.store import AlertCandidate, ImageJob, Store

log = get_logger(__name__)

IDLE_WAIT_S = 5.0  # an idle worker looks at the queue at least this often
MAX_ROUNDS = 3  # an image that outlasts this many full retry rounds while others caption fails


def spare_workers(concurrency: int) -> int:
    """Given `caption.concurrency`, return how many workers to run beyond it: enough that one
    is always ready to send when a request ends (reading, hashing and recording an image take
    a few milliseconds that must not idle a request slot)."""
    return max(2, concurrency // 4)


class Slots:
    """At most `limit` caption requests in flight at once: `caption.concurrency` counts
    requests, not threads."""

    def __init__(self, limit: int = 1 << 30) -> None:
        self._cond = threading.Condition()
        self._limit = limit
        self._used = 0

    def resize(self, limit: int) -> None:
        """Allow `limit` requests at once (requests beyond it finish; no new one starts)."""
        with self._cond:
            self._limit = limit
            self._cond.notify_all()

    @contextlib.contextmanager
    def held(self, stop: threading.Event) -> Iterator[float]:
        """Wait for a free slot and hold it for the block; yield the monotonic time it was
        taken. Raise CaptionAborted if `stop` is set while waiting."""
        with self._cond:
            while self._used >= self._limit:
                if stop.is_set():
                    raise CaptionAborted("stopping")
                self._cond.wait(0.25)
            self._used += 1
        try:
            yield time.monotonic()
        finally:
            with self._cond:
                self._used -= 1
                self._cond.notify()


@dataclass(frozen=True)
class Runtime:
    """Everything a job needs that a reload can replace, swapped as one reference."""

    config: Config
    client: CaptionClient
    rules: RuleSet


def prompts_for(config: Config, camera: CameraConfig) -> Prompts:
    """Return the prompts for a camera: its own overrides, else the caption section's."""
    caption = config.caption
    return Prompts(
        user_prompt=camera.user_prompt or caption.user_prompt,
        system_prompt=camera.system_prompt or caption.system_prompt,
        thinking=caption.thinking if camera.thinking is None else camera.thinking,
    )


def alert_candidates(
    config: Config,
    decisions: list[RuleDecision],
    camera: str,
    image: str,
    sha256: str,
    caption: str,
    detected_at: float,
    alerted_at: float,
) -> list[AlertCandidate]:
    """Given the rules that matched a caption, return one alert per rule, with its body built
    once for every target."""
    rules = {rule.name: rule for rule in config.rules}
    notify = {n.name: n for n in config.notify}
    out = []
    for decision in decisions:
        rule = rules[decision.rule]
        event_id = new_event_id()
        hooks = rule.webhooks if rule.webhooks is not None else [w.name for w in config.webhooks]
        notes = rule.notify if rule.notify is not None else list(notify)
        body = alert_body(
            event_id,
            rule.name,
            rule.severity,
            camera,
            image,
            sha256,
            caption,
            decision.phrases,
            detected_at,
            alerted_at,
        )
        targets = [("webhook", name) for name in hooks] + [("notify", name) for name in notes]
        fields = {
            "id": event_id,
            "rule": rule.name,
            "severity": rule.severity,
            "camera": camera,
            "image": image,
            "caption": caption,
            "matched": ", ".join(decision.phrases),
        }
        # Notify targets are people: each gets its own message, formatted now and stored.
        messages = {name: notify_body(notify[name], fields) for name in notes}
        out.append(
            AlertCandidate(event_id, rule.name, camera, rule.cooldown, targets, body, messages)
        )
    return out


class Pipeline:
    """Processes claimed jobs; shared by every worker thread."""

    def __init__(
        self,
        store: Store,
        gate: CaptionGate,
        runtime: Callable[[], Runtime],
        stop: threading.Event,
        retouch: Callable[[str, str, str], None],
        on_alerts: Callable[[], None],
        on_done: Callable[[ImageJob, str], None] = lambda job, outcome: None,
    ) -> None:
        self.store = store
        self.gate = gate
        self._runtime = runtime
        self._stop = stop
        self._retouch = retouch
        self._on_alerts = on_alerts
        self._on_done = on_done
        self.last_caption = ""
        self.last_error = ""
        self.slots = Slots()  # the WorkerPool sets the limit to caption.concurrency

    def _warn(self, blog: Any, event: str, **fields: Any) -> None:
        """Log a warning about a job and keep it as the last error for the status line."""
        self.last_error = f"{event}: {fields.get('reason') or fields.get('error') or ''}"
        blog.warning(event, **fields)

    def process(self, job: ImageJob) -> str:
        """Take one claimed image as far as it can go. Return its outcome."""
        outcome = self._process(job)
        self._on_done(job, outcome)
        return outcome

    def _process(self, job: ImageJob) -> str:
        rt = self._runtime()
        config = rt.config
        blog = log.bind(camera=job.camera, path=job.path)
        camera = config.camera(job.camera)
        if camera is None:
            self.store.finish(job.id, "skipped", "camera not configured")
            self._warn(blog, "image_skipped", outcome="skipped", reason="camera not configured")
            return "skipped"
        try:
            snap = read_snapshot(camera.path, job.path, config.caption.max_image_bytes)
        except FileNotFoundError:
            self.store.finish(job.id, "skipped", "file vanished before it was read")
            blog.info("image_skipped", outcome="skipped", reason="file vanished")
            return "skipped"
        except (UnsafePath, TooLarge) as exc:
            st = _lstat(job.path)
            self.store.finish(job.id, "skipped", str(exc), size=st[0], mtime_ns=st[1])
            self._warn(blog, "image_skipped", outcome="skipped", reason=str(exc))
            return "skipped"
        except OSError as exc:
            self.store.finish(job.id, "failed", f"cannot read: {exc.strerror}")
            self._warn(
                blog, "image_failed", outcome="failed", reason=f"cannot read: {exc.strerror}"
            )
            return "failed"
        if not is_complete_image(snap.data):
            return self._incomplete(job, snap.size, snap.mtime_ns, config.complete_timeout)
        sha256 = hashlib.sha256(snap.data).hexdigest()
        if self.store.is_done(job.camera, job.path, sha256):
            self.store.finish(
                job.id, "skipped", "same bytes already captioned", sha256, snap.size, snap.mtime_ns
            )
            blog.info("image_skipped", outcome="duplicate", reason="same bytes already captioned")
            return "duplicate"
        allowed = self.gate.acquire(self._stop)
        if allowed is None:
            self.store.release(job.id, 0, None, charge=False)
            return "saved"
        probe = allowed is False
        # A reload may have come while this worker waited at the gate (a paused gate is
        # resumed by SIGHUP): call with the current client and prompts, not the ones from
        # before the wait, or a fixed key would meet the old one's 401 and pause again.
        rt = self._runtime()
        config = rt.config
        camera = config.camera(job.camera) or camera
        try:
            with self.slots.held(self._stop) as started:
                if config.caption.upload == "url":
                    assert config.caption.public_url is not None
                    url = public_url_for(config.caption.public_url, job.camera, job.relpath)
                    result = rt.client.caption_url(url, prompts_for(config, camera))
                else:
                    result = rt.client.caption_file(
                        snap.data,
                        printable_path(os.path.basename(job.path)),
                        prompts_for(config, camera),
                    )
        except CaptionAborted:
            self.gate.released(probe)
            self.store.release(job.id, 0, None, charge=False)
            return "saved"
        except PausingCaptionError as exc:
            if self._runtime() is not rt:
                # Reloaded while this call was in flight: the answer is about the old key, and
                # the reload resumed the gate; try again with the new configuration.
                self.gate.released(probe)
                self.store.release(job.id, 0, str(exc), charge=False)
                blog.info("image_requeued", outcome="reloaded", reason=str(exc))
                return "requeued"
            period = self.gate.pause(str(exc), probe)
            self.store.release(job.id, 0, str(exc), charge=False)
            self._warn(blog, "image_requeued", outcome="paused", reason=str(exc), wait_s=period)
            return "paused"
        except TransientCaptionError as exc:
            period = self.gate.outage(str(exc), exc.retry_after, probe)
            attempts = self.store.release(job.id, time.time() + period, str(exc), charge=not probe)
            if attempts >= MAX_ROUNDS:
                reason = f"gave up after {attempts} rounds of retries: {exc}"
                self.store.finish(job.id, "failed", reason, sha256, snap.size, snap.mtime_ns)
                self._warn(blog, "image_failed", outcome="failed", reason=reason)
                return "failed"
            self._warn(blog, "image_requeued", outcome="requeued", reason=str(exc), wait_s=period)
            return "requeued"
        except PermanentCaptionError as exc:
            self.gate.succeeded(probe)  # the API answered: it is up, this image is the problem
            self.store.finish(job.id, "failed", str(exc), sha256, snap.size, snap.mtime_ns)
            self._warn(blog, "image_failed", outcome="failed", reason=str(exc))
            return "failed"
        self.gate.succeeded(probe)
        latency_ms = round((time.monotonic() - started) * 1000, 1)
        return self._complete(job, rt, camera, sha256, snap.size, snap.mtime_ns, result, latency_ms)

    def _complete(
        self,
        job: ImageJob,
        rt: Runtime,
        camera: CameraConfig,
        sha256: str,
        size: int,
        mtime_ns: int,
        result: CaptionResult,
        latency_ms: float,
    ) -> str:
        config = rt.config
        decisions = rt.rules.matching(result.text, camera.name)
        now = time.time()
        candidates = alert_candidates(
            config, decisions, camera.name, job.path, sha256, result.text, job.detected_at, now
        )
        tokens = (result.tokens_input, result.tokens_output, result.tokens_total)
        decided = self.store.complete(
            job.id, sha256, size, mtime_ns, result.text, tokens, candidates
        )
        blog = log.bind(camera=job.camera, path=job.path)
        self.last_caption = f"{job.camera}: {result.text}"
        blog.info(
            "image_captioned",
            outcome="captioned",
            caption=result.text,
            tokens=result.tokens_total,
            latency_ms=latency_ms,
            rules=[d.rule for d in decisions],
        )
        queued = False
        for candidate, sent in decided:
            decision = next(d for d in decisions if d.rule == candidate.rule)
            if sent:
                queued = queued or bool(candidate.targets)
                blog.info(
                    "alert_decided",
                    outcome="alert",
                    rule=candidate.rule,
                    event_id=candidate.event_id,
                    matched=decision.phrases,
                    targets=[name for _, name in candidate.targets],
                )
            else:
                blog.info(
                    "alert_suppressed",
                    outcome="cooldown",
                    rule=candidate.rule,
                    matched=decision.phrases,
                )
        if queued:
            self._on_alerts()
        if config.after != "keep":
            try:
                moved = apply_after(
                    config.after, config.archive_dir, job.camera, job.path, job.relpath
                )
                blog.info("image_" + ("moved" if moved else "deleted"), to=moved)
            except OSError as exc:
                self._warn(blog, "after_action_failed", action=config.after, error=str(exc))
        return "captioned"

    def _incomplete(self, job: ImageJob, size: int, mtime_ns: int, timeout: float) -> str:
        if time.time() - mtime_ns / 1e9 >= timeout:
            reason = f"not a complete JPEG/PNG {timeout:g}s after its last change"
            self.store.finish(job.id, "skipped", reason, size=size, mtime_ns=mtime_ns)
            log.warning(
                "image_skipped", camera=job.camera, path=job.path, outcome="skipped", reason=reason
            )
            return "skipped"
        # Still being written (or a camera paused mid-file): let the debouncer watch it again.
        self.store.finish(job.id, "skipped", "incomplete; waiting for the rest")
        self._retouch(job.camera, job.path, job.relpath)
        return "waiting"


def _lstat(path: str) -> tuple[int | None, int | None]:
    try:
        st = os.lstat(path)
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns


class WorkerPool:
    """Threads that claim queued images and process them: `caption.concurrency` of them with a
    request in flight at once, and `spare_workers` more preparing the next image or recording
    the last, so that every request slot stays busy while there is work."""

    def __init__(self, store: Store, pipeline: Pipeline, stop: threading.Event) -> None:
        self.store = store
        self.pipeline = pipeline
        self._stop = stop
        self._cond = threading.Condition()
        self._wanted = 0
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._generation = 0  # bumped by wake(): lets a worker see a wake it was not waiting for
        self.last_progress = time.monotonic()

    def resize(self, count: int) -> None:
        """Allow `count` requests in flight, with `spare_workers(count)` more workers than that
        (grow at once; shrink as workers finish their job)."""
        self.pipeline.slots.resize(count)
        count += spare_workers(count)
        with self._cond:
            self._wanted = count
            self._generation += 1
            self._threads = [t for t in self._threads if t.is_alive()]
            while len(self._threads) < count:
                index = len(self._threads)
                thread = threading.Thread(
                    target=self._loop, args=(index,), name=f"caption-{index}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            self._cond.notify_all()

    def wake(self) -> None:
        """Tell idle workers that the queue has new work."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    @property
    def busy(self) -> int:
        """How many workers hold a job right now."""
        return self._busy

    def join(self, timeout: float) -> bool:
        """Wait for the workers to finish their current job. Return whether all did."""
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(deadline - time.monotonic(), 0.0))
        return not any(t.is_alive() for t in self._threads)

    def _idle_wait(self) -> float:
        """Return how long an idle worker may sleep: until the earliest requeued image is due,
        at most IDLE_WAIT_S (rows queued by another process, `camwatch retry`, wake no one)."""
        due = self.store.next_due()
        if due is None:
            return IDLE_WAIT_S
        return min(max(due - time.time(), 0.01), IDLE_WAIT_S)

    def _loop(self, index: int) -> None:
        while not self._stop.is_set():
            if index >= self._wanted:
                return
            with self._cond:
                generation = self._generation
            try:
                job = self.store.claim()
                wait = self._idle_wait() if job is None else 0.0
            except StateError as exc:
                log.error("queue_unavailable", error=str(exc))
                self._stop.wait(5.0)  # disk full or read-only: do not spin
                continue
            if job is None:
                with self._cond:
                    # A wake() between the claim and here must not be slept through.
                    if generation == self._generation:
                        self._cond.wait(wait)
                continue
            with self._cond:
                self._busy += 1
            try:
                self.pipeline.process(job)
            except StateError as exc:
                log.error("state_write_failed", camera=job.camera, path=job.path, error=str(exc))
                self._stop.wait(5.0)  # disk full or read-only: do not spin
                # Put the image back so it is tried again once the disk can be written; if that
                # fails too, it stays "captioning" and the next start resumes it.
                with contextlib.suppress(StateError):
                    self.store.release(job.id, time.time(), str(exc), charge=False)
            except Exception:
                log.exception("job_failed", camera=job.camera, path=job.path)
                with contextlib.suppress(StateError):
                    self.store.release(job.id, time.time() + 60, "internal error", charge=True)
            finally:
                with self._cond:
                    self._busy -= 1
                self.last_progress = time.monotonic()
