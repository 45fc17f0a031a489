"""The Dispatcher delivering the outbox to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from camwatch import __version__
from camwatch.alerts import alert_body, new_event_id
from camwatch.config import Config, parse_config
from camwatch.dispatch import Dispatcher, Target
from camwatch.store import AlertCandidate, NewImage, OutboxRow, Store

pytestmark = pytest.mark.usefixtures("no_thread_leaks")

Poll = Callable[..., None]
SECRET = "s3cret-for-tests"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class Receiver:
    """A webhook receiver: records every POST and answers with scripted statuses (then
    `default`)."""

    def __init__(self, port: int = 0, statuses: tuple[int, ...] = (), default: int = 200) -> None:
        self._lock = threading.Lock()
        self._statuses = deque(statuses)
        self.default = default
        self.requests: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._record(Received(self.path, headers, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="receiver"
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def _record(self, request: Received) -> int:
        with self._lock:
            self.requests.append(request)
            return self._statuses.popleft() if self._statuses else self.default

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    """Return `Receiver(...)`; every receiver made is closed after the test."""
    made: list[Receiver] = []

    def make(**kw: Any) -> Receiver:
        made.append(Receiver(**kw))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


class Delivered:
    """The dispatcher's `on_delivered`: (kind, target, event id) of each delivery."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[tuple[str, str, str]] = []

    def __call__(self, kind: str, row: OutboxRow, target: Target) -> None:
        with self._lock:
            self.items.append((kind, target.name, row.event_id))

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
        event_id,
        "person-down",
        "critical",
        "front",
        path,
        "ab" * 32,
        "A person lying on the ground — not moving.",
        ["lying on the ground"],
        1795435201.512,
        1795435204.02,
    )
    store.add_pending([NewImage("front", path, f"{n}.jpg", 1, n, time.time())])
    job = store.claim()
    assert job is not None
    candidate = AlertCandidate(
        event_id, "person-down", "front", 0.0, [("webhook", t) for t in targets], body
    )
    store.complete(job.id, "cd" * 32, 1, n, "caption", (1, 1, 2), [candidate])
    return event_id, body


def signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in list(logs) if e["event"] == name]


def test_delivery_sends_the_exact_body_and_signed_headers(
    receivers: Callable[..., Receiver],
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
    (request,) = receiver.received()
    assert request.path == "/hook/ops"
    assert request.body == body.encode("utf-8")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-camwatch-event-id"] == event_id
    assert request.headers["x-camwatch-signature"] == signature(request.body)
    assert request.headers["x-team"] == "night-shift"
    assert request.headers["user-agent"] == f"camwatch/{__version__}"
    assert store.counts()["alerts_pending"] == 0


def test_alerts_are_delivered_oldest_first(
    receivers: Callable[..., Receiver],
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
    assert [r.headers["x-camwatch-event-id"] for r in receiver.received()] == [*ids, later]


def test_retries_resend_the_same_id_and_bytes(
    receivers: Callable[..., Receiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    # More failures than the quick in-call retries (3): the outbox schedule takes over too.
    receiver = receivers(statuses=(500, 503, 500, 502))
    store = open_store()
    event_id, body = queue_alert(store)
    delivered = Delivered()
    with capture_logs() as logs:
        dispatchers(store, delivered).sync(config(cams, {"ops": receiver.port}))
        poll(lambda: delivered.items, message="delivery after the errors")
    requests = receiver.received()
    assert len(requests) == 5
    assert {r.body for r in requests} == {body.encode()}
    assert all(r.headers == requests[0].headers for r in requests)
    assert requests[0].headers["x-camwatch-event-id"] == event_id
    (failed,) = events(logs, "alert_delivery_failed")
    assert failed["event_id"] == event_id
    assert failed["error"] == "HTTP 500 from webhook 'ops'"
    assert delivered.event_ids() == [event_id]


def test_receiver_down_then_up(
    receivers: Callable[..., Receiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    # A bound socket that does not listen: connections to its port are refused.
    placeholder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        store = open_store()
        event_id, body = queue_alert(store)
        delivered = Delivered()
        with capture_logs() as logs:
            dispatchers(store, delivered).sync(config(cams, {"ops": port}))
            poll(lambda: events(logs, "alert_delivery_failed"), message="a refused delivery")
    finally:
        placeholder.close()
    assert "ConnectionError" in events(logs, "alert_delivery_failed")[0]["error"]
    assert delivered.items == []
    receiver = receivers(port=port)
    poll(lambda: delivered.items, message="delivery once the receiver is up")
    (request,) = receiver.received()
    assert request.headers["x-camwatch-event-id"] == event_id
    assert request.body == body.encode()


def test_an_alert_older_than_max_age_expires(
    receivers: Callable[..., Receiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    receiver = receivers(default=500)
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
    receivers: Callable[..., Receiver],
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
    assert [r.headers["x-camwatch-event-id"] for r in receiver.received()] == [first, second]


def test_an_undelivered_alert_survives_a_restart_with_its_id_and_bytes(
    receivers: Callable[..., Receiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    receiver = receivers(default=503)
    conf = config(cams, {"ops": receiver.port})
    store = open_store()
    event_id, body = queue_alert(store)
    delivered = Delivered()
    dispatcher = dispatchers(store, delivered)
    dispatcher.sync(conf)
    poll(lambda: len(receiver.received()) >= 3, message="failed attempts")
    dispatcher.stop()
    store.close()
    before = len(receiver.received())

    receiver.default = 200
    store = open_store()
    dispatchers(store, delivered).sync(conf)
    poll(lambda: delivered.items, message="delivery after the restart")
    requests = receiver.received()
    assert len(requests) > before
    assert {r.body for r in requests} == {body.encode()}
    assert all(r.headers == requests[0].headers for r in requests)
    assert delivered.event_ids() == [event_id]


def test_a_target_that_is_down_does_not_delay_another(
    receivers: Callable[..., Receiver],
    open_store: Callable[[], Store],
    dispatchers: Callable[[Store, Delivered], Dispatcher],
    cams: Path,
    poll: Poll,
) -> None:
    down = receivers(default=500)
    up = receivers()
    store = open_store()
    event_id, _ = queue_alert(store, targets=("down", "up"))
    delivered = Delivered()
    dispatchers(store, delivered).sync(config(cams, {"down": down.port, "up": up.port}))
    poll(lambda: delivered.items, message="delivery to the healthy target")
    assert delivered.items == [("webhook", "up", event_id)]
    assert [r.path for r in up.received()] == ["/hook/up"]
    assert store.counts()["alerts_pending"] == 1


def test_sync_drops_alerts_for_targets_no_longer_configured(
    receivers: Callable[..., Receiver],
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
    receivers: Callable[..., Receiver],
    open_store: Callable[[], Store],
    cams: Path,
    poll: Poll,
) -> None:
    receiver = receivers(default=500)
    store = open_store()
    queue_alert(store)
    dispatcher = Dispatcher(store, Delivered())
    # Long backoffs: the worker is asleep in a retry wait when it is told to stop.
    dispatcher.sync(config(cams, {"ops": receiver.port}, backoff_initial="1h", backoff_max="1h"))
    poll(lambda: receiver.received(), message="a first attempt")
    dispatcher.stop(timeout=5)
    worker_threads = [t for t in threading.enumerate() if t.name.startswith("deliver-")]
    assert worker_threads == []
    assert store.counts()["alerts_pending"] == 1  # kept for the next start
