"""The Dispatcher delivering the outbox to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from camwatch import __version__
from camwatch.alerts import Alert, alert_body, new_event_id
from camwatch.config import Config, parse_config
from camwatch.dispatch import Dispatcher, TargetWorker
from camwatch.senders import Sender, TargetKind
from camwatch.senders.webhook import post_webhook
from camwatch.sessions import deadline_session
from camwatch.store import AlertCandidate, NewImage, OutboxRow, Store
from camwatch.testing import WebhookReceiver

pytestmark = pytest.mark.usefixtures("no_thread_leaks")

Poll = Callable[..., None]
SECRET = "s3cret-for-tests"


@pytest.fixture
def receivers() -> Iterator[Callable[..., WebhookReceiver]]:
    """Return a function starting a `WebhookReceiver(...)`; every one is stopped after the
    test."""
    made: list[WebhookReceiver] = []

    def make(**kw: Any) -> WebhookReceiver:
        receiver = WebhookReceiver(**kw)
        made.append(receiver)
        receiver.start()
        return receiver

    yield make
    for receiver in made:
        receiver.stop()


class Delivered:
    """The dispatcher's `on_delivered`: (kind, target, event id) of each delivery."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[tuple[str, str, str]] = []

    def __call__(self, row: OutboxRow, sender: Sender) -> None:
        with self._lock:
            self.items.append((str(sender.kind), sender.name, row.event_id))

    def event_ids(self) -> list[str]:
        with self._lock:
            return [event_id for _, _, event_id in self.items]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def open_store(state_dir: Path) -> Iterator[Callable[[], Store]]:
    """Return a function opening the Store in `state_dir`; each one is closed after the test."""
    opened: list[Store] = []

    def make() -> Store:
        opened.append(Store(state_dir))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def dispatchers() -> Iterator[Callable[[Store, Delivered], Dispatcher]]:
    """Return a function making a Dispatcher; each one is stopped after the test."""
    made: list[Dispatcher] = []

    def make(store: Store, delivered: Delivered) -> Dispatcher:
        made.append(Dispatcher(store, delivered))
        return made[-1]

    yield make
    for dispatcher in made:
        dispatcher.stop()


@pytest.fixture
def cams(tmp_path: Path) -> Path:
    folder = tmp_path / "cams" / "front"
    folder.mkdir(parents=True)
    return folder


def config(cams: Path, hooks: dict[str, int], **delivery: str) -> Config:
    """Return a configuration with one webhook per (name, port) in `hooks`, short backoffs."""
    return parse_config(
        {
            "cameras": [{"name": "front", "path": str(cams)}],
            "webhooks": [
                {
                    "name": name,
                    "url": f"http://127.0.0.1:{port}/hook/{name}",
                    "secret": SECRET,
                    "headers": {"X-Team": "night-shift"},
                    "timeout": "5s",
                }
                for name, port in hooks.items()
            ],
            "delivery": {"backoff_initial": "50ms", "backoff_max": "200ms", **delivery},
        },
        {},
    )


_counter = iter(range(10**6))


def queue_alert(store: Store, targets: tuple[str, ...] = ("ops",)) -> tuple[str, str]:
    """Put one alert for `targets` in the outbox the way the pipeline does. Return its event id
    and body."""
    n = next(_counter)
    path = f"/cams/front/{n}.jpg"
    event_id = new_event_id()
    body = alert_body(
        Alert(
            event_id,
            "person-down",
            "critical",
            "front",
            path,
            "ab" * 32,
            "A person lying on the ground — not moving.",
            ("lying on the ground",),
            1795435201.512,
            1795435204.02,
        )
    )
    store.add_pending([NewImage("front", path, f"{n}.jpg", 1, n, time.time())])
    job = store.claim()
    assert job is not None
    candidate = AlertCandidate(
        event_id, "person-down", "front", 0.0, [("webhook", t) for t in targets], body
    )
    store.complete(job.id, "cd" * 32, 1, n, "caption", (1, 1, 2), [candidate])
    return event_id, body


def stable(headers: dict[str, str]) -> dict[str, str]:
    """Return the headers every retry repeats: all but the Standard Webhooks timestamp and
    signature, which are made anew for each attempt."""
    fresh = {"webhook-timestamp", "webhook-signature"}
    return {k: v for k, v in headers.items() if k.lower() not in fresh}


def signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in list(logs) if e["event"] == name]


def test_delivery_sends_the_exact_body_and_signed_headers(
    receivers: Callable[..., WebhookReceiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    receiver = receivers()
    store = open_store()
    event_id, body = queue_alert(store)
    delivered = Delivered()
    dispatchers(store, delivered).sync(config(cams, {"ops": receiver.port}))
    poll(lambda: delivered.items, message="the delivery")
    assert delivered.items == [("webhook", "ops", event_id)]
    (request,) = receiver.received
    assert request.path == "/hook/ops"
    assert request.body == body.encode("utf-8")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-camwatch-event-id"] == event_id
    assert request.headers["x-camwatch-signature"] == signature(request.body)
    assert request.headers["x-team"] == "night-shift"
    assert request.headers["user-agent"] == f"camwatch/{__version__}"
    assert store.counts()["alerts_pending"] == 0


def test_alerts_are_delivered_oldest_first(
    receivers: Callable[..., WebhookReceiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    receiver = receivers()
    store = open_store()
    ids = [queue_alert(store)[0] for _ in range(5)]
    delivered = Delivered()
    dispatcher = dispatchers(store, delivered)
    dispatcher.sync(config(cams, {"ops": receiver.port}))
    poll(lambda: len(delivered.items) == 5, message="five deliveries")
    later, _ = queue_alert(store)
    dispatcher.wake()  # what the pipeline does after writing alerts
    poll(lambda: len(delivered.items) == 6, message="the alert queued later")
    assert [r.headers["x-camwatch-event-id"] for r in receiver.received] == [*ids, later]


def test_retries_resend_the_same_id_and_bytes(
    receivers: Callable[..., WebhookReceiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    # More failures than the quick in-call retries (3): the outbox schedule takes over too.
    receiver = receivers()
    for status in (500, 503, 500, 502):
        receiver.fail_next(1, status)
    store = open_store()
    event_id, body = queue_alert(store)
    delivered = Delivered()
    with capture_logs() as logs:
        dispatchers(store, delivered).sync(config(cams, {"ops": receiver.port}))
        poll(lambda: delivered.items, message="delivery after the errors")
    requests = receiver.received
    assert len(requests) == 5
    assert {r.body for r in requests} == {body.encode()}
    assert all(stable(r.headers) == stable(requests[0].headers) for r in requests)
    assert requests[0].headers["x-camwatch-event-id"] == event_id
    (failed,) = events(logs, "alert_delivery_failed")
    assert failed["event_id"] == event_id
    assert failed["error"] == "HTTP 500 from webhook 'ops'"
    assert delivered.event_ids() == [event_id]


def test_receiver_down_then_up(
    receivers: Callable[..., WebhookReceiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    receiver = receivers()
    receiver.go_down()  # keeps its port, bound but not listening: connections are refused
    store = open_store()
    event_id, body = queue_alert(store)
    delivered = Delivered()
    with capture_logs() as logs:
        dispatchers(store, delivered).sync(config(cams, {"ops": receiver.port}))
        poll(lambda: events(logs, "alert_delivery_failed"), message="a refused delivery")
    failed = events(logs, "alert_delivery_failed")[0]
    assert (failed["failure"], failed["address"]) == ("refused", f"127.0.0.1:{receiver.port}")
    assert delivered.items == []
    assert receiver.count == 0
    receiver.come_up()
    poll(lambda: delivered.items, message="delivery once the receiver is up")
    (request,) = receiver.received
    assert request.headers["x-camwatch-event-id"] == event_id
    assert request.body == body.encode()


def test_an_alert_older_than_max_age_expires(
    receivers: Callable[..., WebhookReceiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    receiver = receivers()
    receiver.set_outage(500)
    store = open_store()
    event_id, _ = queue_alert(store)
    delivered = Delivered()
    with capture_logs() as logs:
        dispatchers(store, delivered).sync(config(cams, {"ops": receiver.port}, max_age="300ms"))
        poll(lambda: events(logs, "alert_expired"), message="the alert to expire")
    (expired,) = events(logs, "alert_expired")
    assert expired["event_id"] == event_id
    assert expired["log_level"] == "error"
    assert store.counts()["alerts_pending"] == 0
    assert delivered.items == []


def test_delivered_alerts_are_not_sent_again_after_a_restart(
    receivers: Callable[..., WebhookReceiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    receiver = receivers()
    conf = config(cams, {"ops": receiver.port})
    store = open_store()
    first, _ = queue_alert(store)
    delivered = Delivered()
    dispatcher = dispatchers(store, delivered)
    dispatcher.sync(conf)
    poll(lambda: delivered.items, message="the first delivery")
    dispatcher.stop()
    store.close()

    store = open_store()
    second, _ = queue_alert(store)
    dispatchers(store, delivered).sync(conf)
    poll(lambda: len(delivered.items) == 2, message="the second delivery")
    assert [r.headers["x-camwatch-event-id"] for r in receiver.received] == [first, second]


def test_an_undelivered_alert_survives_a_restart_with_its_id_and_bytes(
    receivers: Callable[..., WebhookReceiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    receiver = receivers()
    receiver.set_outage(503)
    conf = config(cams, {"ops": receiver.port})
    store = open_store()
    event_id, body = queue_alert(store)
    delivered = Delivered()
    dispatcher = dispatchers(store, delivered)
    dispatcher.sync(conf)
    poll(lambda: receiver.count >= 3, message="failed attempts")
    dispatcher.stop()
    store.close()
    before = receiver.count

    receiver.set_outage(None)
    store = open_store()
    dispatchers(store, delivered).sync(conf)
    poll(lambda: delivered.items, message="delivery after the restart")
    requests = receiver.received
    assert len(requests) > before
    assert {r.body for r in requests} == {body.encode()}
    assert all(stable(r.headers) == stable(requests[0].headers) for r in requests)
    assert delivered.event_ids() == [event_id]


def test_a_target_that_is_down_does_not_delay_another(
    receivers: Callable[..., WebhookReceiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    down = receivers()
    down.set_outage(500)
    up = receivers()
    store = open_store()
    event_id, _ = queue_alert(store, targets=("down", "up"))
    delivered = Delivered()
    dispatchers(store, delivered).sync(config(cams, {"down": down.port, "up": up.port}))
    poll(lambda: delivered.items, message="delivery to the healthy target")
    assert delivered.items == [("webhook", "up", event_id)]
    assert [r.path for r in up.received] == ["/hook/up"]
    assert store.counts()["alerts_pending"] == 1


def test_sync_drops_alerts_for_targets_no_longer_configured(
    receivers: Callable[..., WebhookReceiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    receiver = receivers()
    store = open_store()
    event_id, _ = queue_alert(store, targets=("ops", "removed"))
    delivered = Delivered()
    with capture_logs() as logs:
        dispatchers(store, delivered).sync(config(cams, {"ops": receiver.port}))
        poll(lambda: delivered.items, message="delivery to the remaining target")
    assert delivered.items == [("webhook", "ops", event_id)]
    assert store.counts()["alerts_pending"] == 0
    (dropped,) = events(logs, "alerts_dropped_unknown_target")
    assert dropped["count"] == 1


def test_stop_interrupts_a_retrying_target(
    receivers: Callable[..., WebhookReceiver],
    open_store: Callable[[], Store],
    cams: Path,
    poll: Poll,
) -> None:
    receiver = receivers()
    receiver.set_outage(500)
    store = open_store()
    queue_alert(store)
    dispatcher = Dispatcher(store, Delivered())
    # Long backoffs: the worker is asleep in a retry wait when it is told to stop.
    dispatcher.sync(config(cams, {"ops": receiver.port}, backoff_initial="1h", backoff_max="1h"))
    poll(lambda: receiver.received, message="a first attempt")
    dispatcher.stop(timeout=5)
    worker_threads = [t for t in threading.enumerate() if t.name.startswith("deliver-")]
    assert worker_threads == []
    assert store.counts()["alerts_pending"] == 1  # kept for the next start


def test_an_alert_refused_for_good_is_dead_lettered_and_retried_on_request(
    receivers: Callable[..., WebhookReceiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    receiver = receivers()
    receiver.fail_next(1, 410)  # "gone": retrying for a week would change nothing
    store = open_store()
    gone, _ = queue_alert(store)
    after, _ = queue_alert(store)
    delivered = Delivered()
    dispatcher = dispatchers(store, delivered)
    with capture_logs() as logs:
        dispatcher.sync(config(cams, {"ops": receiver.port}))
        poll(lambda: delivered.event_ids() == [after], message="the next alert delivered")
    (dead,) = events(logs, "alert_dead_lettered")
    assert (dead["event_id"], dead["error"]) == (gone, "HTTP 410 from webhook 'ops'")
    assert len(receiver.received) == 2  # the refused one was sent once, not retried
    assert store.counts()["alerts_dead"] == 1
    assert store.retry_dead_letters() == 1  # what `camwatch retry --alerts` does
    dispatcher.wake()
    poll(lambda: delivered.event_ids() == [after, gone], message="the dead letter, retried")


def test_one_failing_alert_does_not_hold_back_the_alerts_behind_it(
    receivers: Callable[..., WebhookReceiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    receiver = receivers()
    receiver.fail_next(3, 500)  # every quick try of the first alert, then the receiver is fine
    store = open_store()
    first, _ = queue_alert(store)
    behind = [queue_alert(store)[0] for _ in range(3)]
    delivered = Delivered()
    # The first alert's next try is 15 to 30 s away: the others must not wait for it.
    dispatchers(store, delivered).sync(config(cams, {"ops": receiver.port}, backoff_initial="30s"))
    poll(lambda: delivered.event_ids() == behind, timeout=10, message="the alerts behind it")
    assert first not in delivered.event_ids()


def test_a_redirect_is_never_followed(
    receivers: Callable[..., WebhookReceiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    elsewhere = receivers()
    receiver = receivers()
    # A 307 would re-POST the body, signature and headers to another host; a 302 would turn the
    # POST into a GET whose 2xx counted as delivered.
    target = f"http://127.0.0.1:{elsewhere.port}/collect?token=t0ps3cret"
    for status in (307, 302, 302):
        receiver.fail_next(1, status, headers={"Location": target})
    store = open_store()
    event_id, _ = queue_alert(store)
    delivered = Delivered()
    with capture_logs() as logs:
        dispatchers(store, delivered).sync(config(cams, {"ops": receiver.port}))
        poll(lambda: events(logs, "alert_delivery_failed"), message="the refused redirects")
    assert elsewhere.received == []
    (failed,) = events(logs, "alert_delivery_failed")
    assert f"a redirect to http://127.0.0.1:{elsewhere.port}, not followed" in failed["error"]
    assert "t0ps3cret" not in str(logs)
    poll(lambda: delivered.event_ids() == [event_id], message="delivery to the webhook itself")


def test_a_redirect_to_a_broken_location_is_an_ordinary_failure(
    receivers: Callable[..., WebhookReceiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    receiver = receivers()
    # No URL parser takes this port: the message still names the host, and the sender does not
    # crash over it.
    for _ in range(3):
        receiver.fail_next(1, 302, headers={"Location": "http://h.example:99999/x?token=t0ps3cret"})
    store = open_store()
    event_id, _ = queue_alert(store)
    delivered = Delivered()
    with capture_logs() as logs:
        dispatchers(store, delivered).sync(config(cams, {"ops": receiver.port}))
        poll(lambda: events(logs, "alert_delivery_failed"), message="the refused redirects")
    assert events(logs, "alert_send_crashed") == []
    (failed,) = events(logs, "alert_delivery_failed")
    assert "a redirect to http://h.example, not followed" in failed["error"]
    assert "t0ps3cret" not in str(logs)
    poll(lambda: delivered.event_ids() == [event_id], message="delivery to the webhook itself")


def test_a_huge_answer_is_not_read_whole(
    receivers: Callable[..., WebhookReceiver], cams: Path
) -> None:
    receiver = receivers()
    receiver.fail_next(1, 200, body=b"x" * (20 << 20))  # a 20 MB answer to a webhook POST
    hook = config(cams, {"ops": receiver.port}).webhooks[0]
    with deadline_session(pool_maxsize=1) as session:
        tracemalloc.start()
        try:
            status = post_webhook(session, hook, "e1", "{}", threading.Event())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert status == 200
    assert peak < 2 << 20  # a few kB read, not 20 MB


def test_a_sender_that_crashes_is_backed_off_like_any_failure(
    open_store: Callable[[], Store], cams: Path
) -> None:
    class Crashing:
        kind = TargetKind.WEBHOOK
        name = "ops"
        settings = None

        def send(self, event_id: str, stored: str) -> None:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "a hostile Location header")

        def close(self) -> None:
            pass

    store = open_store()
    queue_alert(store)
    delivery = config(cams, {"ops": 1}, backoff_initial="10s", backoff_max="20s").delivery
    worker = TargetWorker(Crashing(), store, delivery, lambda row, sender: None)
    with capture_logs() as logs:
        wait = worker.deliver_due()
    assert wait >= 5.0  # the alert's own backoff (10 s, jittered), not a busy retry
    (failed,) = events(logs, "alert_delivery_failed")
    assert failed["error"] == "unexpected failure (UnicodeDecodeError)"
    assert store.due_alerts("webhook", "ops") == []  # postponed
