"""The gate in front of the caption API: a circuit breaker for outages, a pause for bad keys.

Closed: every worker may call the API. Open (after an image exhausted its retries on transient
errors): nobody calls until the open period ends, then one worker probes (half-open) while the
others wait; success closes the gate, failure opens it again for longer. Paused (401/403/402):
like open, but the period is `pause_probe`, and only success, a reload or a restart resumes.
The queue is kept throughout: images wait in the database instead of being marked failed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from camwatch.backoff import backoff
from camwatch.config import CaptionConfig
from camwatch.log import get_logger

log = get_logger(__name__)

OPEN_MAX_S = 30.0  # the longest wait between probes during an outage


class GateState(StrEnum):
    """Whether workers may call the caption API."""

    CLOSED = "closed"  # yes
    OPEN = "open"  # an outage: not until the open period ends, then one probe
    PAUSED = "paused"  # a bad key or no credits: one probe every pause_probe


class CaptionGate:
    """Decides which worker may call the caption API, and when."""

    def __init__(
        self,
        open_initial: float,
        open_max: float,
        pause_probe: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.open_initial = open_initial
        self.open_max = open_max
        self.pause_probe = pause_probe
        self._clock = clock
        self._cond = threading.Condition()
        self.state = GateState.CLOSED
        self.reason: str | None = None
        self._until = 0.0
        self._trips = 0
        self._probing = False

    @classmethod
    def for_config(cls, caption: CaptionConfig) -> CaptionGate:
        """Return a closed gate with the periods a caption configuration implies."""
        gate = cls(0.05, 0.05, caption.pause_probe)
        gate.tune(caption)
        return gate

    def tune(self, caption: CaptionConfig) -> None:
        """Take the periods of a (new) caption configuration: an outage opens the gate for
        `retry.backoff_max`, doubling, but never more than OPEN_MAX_S between probes (so an
        outage of N seconds delays captions by at most about N + 30 s); a pause probes every
        `pause_probe`."""
        self.open_max = min(max(caption.pause_probe, caption.retry.backoff_max), OPEN_MAX_S)
        self.open_initial = min(max(caption.retry.backoff_max, 0.05), self.open_max)
        self.pause_probe = caption.pause_probe

    def acquire(self, stop: threading.Event) -> bool | None:
        """Wait until this worker may call the API. Return True for a normal call, False for
        the one probe of a half-open gate, None if `stop` was set while waiting."""
        with self._cond:
            while not stop.is_set():
                if self.state == GateState.CLOSED:
                    return True
                now = self._clock()
                if not self._probing and now >= self._until:
                    self._probing = True
                    return False
                # Wake at the end of the open period, or now and then to notice `stop`.
                wait = self._until - now if not self._probing else 1.0
                self._cond.wait(min(max(wait, 0.01), 1.0))
            return None

    def try_acquire(self) -> bool | None:
        """Without waiting (a caller with somewhere else to go: a fallback provider): return
        True for a normal call, False for the one probe of a half-open gate, None if a call now
        would have to wait."""
        with self._cond:
            if self.state == GateState.CLOSED:
                return True
            if not self._probing and self._clock() >= self._until:
                self._probing = True
                return False
            return None

    def next_probe_in(self) -> float:
        """Return how long until the next probe is due (0 if the gate is closed or due now)."""
        with self._cond:
            if self.state == GateState.CLOSED:
                return 0.0
            return max(self._until - self._clock(), 0.0)

    def succeeded(self, probe: bool) -> bool:
        """Record a caption that came back: the API works. Return whether that ended an
        outage or a pause (the images waiting for it are due now)."""
        with self._cond:
            recovered = self.state != GateState.CLOSED
            if recovered:
                log.info("captioning_resumed", after=self.reason)
            self.state, self.reason, self._trips = GateState.CLOSED, None, 0
            if probe:
                self._probing = False
            self._cond.notify_all()
            return recovered

    def released(self, probe: bool) -> None:
        """Record that a probe ended without an answer either way (shutdown, unreadable file)."""
        if probe:
            with self._cond:
                self._probing = False
                self._cond.notify_all()

    def outage(self, reason: str, retry_after: float | None, probe: bool, **fields: Any) -> float:
        """Record that the API stayed unreachable through every retry: open the gate. Return
        how long it stays open. `fields` (the image that met the outage) go on the log line."""
        with self._cond:
            if self.state == GateState.PAUSED:
                if probe:
                    # The probe met an outage instead of the pausing answer: still paused, and
                    # the next probe is pause_probe away (not at once, which would loop).
                    self._probing = False
                    self._until = self._clock() + self.pause_probe
                    self._cond.notify_all()
                return max(self._until - self._clock(), 0.0)
            self._trips += 1
            period = backoff(self._trips, self.open_initial, self.open_max, jitter=0)
            if retry_after:
                period = max(period, retry_after)
            if self.state == GateState.CLOSED:
                log.error(
                    "caption_api_unavailable", reason=reason, pause_s=round(period, 3), **fields
                )
            self.state, self.reason = GateState.OPEN, reason
            self._until = self._clock() + period
            if probe:
                self._probing = False
            self._cond.notify_all()
            return period

    def pause(self, reason: str, probe: bool, **fields: Any) -> float:
        """Record an answer that every image would get (bad key, no credits): pause captioning
        and probe every `pause_probe`. Logs once per pause, with `fields` (the image that got
        the answer). Return the pause period."""
        with self._cond:
            if self.state != GateState.PAUSED:
                log.error(
                    "captioning_paused",
                    reason=reason,
                    probe_every_s=self.pause_probe,
                    hint="fix the key or the account; a reload (SIGHUP) or restart resumes",
                    **fields,
                )
            self.state, self.reason = GateState.PAUSED, reason
            self._until = self._clock() + self.pause_probe
            if probe:
                self._probing = False
            self._cond.notify_all()
            return self.pause_probe

    def resume(self) -> None:
        """Close the gate at once (after a reload: the operator may have fixed the cause)."""
        with self._cond:
            self.state, self.reason, self._trips, self._probing = GateState.CLOSED, None, 0, False
            self._cond.notify_all()
