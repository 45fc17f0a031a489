"""Progress on long work: a summary line every so often while a burst of images is worked
through, and the progress bar of `run --once` on a terminal.

`Progress` decides what to say and when, and nothing else: worker threads tell it each job's
outcome, the main loop shows it the queue length once a tick and logs the line it answers with,
if any. Time comes from an injected clock, so tests step it without threads or sleeps.

A burst starts when the queue is seen non-empty (or at the last look that saw it empty, if jobs
finished since) and ends when it is seen empty. Its first line comes `every` seconds after it
started (a single image, or a handful, never gets one), then one every `every` seconds while there
is something new to say, and one `burst_done` line when the queue drains after a burst that was
reported.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from camwatch.errors import ConfigError
from camwatch.pipeline import Outcome

DEFAULT_EVERY_S = 10.0
# For tests only: a shorter interval, so that a burst of seconds gets several lines.
EVERY_ENV = "CAMWATCH_PROGRESS_EVERY"
# Weight of the last interval in the smoothed rate: one slow interval (a retry, a slow answer)
# moves the estimate halfway, not all the way.
SMOOTHING = 0.5

# The outcomes that finish an image; the others send it back to wait (requeued, paused, ...).
DONE_OUTCOMES = frozenset(
    str(o) for o in (Outcome.CAPTIONED, Outcome.DUPLICATE, Outcome.SKIPPED, Outcome.FAILED)
)


def every_from_env(environ: Mapping[str, str] = os.environ) -> float:
    """Return the summary interval in seconds: `$CAMWATCH_PROGRESS_EVERY` (for tests), else
    DEFAULT_EVERY_S. Raise ConfigError if the variable is set to anything but a positive number
    of seconds."""
    raw = environ.get(EVERY_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_EVERY_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError([f"{EVERY_ENV}: expected a positive number of seconds, got {raw!r}"])
    return value


@dataclass(frozen=True)
class Line:
    """A log line to write: its event name and fields."""

    event: str
    fields: dict[str, Any] = field(default_factory=dict)


class Progress:
    """Counts finished jobs and decides when a burst deserves a summary line."""

    def __init__(self, every: float = DEFAULT_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.every = every
        self._clock = clock
        self._lock = threading.Lock()  # finished() runs on the worker threads
        self._outcomes: Counter[str] = Counter()  # since the burst began (or the last idle look)
        self._done_ever = 0
        self._started: float | None = None
        self._idle_at: float | None = None  # the last look that found the queue empty
        self._next_at = 0.0
        self._last_at = 0.0
        self._last_done = 0
        self._last_queued = -1
        self._rate: float | None = None
        self._spoke = False

    def finished(self, outcome: str) -> None:
        """Count one job that ended with `outcome` (any thread)."""
        with self._lock:
            self._outcomes[str(outcome)] += 1
            if outcome in DONE_OUTCOMES:
                self._done_ever += 1

    @property
    def done(self) -> int:
        """Images finished since the burst began."""
        with self._lock:
            return sum(n for outcome, n in self._outcomes.items() if outcome in DONE_OUTCOMES)

    @property
    def done_ever(self) -> int:
        """Images finished since this object was made (the `--once` bar counts these)."""
        with self._lock:
            return self._done_ever

    @property
    def active(self) -> bool:
        """Whether a burst is going on (the queue was non-empty at the last look)."""
        return self._started is not None

    def observe(self, queued: int) -> Line | None:
        """Given how many images wait or are being captioned now, return the line to log now,
        or None."""
        now = self._clock()
        if self._started is None:
            if queued <= 0:
                self._reset()  # jobs finished while idle belong to no burst
                self._idle_at = now
                return None
            # Jobs finished since the last idle look are this burst's first: it began then.
            began = self._idle_at if self._idle_at is not None and self.done else now
            self._started = self._last_at = began
            self._next_at = began + self.every
        if queued <= 0:
            line = self._final(now) if self._spoke else None
            self._reset()
            self._idle_at = now
            return line
        if now < self._next_at:
            return None
        # Keep the beat when a tick comes late, but never owe a string of lines at once.
        self._next_at = max(self._next_at + self.every, now + self.every / 2)
        done = self.done
        interval = now - self._last_at
        recent = (done - self._last_done) / interval if interval > 0 else 0.0
        if self._rate is not None:
            recent = SMOOTHING * recent + (1 - SMOOTHING) * self._rate
        self._rate = recent
        news = done != self._last_done or queued != self._last_queued
        self._last_at, self._last_done, self._last_queued = now, done, queued
        if not news:
            return None  # a stalled queue (API paused, retries waiting) says so once
        self._spoke = True
        return Line(
            "progress",
            {
                "queued": queued,
                "done": done,
                "rate": round(self._rate, 2),
                "eta_s": _eta(queued, self._rate),
                "elapsed_s": round(now - self._started, 1),
                "outcomes": self._counts(),
            },
        )

    def _final(self, now: float) -> Line:
        assert self._started is not None
        elapsed = now - self._started
        done = self.done
        return Line(
            "burst_done",
            {
                "done": done,
                "elapsed_s": round(elapsed, 1),
                "rate": round(done / elapsed, 2) if elapsed > 0 else None,
                "outcomes": self._counts(),
            },
        )

    def _counts(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._outcomes.items()))

    def _reset(self) -> None:
        with self._lock:
            self._outcomes.clear()
        self._started = None
        self._last_done = 0
        self._last_queued = -1
        self._rate = None
        self._spoke = False


def _eta(queued: int, rate: float | None) -> int | None:
    if rate is None or rate <= 0:
        return None  # nothing finished lately: no honest estimate
    return math.ceil(queued / rate)


class TerminalBar:
    """The progress bar of `run --once` on a terminal (tqdm), and the stream log lines go
    through while it shows: each line is written with `tqdm.write`, which clears the bar, writes
    the line and draws the bar again below it, so lines and bar never share a row."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._bar: Any = None

    # -- the stream (log.configure writes whole lines here) -------------------------------------

    def write(self, text: str) -> int:
        if self._bar is None:
            return self._stream.write(text)
        from tqdm import tqdm

        tqdm.write(text, file=self._stream, end="")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return bool(self._stream.isatty())

    # -- the bar --------------------------------------------------------------------------------

    def update(self, done: int, total: int) -> None:
        """Show `done` of `total` images (the bar appears with the first image to do)."""
        total = max(total, done)
        if self._bar is None:
            if total <= 0:
                return
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, file=self._stream, unit="img", desc="images", dynamic_ncols=True
            )
        if total != self._bar.total:
            self._bar.total = total
        # update() redraws at most every tqdm's mininterval (0.1 s): cheap per image.
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        """Draw the bar's final state and leave it on the terminal."""
        if self._bar is not None:
            self._bar.close()  # under tqdm's lock: a line written meanwhile waits for it
            self._bar = None
