"""Delivers the alert outbox: one thread per target, retrying with backoff until delivered.

Each target is a Sender (camwatch/senders/); this module knows nothing of webhooks or Apprise. A
target that is down only delays its own alerts: its thread sends the oldest due alert first and,
after a failure, tries one more; if that fails too the target is down, and the thread waits for
the next try (exponential backoff with jitter up to `delivery.backoff_max`), so an outage costs
two requests per backoff step, not one per alert, while one alert that fails on its own does not
hold back the alerts behind it. An alert the target refuses for good goes to the dead letters
with the reason; one older than `delivery.max_age` is expired with an error log. Each line about
an alert names its target (`target`, `kind`) and, for a failure, what the sender said of it
(`failure`, `reason`, `address`, `url`: see DeliveryError), never a credential.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from camwatch.backoff import backoff
from camwatch.config import Config, DeliveryConfig
from camwatch.errors import DeliveryFailed, DeliveryRefused, StateError
from camwatch.log import get_logger
from camwatch.metrics import Metrics
from camwatch.senders import Sender, TargetKind, senders_for
from camwatch.store import OutboxRow, Store

log = get_logger(__name__)

_IDLE_WAIT = 30.0  # re-read the outbox this often even when nothing woke us
_FAILURES_PER_ROUND = 2  # consecutive failures after which a target counts as down

OnDelivered = Callable[[OutboxRow, Sender], None]


class TargetWorker:
    """The thread that delivers one target's alerts."""

    def __init__(
        self,
        sender: Sender,
        store: Store,
        delivery: DeliveryConfig,
        on_delivered: OnDelivered,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.sender = sender
        self.metrics = metrics if metrics is not None else Metrics()
        self.store = store
        self.delivery = delivery
        self._on_delivered = on_delivered
        self._clock = clock
        self.wake = threading.Event()
        self.stop_event = threading.Event()
        self._rng = random.Random()
        self._thread = threading.Thread(
            target=self._run, name=f"deliver-{sender.kind}-{sender.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.wake.set()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.sender.close()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                wait = self.deliver_due()
            except StateError as exc:
                log.error("outbox_unavailable", target=self.sender.name, error=str(exc))
                wait = 5.0
            except Exception:
                log.exception("delivery_loop_failed", target=self.sender.name)
                wait = 5.0
            if wait > 0:
                self.wake.wait(wait)
                self.wake.clear()

    def deliver_due(self) -> float:
        """Deliver what is due now; return how long to wait before looking again."""
        kind, name = self.sender.kind, self.sender.name
        failures = 0
        while not self.stop_event.is_set():
            rows = self.store.due_alerts(kind, name)
            if not rows:
                break
            for row in rows:
                if self.stop_event.is_set():
                    return 0
                wait = self._deliver(row)
                if wait is None:
                    failures = 0
                    continue
                failures += 1
                if failures >= _FAILURES_PER_ROUND or len(rows) == 1:
                    return wait
            if failures:
                break  # every row of this batch was tried once; the failed ones wait
        nxt = self.store.next_alert_due(kind, name)
        if nxt is None:
            return _IDLE_WAIT
        return min(max(nxt - self._clock(), 0.0), _IDLE_WAIT)

    def _deliver(self, row: OutboxRow) -> float | None:
        """Try one alert. Return None if it is settled (delivered, dead or expired), else the
        wait before its next try."""
        alog = log.bind(
            target=self.sender.name,
            kind=str(self.sender.kind),
            event_id=row.event_id,
            rule=row.rule,
            camera=row.camera,
        )
        if self._clock() - row.created_at > self.delivery.max_age:
            self.store.expire(row.id, f"undelivered after max_age {self.delivery.max_age:g}s")
            self.metrics.delivery(self.sender.name, "dropped")
            alog.error("alert_expired", attempts=row.attempts)
            return None
        try:
            try:
                self.sender.send(row.event_id, row.body)
            except (DeliveryFailed, DeliveryRefused):
                raise
            except Exception as exc:
                # A sender or library bug, or an answer no library expected: a failed try like
                # any other (backed off), not a loop that retries every few seconds.
                alog.exception("alert_send_crashed")
                raise DeliveryFailed(f"unexpected failure ({type(exc).__name__})") from None
        except DeliveryRefused as exc:
            self.store.dead_letter(row.id, str(exc))
            self.metrics.delivery(self.sender.name, "dropped")
            alog.error(
                "alert_dead_lettered",
                attempts=row.attempts + 1,
                error=str(exc),
                hint="fix the target, then `camwatch retry --alerts`",
                **exc.fields(),
            )
            return None
        except DeliveryFailed as exc:
            delivery = self.delivery
            wait = backoff(
                row.attempts + 1, delivery.backoff_initial, delivery.backoff_max, rng=self._rng
            )
            self.store.postpone(row.id, self._clock() + wait, str(exc))
            self.metrics.delivery(self.sender.name, "failed")
            alog.warning(
                "alert_delivery_failed",
                attempts=row.attempts + 1,
                retry_in=round(wait, 3),
                error=str(exc),
                **exc.fields(),
            )
            return wait
        self.store.delivered(row.id)
        self.metrics.delivery(self.sender.name, "delivered")
        alog.info(
            "alert_delivered",
            attempts=row.attempts + 1,
            outcome="delivered",
        )
        self._on_delivered(row, self.sender)
        return None


class Dispatcher:
    """Runs one TargetWorker per configured target."""

    def __init__(
        self,
        store: Store,
        on_delivered: OnDelivered = lambda row, sender: None,
        metrics: Metrics | None = None,
        mqtt_link: Callable[[], Any] = lambda: None,
    ) -> None:
        self.store = store
        self.metrics = metrics if metrics is not None else Metrics()
        self._on_delivered = on_delivered
        self._mqtt_link = mqtt_link  # the daemon's MQTT connection, for the mqtt target
        self._workers: dict[tuple[str, str], TargetWorker] = {}
        self._stop = threading.Event()  # interrupts the senders' in-call retries at shutdown

    def sync(self, config: Config) -> None:
        """Deliver to exactly the targets of `config`; restart a target whose settings changed."""
        wanted = {(s.kind, s.name): s for s in senders_for(config, self._stop, self._mqtt_link)}
        for key, worker in list(self._workers.items()):
            new = wanted.get(key)
            if (
                new is None
                or new.settings != worker.sender.settings
                or worker.delivery != config.delivery
            ):
                worker.stop()
                worker.join(5)
                del self._workers[key]
        for key, sender in wanted.items():
            if key in self._workers:
                sender.close()  # the running one is the same target
                continue
            worker = TargetWorker(
                sender, self.store, config.delivery, self._on_delivered, metrics=self.metrics
            )
            self._workers[key] = worker
            worker.start()
        for kind in TargetKind:
            names = {name for (k, name) in wanted if k == kind}
            dropped = self.store.drop_alerts_for(kind, names)
            if dropped:
                log.warning("alerts_dropped_unknown_target", kind=str(kind), count=dropped)

    def wake(self) -> None:
        """Tell every target that new alerts may be due."""
        for worker in self._workers.values():
            worker.wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every target; undelivered alerts stay in the outbox."""
        self._stop.set()
        for worker in self._workers.values():
            worker.stop()
        deadline = time.monotonic() + timeout
        for worker in self._workers.values():
            worker.join(max(deadline - time.monotonic(), 0.1))
        self._workers.clear()
