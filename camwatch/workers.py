"""The worker pool: threads that claim queued images and run each through the pipeline.

`caption.concurrency` counts requests in flight, not threads: the pool runs a few spare workers
beyond it, which read, hash and record images while the others wait on the API, so that every
request slot stays busy while there is work. `work_one()` is one turn of a worker (claim,
process, survive whatever happened), so tests can step the pool without its threads.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from camwatch.errors import StateError
from camwatch.log import get_logger
from camwatch.pipeline import MAX_ROUNDS, Outcome, Pipeline
from camwatch.store import ImageState, Store

log = get_logger(__name__)

IDLE_WAIT_S = 5.0  # an idle worker looks at the queue at least this often
_STATE_ERROR_PAUSE_S = 5.0  # disk full or read-only: do not spin
_INTERNAL_ERROR_RETRY_S = 60.0  # a job that raised something unexpected is tried again later


def spare_workers(concurrency: int) -> int:
    """Given `caption.concurrency`, return how many workers to run beyond it: enough that one
    is always ready to send when a request ends (reading, hashing and recording an image take
    a few milliseconds that must not idle a request slot)."""
    return max(2, concurrency // 4)


class WorkerPool:
    """`caption.concurrency` workers with a request in flight at once, and `spare_workers`
    more preparing the next image or recording the last."""

    def __init__(
        self,
        store: Store,
        pipeline: Pipeline,
        stop: threading.Event,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self._stop = stop
        self._clock = clock
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

    def idle_wait(self) -> float:
        """Return how long an idle worker may sleep: until the earliest requeued image is due,
        at most IDLE_WAIT_S (rows queued by another process, `camwatch retry`, wake no one)."""
        due = self.store.next_due()
        if due is None:
            return IDLE_WAIT_S
        return min(max(due - self._clock(), 0.01), IDLE_WAIT_S)

    def work_one(self) -> Outcome | None:
        """Claim one due image and take it as far as it goes. Return its outcome, or None if
        nothing was due. Never raises: a job that fails unexpectedly goes back to the queue."""
        job = self.store.claim()
        if job is None:
            return None
        with self._cond:
            self._busy += 1
        try:
            return self.pipeline.process(job)
        except StateError as exc:
            log.error("state_write_failed", camera=job.camera, path=job.path, error=str(exc))
            self._stop.wait(_STATE_ERROR_PAUSE_S)
            # Put the image back so it is tried again once the disk can be written; if that
            # fails too, it stays "captioning" and the next start resumes it.
            with contextlib.suppress(StateError):
                self.store.release(job.id, self._clock(), str(exc), charge=False)
            return Outcome.SAVED
        except Exception as exc:
            log.exception("job_failed", camera=job.camera, path=job.path)
            reason = f"internal error ({type(exc).__name__})"
            with contextlib.suppress(StateError):
                due = self._clock() + _INTERNAL_ERROR_RETRY_S
                if self.store.release(job.id, due, reason, charge=True) >= MAX_ROUNDS:
                    # The same image keeps failing the same way: give up on it, with the reason,
                    # rather than pay for it again at every round (`camwatch retry` brings it back).
                    self.store.finish(job.id, ImageState.FAILED, f"gave up: {reason}")
                    log.error(
                        "image_failed",
                        camera=job.camera,
                        path=job.path,
                        outcome="failed",
                        reason=f"gave up after {MAX_ROUNDS} rounds: {reason}",
                    )
                    return Outcome.FAILED
            return Outcome.REQUEUED
        finally:
            with self._cond:
                self._busy -= 1
            self.last_progress = time.monotonic()

    def _loop(self, index: int) -> None:
        while not self._stop.is_set():
            if index >= self._wanted:
                return
            with self._cond:
                generation = self._generation
            try:
                outcome = self.work_one()
                wait = self.idle_wait() if outcome is None else 0.0
            except StateError as exc:
                log.error("queue_unavailable", error=str(exc))
                self._stop.wait(_STATE_ERROR_PAUSE_S)
                continue
            if outcome is None:
                with self._cond:
                    # A wake() between the claim and here must not be slept through.
                    if generation == self._generation and not self._stop.is_set():
                        self._cond.wait(wait)
