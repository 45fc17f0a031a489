"""Delivers the alert outbox: one thread per target, retrying with backoff until delivered.

A target that is down only delays its own alerts. Its thread sends the oldest due alert first and
stops at the first failure, then waits for that alert's next try (exponential backoff with jitter
up to `delivery.backoff_max`), so an outage costs one request per backoff step, not one per alert.
An alert older than `delivery.max_age` is expired with an error log.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

from camwatch.alerts import DeliveryFailed, QuickRetry, post_webhook, send_notify
from camwatch.config import Config, NotifyConfig, WebhookConfig
from camwatch.errors import StateError
from camwatch.log import get_logger
from camwatch.sessions import settle_environment
from camwatch.store import OutboxRow, Store

log = get_logger(__name__)

_IDLE_WAIT = 30.0  # re-read the outbox this often even when nothing woke us


def backoff(attempts: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Given how many tries failed, return the wait before the next one: exponential from
    `initial`, capped at `maximum`, with jitter so many alerts do not retry in lockstep."""
    base = min(maximum, initial * (2 ** max(attempts - 1, 0)))
    return base * (0.5 + rng.random() / 2)


@dataclass(frozen=True)
class Target:
    """A place alerts go: a webhook or a notify target."""

    kind: str  # "webhook" | "notify"
    name: str
    webhook: WebhookConfig | None = None
    notify: NotifyConfig | None = None


def targets_of(config: Config) -> list[Target]:
    """Return every target a configuration defines."""
    return [Target("webhook", w.name, webhook=w) for w in config.webhooks] + [
        Target("notify", n.name, notify=n) for n in config.notify
    ]


class TargetWorker:
    """The thread that delivers one target's alerts."""

    def __init__(
        self,
        target: Target,
        store: Store,
        config: Config,
        on_delivered: Callable[[str, OutboxRow, Target], None],
        quick: QuickRetry,
    ) -> None:
        self.target = target
        self.store = store
        self.config = config
        self._on_delivered = on_delivered
        self._quick = quick
        self.wake = threading.Event()
        self.stop_event = threading.Event()
        self._rng = random.Random()
        self._session = requests.Session()
        self._session.mount("http://", HTTPAdapter(pool_maxsize=2))
        self._session.mount("https://", HTTPAdapter(pool_maxsize=2))
        if target.webhook is not None:
            settle_environment(self._session, target.webhook.url)
        self._thread = threading.Thread(
            target=self._run, name=f"deliver-{target.kind}-{target.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.wake.set()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._session.close()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                wait = self._deliver_due()
            except StateError as exc:
                log.error("outbox_unavailable", target=self.target.name, error=str(exc))
                wait = 5.0
            except Exception:
                log.exception("delivery_loop_failed", target=self.target.name)
                wait = 5.0
            if wait > 0:
                self.wake.wait(wait)
                self.wake.clear()

    def _deliver_due(self) -> float:
        """Deliver what is due; return how long to wait before looking again."""
        delivery = self.config.delivery
        while not self.stop_event.is_set():
            rows = self.store.due_alerts(self.target.kind, self.target.name)
            if not rows:
                break
            for row in rows:
                if self.stop_event.is_set():
                    return 0
                now = time.time()
                if now - row.created_at > delivery.max_age:
                    self.store.expire(row.id, f"undelivered after max_age {delivery.max_age:g}s")
                    log.error(
                        "alert_expired",
                        target=self.target.name,
                        event_id=row.event_id,
                        rule=row.rule,
                        camera=row.camera,
                        attempts=row.attempts,
                    )
                    continue
                try:
                    self._send(row)
                except DeliveryFailed as exc:
                    wait = backoff(
                        row.attempts + 1,
                        delivery.backoff_initial,
                        delivery.backoff_max,
                        self._rng,
                    )
                    self.store.postpone(row.id, time.time() + wait, str(exc))
                    log.warning(
                        "alert_delivery_failed",
                        target=self.target.name,
                        event_id=row.event_id,
                        rule=row.rule,
                        camera=row.camera,
                        attempts=row.attempts + 1,
                        retry_in=round(wait, 3),
                        error=str(exc),
                    )
                    return wait
                self.store.delivered(row.id)
                self._on_delivered(self.target.kind, row, self.target)
        nxt = self.store.next_alert_due(self.target.kind, self.target.name)
        if nxt is None:
            return _IDLE_WAIT
        return min(max(nxt - time.time(), 0.0), _IDLE_WAIT)

    def _send(self, row: OutboxRow) -> None:
        if self.target.webhook is not None:
            post_webhook(
                self._session,
                self.target.webhook,
                row.event_id,
                row.body,
                self.stop_event,
                self._quick,
            )
        elif self.target.notify is not None:
            send_notify(self.target.notify, row.body)


class Dispatcher:
    """Runs one TargetWorker per configured target."""

    def __init__(
        self,
        store: Store,
        on_delivered: Callable[[str, OutboxRow, Target], None],
    ) -> None:
        self.store = store
        self._on_delivered = on_delivered
        self._workers: dict[tuple[str, str], TargetWorker] = {}

    def sync(self, config: Config) -> None:
        """Deliver to exactly the targets of `config`; restart a target whose settings changed."""
        wanted = {(t.kind, t.name): t for t in targets_of(config)}
        quick = QuickRetry(
            attempts=3,
            initial=min(config.delivery.backoff_initial, 1.0),
            maximum=min(config.delivery.backoff_max, 5.0),
        )
        for key, worker in list(self._workers.items()):
            if wanted.get(key) != worker.target or worker.config.delivery != config.delivery:
                worker.stop()
                worker.join(5)
                del self._workers[key]
        for key, target in wanted.items():
            if key not in self._workers:
                worker = TargetWorker(target, self.store, config, self._on_delivered, quick)
                self._workers[key] = worker
                worker.start()
        for kind in ("webhook", "notify"):
            names = {name for (k, name) in wanted if k == kind}
            dropped = self.store.drop_alerts_for(kind, names)
            if dropped:
                log.warning("alerts_dropped_unknown_target", kind=kind, count=dropped)

    def wake(self) -> None:
        """Tell every target that new alerts may be due."""
        for worker in self._workers.values():
            worker.wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every target; undelivered alerts stay in the outbox."""
        for worker in self._workers.values():
            worker.stop()
        deadline = time.monotonic() + timeout
        for worker in self._workers.values():
            worker.join(max(deadline - time.monotonic(), 0.1))
        self._workers.clear()
