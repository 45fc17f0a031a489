"""What captioning may spend: requests per minute, all workers together, and tokens per local day.

`caption.max_per_minute` is a sliding window: no 60 seconds ever hold more than that many requests
(a provider's rate limit counts the same way), and a burst up to it goes at once.
`caption.daily_tokens` is counted in the state database per local day (`timezone`); once the
day's tokens reach it, captioning pauses until the next local midnight, the queue is kept, and
`camwatch.budget_exhausted` goes to every target once per day. Credits exhausted (402) pauses
through the gate (gate.py); its `camwatch.credits_exhausted` alert is also sent from here, once
per pause.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable

from camwatch import localtime
from camwatch.alerts import every_target, iso_utc, new_event_id
from camwatch.config import Config
from camwatch.log import get_logger
from camwatch.store import AlertCandidate, Store

log = get_logger(__name__)

BUDGET_EXHAUSTED = "camwatch.budget_exhausted"
CREDITS_EXHAUSTED = "camwatch.credits_exhausted"
WINDOW_S = 60.0


class RequestPace:
    """At most `per_minute` requests in any 60 seconds; None: no limit."""

    def __init__(
        self, per_minute: int | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._per_minute = per_minute
        self._sent: deque[float] = deque()

    def set_rate(self, per_minute: int | None) -> None:
        """Take a (new) limit; waiting workers see it at once."""
        with self._cond:
            self._per_minute = per_minute
            self._cond.notify_all()

    def wait_time(self) -> float:
        """Return how long the next request would have to wait now (0: it may go)."""
        with self._cond:
            return self._wait_locked(self._clock())

    def _wait_locked(self, now: float) -> float:
        limit = self._per_minute
        if limit is None:
            return 0.0
        while self._sent and now - self._sent[0] >= WINDOW_S:
            self._sent.popleft()
        if len(self._sent) < limit:
            return 0.0
        return WINDOW_S - (now - self._sent[-limit])

    def take(self, stop: threading.Event) -> bool:
        """Wait until a request may go and count it. Return False if `stop` was set first."""
        with self._cond:
            while not stop.is_set():
                now = self._clock()
                wait = self._wait_locked(now)
                if wait <= 0:
                    self._sent.append(now)
                    return True
                self._cond.wait(min(wait, 1.0))  # and now and then, to notice `stop`
            return False


def local_day(now: float, zone: str | None) -> str:
    """Return the local date (YYYY-MM-DD) of a wall-clock time in `zone` (None: the system's)."""
    return localtime.local_day(now, localtime.zone_named(zone))


def next_midnight(now: float, zone: str | None) -> float:
    """Return the wall-clock time of the next local midnight in `zone` after `now`."""
    return localtime.next_midnight(now, localtime.zone_named(zone))


class Costs:
    """The daily token budget and the alerts of the cost pauses; shared by every worker."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        on_alert: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._on_alert = on_alert  # wakes the dispatcher: the alert goes now, not at its next poll
        self._lock = threading.Lock()
        self.paused_until: float | None = None  # while the day's budget is spent
        # (day, tokens) as this process knows them: the database's count, plus each answer the
        # moment it came. The database has an answer's tokens only once its caption is
        # recorded, which is after the request slot is freed: a worker taking that slot must
        # see them, or every worker that waited sends one request past the budget.
        self._known: tuple[str, int] = ("", 0)

    def today(self, config: Config) -> str:
        """Return today's local date in the configuration's time zone."""
        return local_day(self._clock(), config.timezone)

    def blocked_until(self, config: Config) -> float | None:
        """Return when captioning may go on if today's tokens reached `daily_tokens` (the next
        local midnight), else None. The first time in a day, announce it."""
        limit = config.caption.daily_tokens
        if limit is None:
            self.paused_until = None
            return None
        now = self._clock()
        day = local_day(now, config.timezone)
        spent = self._store.tokens_on(day)
        with self._lock:
            known_day, known = self._known
            if known_day == day:
                spent = max(spent, known)  # answers whose captions are not recorded yet
            self._known = (day, spent)
        if spent < limit:
            if self.paused_until is not None:
                self.paused_until = None
                # The images put off until midnight go now (a new day, or a raised limit).
                self._store.due_now()
                log.info("captioning_resumed", after="daily token budget", day=day)
            return None
        until = next_midnight(now, config.timezone)
        with self._lock:
            first = self.paused_until is None
            self.paused_until = until
        if first:
            fields = {
                "day": day,
                "daily_tokens": limit,
                "spent": spent,
                "resumes_at": iso_utc(until),
            }
            alert = cost_alert(config, BUDGET_EXHAUSTED, fields, now)
            if self._store.announce_pause("budget", day, alert):
                self._on_alert()
                log.error(
                    "budget_exhausted",
                    **fields,
                    hint="captioning resumes at local midnight; raise caption.daily_tokens and"
                    " reload (SIGHUP) to resume now",
                )
        return until

    def answered(self, config: Config, tokens: int) -> None:
        """Count an answer's tokens now, before its caption is recorded (see `spent_up`)."""
        day = self.today(config)
        with self._lock:
            known_day, known = self._known
            self._known = (day, (known if known_day == day else 0) + tokens)

    def spent_up(self, config: Config) -> bool:
        """Return whether today's tokens, the answers not yet recorded included, reached
        `daily_tokens`; from memory, so that it can be asked right before each request."""
        limit = config.caption.daily_tokens
        if limit is None:
            return False
        day = self.today(config)
        with self._lock:
            known_day, known = self._known
        return known_day == day and known >= limit

    def credits_exhausted(self, config: Config, reason: str) -> None:
        """Announce a pause for exhausted credits, once per pause (across restarts)."""
        now = self._clock()
        alert = cost_alert(config, CREDITS_EXHAUSTED, {"reason": reason}, now)
        if self._store.announce_pause("credits", "current", alert):
            self._on_alert()
            log.error("credits_exhausted", reason=reason, event_id=alert.event_id)

    def resumed(self) -> None:
        """Captioning works again: the next credits pause is a new one."""
        self._store.end_pauses("credits")


def cost_alert(config: Config, event: str, fields: dict[str, object], now: float) -> AlertCandidate:
    """Return the alert of a cost pause for every target: its webhook body (`id`, `event`,
    `detected_at` and `fields`) and the message people get."""
    event_id = new_event_id()
    body = json.dumps(
        {"id": event_id, "event": event, **fields, "detected_at": iso_utc(now)},
        ensure_ascii=False,
    )
    if event == BUDGET_EXHAUSTED:
        title = "camwatch: daily token budget spent"
        text = (
            f"{fields.get('spent')} of {fields.get('daily_tokens')} tokens used on"
            f" {fields.get('day')}; captioning pauses until {fields.get('resumes_at')}."
            " Images are kept and captioned then."
        )
    else:
        title = "camwatch: caption API credits exhausted"
        text = (
            f"The caption API refused for lack of credits ({fields.get('reason')}); captioning"
            " is paused and images are kept until the account is topped up."
        )
    message = json.dumps({"title": title, "body": text, "image": None})
    targets, messages = every_target(config, message)
    return AlertCandidate(event_id, event, "", 0.0, targets, body, messages)
