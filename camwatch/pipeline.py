"""One job, from a queued file to its caption and its alerts in the outbox.

A job runs these stages, each returning what it found or the verdict that ends the job:

    read and check  the file read once, safely inside the camera's folder, and whole
    dedupe          its sha256; the same bytes already captioned end the job
    near duplicate  (caption.dedupe) a frame that shows what one captioned just before showed
    prepare upload  (caption.strip_metadata, upload_max_side) what leaves the machine
    caption         within the budget, past the gate (circuit breaker), the request pace and a
                    request slot, the API's answer
    record          the rules matched, the alerts built

and `settle` is the one place that writes the job's outcome to the store (the caption with its
alerts in one transaction, or the reason it was skipped, failed or requeued) and logs it once,
with the camera, the path and the outcome.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from camwatch.alerts import alert_candidates
from camwatch.archive import finish_file
from camwatch.budget import Costs, RequestPace, local_day
from camwatch.config import CameraConfig, Config
from camwatch.errors import (
    CaptionAborted,
    CreditsError,
    ImageError,
    PausingCaptionError,
    PermanentCaptionError,
    TooLarge,
    TransientCaptionError,
)
from camwatch.files import (
    Snapshot,
    content_kind,
    is_complete_image,
    printable_path,
    read_snapshot,
)
from camwatch.gate import CaptionGate
from camwatch.log import get_logger
from camwatch.metrics import Metrics
from camwatch.prompts import prompts_for, public_url_for
from camwatch.providers import CaptionResult, Provider
from camwatch.rules import MAX_CAPTION_CHARS, RuleDecision, RuleSet
from camwatch.similar import Fingerprint, HashError, RecentFrames, fingerprint
from camwatch.store import AlertCandidate, ImageJob, ImageState, SkipKind, Store
from camwatch.upload import UploadError, UploadPlan, prepare, strip_metadata

log = get_logger(__name__)

MAX_ROUNDS = 3  # an image that outlasts this many full retry rounds while others caption fails


class Outcome(StrEnum):
    """How a job ended."""

    CAPTIONED = "captioned"
    DUPLICATE = "duplicate"  # the same bytes were captioned before
    DEDUPED = "deduped"  # a near duplicate of an image captioned just before on its camera
    SKIPPED = "skipped"  # not an image to caption (vanished, too large, never whole, ...)
    FAILED = "failed"  # given up, with the reason
    WAITING = "waiting"  # still being written: back to the debouncer
    REQUEUED = "requeued"  # the API is down or busy: due again after a wait
    RELOADED = "reloaded"  # answered for a configuration replaced meanwhile: due again now
    PAUSED = "paused"  # bad key or no credits: captioning paused, the image waits
    SAVED = "saved"  # shutting down: back in the queue untouched


@dataclass(frozen=True)
class Runtime:
    """Everything a job needs that a reload can replace, swapped as one reference."""

    config: Config
    client: Provider  # providers/: memories.ai or OpenAI-compatible, perhaps with a fallback
    rules: RuleSet


@dataclass(frozen=True)
class Facts:
    """What was learnt of the file, kept with its record when the job finishes it (an image
    that goes back to the queue is read again next time)."""

    sha256: str | None = None
    size: int | None = None
    mtime_ns: int | None = None


@dataclass(frozen=True)
class Captioned:
    """A caption and the alerts it decided, to be recorded in one transaction."""

    result: CaptionResult
    decisions: list[RuleDecision]
    alerts: list[AlertCandidate]
    latency_ms: float
    # The file's bytes as read (not the upload, which may be stripped or scaled down): what
    # on_captioned and notify attachments get.
    data: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class CaptionedImage:
    """A captioned image, once recorded: what `on_captioned` hears (MQTT publishes it)."""

    camera: str
    path: str
    sha256: str
    caption: str
    captioned_at: float
    rules: tuple[str, ...]  # the rules that matched the caption
    alerted: tuple[str, ...]  # those whose alert was decided (not held back by a cooldown)
    data: bytes = field(repr=False)  # the file's bytes as read: nobody opens it again
    content_type: str = "image/jpeg"


@dataclass(frozen=True)
class Verdict:
    """How a job ends: what `settle` writes and logs."""

    outcome: Outcome
    reason: str | None = None
    facts: Facts = Facts()
    due_at: float = 0.0  # requeued: when it is due again
    charge: bool = False  # requeued: whether this counts as one of its rounds
    log_reason: str | None = None  # when the log says it shorter than the record
    quiet: bool = False  # logged at info, not as a warning (and not kept as the last error)
    fields: dict[str, Any] = field(default_factory=dict)  # more for the log line
    captioned: Captioned | None = None
    kind: SkipKind | None = None  # skipped: the kind of reason, stored for `retry --skipped`
    deduped_of: int | None = None  # deduped: the captioned image it matched
    budget: bool = False  # paused: by the daily token budget (until local midnight)


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


def _lstat(path: str) -> Facts:
    try:
        st = os.lstat(path)
    except OSError:
        return Facts()
    return Facts(size=st.st_size, mtime_ns=st.st_mtime_ns)


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
        on_done: Callable[[ImageJob, Outcome], None] = lambda job, outcome: None,
        clock: Callable[[], float] = time.time,
        on_recovered: Callable[[], None] = lambda: None,
        metrics: Metrics | None = None,
        costs: Costs | None = None,
        pace: RequestPace | None = None,
        on_captioned: Callable[[CaptionedImage], None] | None = None,
    ) -> None:
        self._on_captioned = on_captioned
        self.store = store
        self.costs = costs if costs is not None else Costs(store, clock, on_alerts)
        self.pace = pace if pace is not None else RequestPace()
        self.recent = RecentFrames()
        self.metrics = metrics if metrics is not None else Metrics()
        self.gate = gate
        self._runtime = runtime
        self._stop = stop
        self._retouch = retouch
        self._on_alerts = on_alerts
        self._on_done = on_done
        self._on_recovered = on_recovered
        self._clock = clock
        self.last_caption = ""
        self.last_error = ""
        self.slots = Slots()  # the WorkerPool sets the limit to caption.concurrency

    def process(self, job: ImageJob) -> Outcome:
        """Take one claimed image as far as it can go. Return its outcome."""
        rt = self._runtime()
        outcome = self.settle(job, rt, self.run(job, rt))
        self.metrics.image_finished(job.camera, outcome)
        self._on_done(job, outcome)
        return outcome

    def run(self, job: ImageJob, rt: Runtime) -> Verdict:
        """Run the stages of one job; return its verdict (nothing is written yet)."""
        camera = rt.config.camera(job.camera)
        if camera is None:
            return Verdict(Outcome.SKIPPED, "camera not configured", kind=SkipKind.NO_CAMERA)
        snap = self.read_and_check(job, camera, rt.config)
        if isinstance(snap, Verdict):
            return snap
        sha256 = self.dedupe(job, snap)
        if isinstance(sha256, Verdict):
            return sha256
        facts = Facts(sha256, snap.size, snap.mtime_ns)
        seen = self.near_duplicate(job, snap, facts, rt.config)
        if isinstance(seen, Verdict):
            return seen
        verdict = None
        try:
            upload = self.prepare_upload(job, snap, facts, rt.config)
            if isinstance(upload, Verdict):
                verdict = upload
                return verdict
            answer = self.caption(job, upload, facts, camera)
            if isinstance(answer, Verdict):
                verdict = answer
                return verdict
            asked_with, result, latency_ms = answer
            shared = self.shareable(snap, asked_with.config)
            verdict = self.record(job, asked_with, facts, result, latency_ms, shared)
            return verdict
        finally:
            if seen is not None:
                # Frames of this camera that waited for this one are compared with it now (if
                # it was captioned) or go on to be captioned themselves.
                captioned = verdict is not None and verdict.outcome is Outcome.CAPTIONED
                self.recent.end(job.camera, job.id, job.path if captioned else None)

    # -- the stages -----------------------------------------------------------------------------

    def read_and_check(
        self, job: ImageJob, camera: CameraConfig, config: Config
    ) -> Snapshot | Verdict:
        """Return the file's bytes (a Snapshot) if it is a whole image, else the Verdict."""
        try:
            snap = read_snapshot(camera.path, job.path, config.caption.max_image_bytes)
        except FileNotFoundError:
            # Nothing is wrong with a file deleted in time (after: delete elsewhere, a camera
            # that replaces its snapshot): said at info, not as a warning.
            return Verdict(
                Outcome.SKIPPED,
                "file vanished before it was read",
                log_reason="file vanished",
                quiet=True,
                kind=SkipKind.VANISHED,
            )
        except ImageError as exc:
            kind = SkipKind.TOO_LARGE if isinstance(exc, TooLarge) else SkipKind.UNSAFE_PATH
            return Verdict(Outcome.SKIPPED, str(exc), _lstat(job.path), kind=kind)
        except OSError as exc:
            return Verdict(Outcome.FAILED, f"cannot read: {exc.strerror}")
        if is_complete_image(snap.data):
            return snap
        facts = Facts(size=snap.size, mtime_ns=snap.mtime_ns)
        timeout = config.complete_timeout
        if self._clock() - snap.mtime_ns / 1e9 >= timeout:
            reason = f"not a complete JPEG/PNG {timeout:g}s after its last change"
            return Verdict(Outcome.SKIPPED, reason, facts, kind=SkipKind.INCOMPLETE)
        # Still being written (or a camera paused mid-file): the debouncer watches it again.
        return Verdict(Outcome.WAITING, "incomplete; waiting for the rest", kind=SkipKind.WAITING)

    def dedupe(self, job: ImageJob, snap: Snapshot) -> str | Verdict:
        """Return the image's sha256, or the Verdict if these bytes were captioned before."""
        sha256 = hashlib.sha256(snap.data).hexdigest()
        if self.store.is_done(job.camera, job.path, sha256):
            facts = Facts(sha256, snap.size, snap.mtime_ns)
            reason = "same bytes already captioned"
            return Verdict(Outcome.DUPLICATE, reason, facts, kind=SkipKind.DUPLICATE)
        return sha256

    def near_duplicate(
        self, job: ImageJob, snap: Snapshot, facts: Facts, config: Config
    ) -> Fingerprint | Verdict | None:
        """With `caption.dedupe`, return the image's fingerprint, now registered as being
        captioned on its camera, or the Verdict if it shows what an image captioned within
        `window` showed. A frame near one still being captioned waits for that one's answer
        first (a burst is claimed by several workers at once). None without dedupe, or when the
        image cannot be decoded for it (it is then captioned as usual)."""
        dedupe = config.caption.dedupe
        if dedupe is None:
            return None
        try:
            print_ = fingerprint(snap.data)
        except HashError as exc:
            log.info("dedupe_unavailable", camera=job.camera, path=job.path, reason=str(exc))
            return None
        match = self.recent.claim(
            job.camera,
            job.id,
            print_,
            dedupe,
            self._stop,
            wait_s=config.caption.timeout * config.caption.retry.attempts,
        )
        if match is None:
            return print_
        reason = f"near duplicate of {printable_path(match.path)}"
        return Verdict(
            Outcome.DEDUPED,
            reason,
            facts,
            kind=SkipKind.DEDUPED,
            deduped_of=match.image_id,
            fields={
                "matched": printable_path(match.path),
                "distance": match.distance,
                "change": match.change,
            },
        )

    def prepare_upload(
        self, job: ImageJob, snap: Snapshot, facts: Facts, config: Config
    ) -> Snapshot | Verdict:
        """Return what to upload: the file's bytes, or with `strip_metadata`/`upload_max_side`
        a copy without metadata, scaled down (the file on disk and its sha256 stay as they are).
        An image that cannot be prepared fails: sending it as it is would send what the
        configuration says must not leave the machine."""
        caption = config.caption
        plan = UploadPlan(caption.strip_metadata, caption.upload_max_side, caption.jpeg_quality)
        if not plan.changes_anything or caption.upload == "url":
            return snap
        try:
            prepared = prepare(snap.data, plan)
        except UploadError as exc:
            return Verdict(Outcome.FAILED, f"cannot prepare the upload: {exc}", facts)
        log.debug(
            "upload_prepared",
            camera=job.camera,
            path=job.path,
            file_bytes=len(snap.data),
            upload_bytes=len(prepared.data),
            stripped=prepared.stripped,
            scaled_to=prepared.scaled_to,
        )
        return dataclasses.replace(snap, data=prepared.data)

    def shareable(self, snap: Snapshot, config: Config) -> bytes:
        """Return the image bytes that may go to notify attachments and the MQTT snapshot: with
        `strip_metadata`, the file's pixels without its metadata (EXIF, GPS, XMP and comments
        never leave the machine, by any path), full size; else the file's bytes as read."""
        if not config.caption.strip_metadata:
            return snap.data
        try:
            return strip_metadata(snap.data)
        except UploadError:
            # It was uploaded, so it was stripped once already; a walk that fails now cannot
            # happen, and if it did, sending nothing beats sending the metadata.
            return b""

    def caption(
        self, job: ImageJob, snap: Snapshot, facts: Facts, camera: CameraConfig
    ) -> tuple[Runtime, CaptionResult, float] | Verdict:
        """Within the day's token budget, pass the gate, the request pace and a request slot,
        and ask the API. Return the runtime it was asked with, the caption and the request's
        latency, or the Verdict."""
        resume_at = self.costs.blocked_until(self._runtime().config)
        if resume_at is not None:
            reason = "daily token budget spent; captioning resumes at local midnight"
            return Verdict(Outcome.PAUSED, reason, facts, due_at=resume_at, quiet=True, budget=True)
        allowed = self.gate.acquire(self._stop)
        if allowed is None:
            return Verdict(Outcome.SAVED)
        probe = allowed is False
        if not self.pace.take(self._stop):
            self.gate.released(probe)
            return Verdict(Outcome.SAVED)
        # A reload may have come while this worker waited at the gate (a paused gate is resumed
        # by SIGHUP): call with the current client and prompts, not the ones from before the
        # wait, or a fixed key would meet the old one's 401 and pause again.
        rt = self._runtime()
        config = rt.config
        prompts = prompts_for(config, config.camera(job.camera) or camera)
        ilog = log.bind(camera=job.camera, path=job.path)  # the client's retries name the image
        spent_up = False
        try:
            with self.slots.held(self._stop) as started:
                # Asked again right before the request: the answers that came while this worker
                # waited (at the gate, the pace, for this slot) may have spent the budget.
                spent_up = self.costs.spent_up(config)
                if not spent_up:
                    if config.caption.upload == "url":
                        assert config.caption.public_url is not None
                        url = public_url_for(config.caption.public_url, job.camera, job.relpath)
                        result = rt.client.caption_url(url, prompts, ilog)
                    else:
                        name = printable_path(os.path.basename(job.path))
                        result = rt.client.caption_file(snap.data, name, prompts, ilog)
                    self.costs.answered(config, result.tokens_total)  # before the slot is freed
        except CaptionAborted:
            self.gate.released(probe)
            return Verdict(Outcome.SAVED)
        except PausingCaptionError as exc:
            if self._runtime() is not rt:
                # Reloaded while this call was in flight: the answer is about the old key, and
                # the reload resumed the gate; try again with the new configuration.
                self.gate.released(probe)
                return Verdict(Outcome.RELOADED, str(exc))
            period = self.gate.pause(str(exc), probe, camera=job.camera, path=job.path)
            if isinstance(exc, CreditsError):
                self.costs.credits_exhausted(rt.config, str(exc))
            return Verdict(Outcome.PAUSED, str(exc), facts, fields={"wait_s": period})
        except TransientCaptionError as exc:
            period = self.gate.outage(
                str(exc), exc.retry_after, probe, camera=job.camera, path=job.path
            )
            due = self._clock() + period
            fields = {"wait_s": period}
            return Verdict(Outcome.REQUEUED, str(exc), facts, due, not probe, fields=fields)
        except PermanentCaptionError as exc:
            self._succeeded(probe)  # the API answered: it is up, this image is the problem
            return Verdict(Outcome.FAILED, str(exc), facts)
        except Exception as exc:
            # Not a caption error (the client turns those into transient ones): still an outage
            # for the gate, so a probe is always released and captioning never wedges.
            log.exception("caption_unexpected_error", camera=job.camera, path=job.path)
            reason = f"unexpected error ({type(exc).__name__})"
            period = self.gate.outage(reason, None, probe)
            due = self._clock() + period
            fields = {"wait_s": period}
            return Verdict(Outcome.REQUEUED, reason, facts, due, not probe, fields=fields)
        if spent_up:
            self.gate.released(probe)
            resume_at = self.costs.blocked_until(config)  # announces the pause, once
            reason = "daily token budget spent; captioning resumes at local midnight"
            return Verdict(
                Outcome.PAUSED, reason, facts, due_at=resume_at or 0.0, quiet=True, budget=True
            )
        self._succeeded(probe)
        if isinstance(result.primary_error, CreditsError):
            # The fallback captioned this image; the primary's credits are spent all the same.
            self.costs.credits_exhausted(rt.config, str(result.primary_error))
        elif result.primary_resumed:
            self.costs.resumed()  # the primary answers again (providers/fallback.py)
        return rt, result, round((time.monotonic() - started) * 1000, 1)

    def _succeeded(self, probe: bool) -> None:
        if self.gate.succeeded(probe):
            # The outage is over: what waited for it is due now, not after its own backoff.
            self.store.due_now()
            self.costs.resumed()
            self._on_recovered()

    def record(
        self,
        job: ImageJob,
        rt: Runtime,
        facts: Facts,
        result: CaptionResult,
        latency_ms: float,
        data: bytes,
    ) -> Verdict:
        """Match the rules and build the alerts (a notify target that attaches the image gets
        `data`, the bytes `shareable` made of the file as read for this job, never the file
        opened again); return the CAPTIONED verdict."""
        assert facts.sha256 is not None
        try:
            # Rules with `ask`: the model's JSON answers come off the caption; what is kept,
            # logged, stored and sent is the caption without them.
            answered = rt.rules.read_answers(result.text, job.camera)
            # The matcher reads only the first MAX_CAPTION_CHARS itself (minding a word the cut
            # would split), so it gets the caption as it came.
            decisions = rt.rules.matching(answered.caption, job.camera, answers=answered.answers)
        except Exception as exc:
            # The caption came from outside: whatever it made the matcher do, this image is
            # failed with the reason, not requeued and paid for again at every round.
            log.exception("rules_failed", camera=job.camera, path=job.path)
            return Verdict(Outcome.FAILED, f"rule matching failed ({type(exc).__name__})", facts)
        result = dataclasses.replace(result, text=answered.caption)
        for rule in answered.unanswered:  # those rules fell back to their keywords
            log.warning("ask_unanswered", camera=job.camera, path=job.path, rule=rule)
        if len(result.text) > MAX_CAPTION_CHARS:
            # Captions transcribe visible text: a megabyte of it is someone's doing. Cut it
            # before it is stored, logged or sent.
            result = dataclasses.replace(result, text=result.text[:MAX_CAPTION_CHARS] + "…")
        alerts = alert_candidates(
            rt.config,
            decisions,
            job.camera,
            job.path,
            facts.sha256,
            result.text,
            job.detected_at,
            self._clock(),
            image_data=data,
        )
        captioned = Captioned(result, decisions, alerts, latency_ms, data)
        return Verdict(Outcome.CAPTIONED, facts=facts, captioned=captioned)

    # -- the one place a job's outcome is written ------------------------------------------------

    def settle(self, job: ImageJob, rt: Runtime, verdict: Verdict) -> Outcome:
        """Write a job's outcome to the store and log it once. Return the outcome (a requeued
        image that has used up its rounds ends FAILED)."""
        blog = log.bind(camera=job.camera, path=job.path)
        outcome, reason, facts = verdict.outcome, verdict.reason, verdict.facts
        said = verdict.log_reason or reason
        if outcome is Outcome.CAPTIONED:
            assert verdict.captioned is not None
            self._record_caption(job, rt, facts, verdict.captioned, blog)
        elif outcome in (Outcome.SKIPPED, Outcome.DUPLICATE, Outcome.WAITING, Outcome.DEDUPED):
            self.store.finish(
                job.id,
                ImageState.SKIPPED,
                reason,
                facts.sha256,
                facts.size,
                facts.mtime_ns,
                verdict.kind,
                verdict.deduped_of,
            )
            if outcome is Outcome.WAITING:
                self._retouch(job.camera, job.path, job.relpath)
            elif outcome is Outcome.DEDUPED:
                blog.info("image_deduped", outcome=str(outcome), reason=said, **verdict.fields)
            elif outcome is Outcome.DUPLICATE or verdict.quiet:
                blog.info("image_skipped", outcome=str(outcome), reason=said)
            else:
                self._warn(blog, "image_skipped", outcome=str(outcome), reason=said)
        elif outcome is Outcome.FAILED:
            self._fail(job, facts, reason or "failed", blog)
        elif outcome is Outcome.SAVED:
            self.store.release(job.id, 0, None, charge=False)
        elif outcome is Outcome.RELOADED:
            self.store.release(job.id, 0, reason, charge=False)
            blog.info("image_requeued", outcome=str(outcome), reason=said)
        else:  # REQUEUED, PAUSED
            due_at = verdict.due_at
            if verdict.budget and self.costs.blocked_until(self._runtime().config) is None:
                # The budget was lifted (a reload raised daily_tokens) while this job was being
                # put off: it must not sleep until midnight after the reload woke the others.
                due_at = 0.0
            attempts = self.store.release(job.id, due_at, reason, verdict.charge)
            if outcome is Outcome.REQUEUED and attempts >= MAX_ROUNDS:
                self._fail(
                    job, facts, f"gave up after {attempts} rounds of retries: {reason}", blog
                )
                return Outcome.FAILED
            if verdict.quiet:
                blog.info("image_requeued", outcome=str(outcome), reason=said, **verdict.fields)
            else:
                self._warn(
                    blog, "image_requeued", outcome=str(outcome), reason=said, **verdict.fields
                )
        return outcome

    def _fail(self, job: ImageJob, facts: Facts, reason: str, blog: Any) -> None:
        self.store.finish(
            job.id, ImageState.FAILED, reason, facts.sha256, facts.size, facts.mtime_ns
        )
        self._warn(blog, "image_failed", outcome=str(Outcome.FAILED), reason=reason)

    def _record_caption(
        self, job: ImageJob, rt: Runtime, facts: Facts, captioned: Captioned, blog: Any
    ) -> None:
        result = captioned.result
        assert facts.sha256 is not None and facts.size is not None and facts.mtime_ns is not None
        tokens = (result.tokens_input, result.tokens_output, result.tokens_total)
        decided = self.store.complete(
            job.id,
            facts.sha256,
            facts.size,
            facts.mtime_ns,
            result.text,
            tokens,
            captioned.alerts,
            day=local_day(self._clock(), rt.config.timezone),
            camera=job.camera,
        )
        self.last_caption = f"{job.camera}: {result.text}"
        self.metrics.captioned(job.camera, tokens[0], tokens[1], [c.rule for c, s in decided if s])
        blog.info(
            "image_captioned",
            outcome=str(Outcome.CAPTIONED),
            caption=result.text,
            tokens=result.tokens_total,
            latency_ms=captioned.latency_ms,
            rules=[d.rule for d in captioned.decisions],
            provider=result.provider,
            **({"fallback": True} if result.fallback else {}),
        )
        phrases = {d.rule: d.phrases for d in captioned.decisions}
        queued = False
        for candidate, sent in decided:
            if sent:
                queued = queued or bool(candidate.targets)
                blog.info(
                    "alert_decided",
                    outcome="alert",
                    rule=candidate.rule,
                    event_id=candidate.event_id,
                    matched=phrases[candidate.rule],
                    targets=[name for _, name in candidate.targets],
                )
            else:
                blog.info(
                    "alert_suppressed",
                    outcome="cooldown",
                    rule=candidate.rule,
                    matched=phrases[candidate.rule],
                )
        if queued:
            self._on_alerts()
        self._announce(job, facts.sha256, captioned, decided)
        config = rt.config
        camera = config.camera(job.camera)
        root = camera.path if camera is not None else None
        error = finish_file(
            config.after, config.archive_dir, job.camera, job.path, job.relpath, blog, root
        )
        if error is not None:
            self.last_error = f"after_action_failed: {error}"

    def _announce(
        self,
        job: ImageJob,
        sha256: str,
        captioned: Captioned,
        decided: list[tuple[AlertCandidate, bool]],
    ) -> None:
        """Tell `on_captioned` about a recorded image; its failure never fails the job."""
        if self._on_captioned is None:
            return
        event = CaptionedImage(
            camera=job.camera,
            path=job.path,
            sha256=sha256,
            caption=captioned.result.text,
            captioned_at=self._clock(),
            rules=tuple(d.rule for d in captioned.decisions),
            alerted=tuple(c.rule for c, sent in decided if sent),
            data=captioned.data,
            content_type="image/png" if content_kind(captioned.data) == "png" else "image/jpeg",
        )
        try:
            self._on_captioned(event)
        except Exception:
            log.exception("on_captioned_failed", camera=job.camera, path=job.path)

    def _warn(self, blog: Any, event: str, **fields: Any) -> None:
        """Log a warning about a job and keep it as the last error for the status line."""
        self.last_error = f"{event}: {fields.get('reason') or fields.get('error') or ''}"
        blog.warning(event, **fields)
