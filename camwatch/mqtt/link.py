"""The connection to the MQTT broker: one paho-mqtt client at a time, driven by one thread.

Everything that touches the client runs on the `mqtt` thread (paho's client is not safe to
write to from two threads at once); the pipeline, the dispatcher and the main loop hand it work
through small queues and a wake-up socket, and never wait for the broker:

- `captioned(event)` (a worker, after an image is recorded): the caption JSON and the snapshot,
  retained, then the binary sensors of the rules that alerted turn ON until `hold` has passed.
  The queue is bounded: past `SNAPSHOT_BUDGET` bytes the oldest waiting snapshots are dropped
  (their captions still go) and counted, past `QUEUE_MAX` events the oldest go entirely.
- `publish_alert(body, timeout)` (the dispatcher's mqtt target): `P/alert` with QoS 1; returns
  once the broker acknowledged it (PUBACK), else raises DeliveryFailed and the outbox tries
  again later.
- `update(config)` (a reload): the discovery configs and sensors of the new configuration;
  what is gone is cleared with an empty retained message.

Each connection is a fresh client: its last will is `offline` on `P/status` (retained), and once
the broker accepts it the thread publishes `online`, the discovery configs, and the state of
every binary sensor (OFF unless its hold runs), so that no sensor is left ON by a crash. A
connection that fails or drops is tried again after `backoff` (delivery.backoff_initial up to
delivery.backoff_max, at most a minute). A broker that refuses us (a bad user name or
password, not authorised) is logged once as `mqtt_refused` with its reason code, and tried
again on the same schedule; the daemon carries on. A clean stop publishes `offline`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from camwatch.alerts import iso_utc
from camwatch.backoff import backoff
from camwatch.config import Config, MqttConfig
from camwatch.errors import DeliveryFailed
from camwatch.files import printable_path
from camwatch.homeassistant import (
    JPEG,
    OFF,
    OFFLINE,
    ON,
    ONLINE,
    caption_message,
    discovery,
    rule_pairs,
)
from camwatch.log import get_logger
from camwatch.mqtt.topics import (
    alert_topic,
    caption_topic,
    rule_topic,
    snapshot_topic,
    status_topic,
)
from camwatch.netfail import classify
from camwatch.pipeline import CaptionedImage

log = get_logger(__name__)

CONNECT_TIMEOUT = 5.0  # TCP, TLS and CONNACK
RECONNECT_MAX = 60.0  # the longest wait between two connection attempts
STOP_FLUSH = 2.0  # at a clean stop, how long `offline` may take to be acknowledged
QUEUE_MAX = 256  # captioned images waiting for the broker
SNAPSHOT_BUDGET = 16 * 1024 * 1024  # bytes of waiting snapshots kept
DROP_LOG_EVERY = 60.0  # at most one log line a minute about dropped snapshots
MEMORY_FILE = "mqtt-discovery.json"  # in state_dir: the discovery topics last announced


@dataclass
class _Waiting:
    """A captioned image waiting for the broker; `data` is None once its snapshot is dropped."""

    event: CaptionedImage
    data: bytes | None
    on_until: float  # monotonic: the alerted rules' sensors stay ON until then


@dataclass
class _AlertRequest:
    body: str
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    failure: str | None = None
    abandoned: bool = False  # the sender stopped waiting (timed out): no one reads the result
    info: paho.MQTTMessageInfo | None = None

    def finish(self, error: str | None = None, failure: str | None = None) -> None:
        self.error, self.failure = error, failure
        self.done.set()


def client_id(config: MqttConfig) -> str:
    """Return the MQTT client id: stable for this machine and topic prefix (two camwatch with
    the same id would keep disconnecting each other), short enough for any broker (23)."""
    digest = hashlib.sha256(f"{socket.gethostname()}/{config.topic_prefix}".encode()).hexdigest()
    return f"camwatch-{digest[:14]}"


def connection_settings(config: MqttConfig) -> tuple[object, ...]:
    """Return what a connection is made of: a change of any needs a new link."""
    return (
        config.url.get_secret_value(),
        config.keepalive,
        config.topic_prefix,
        config.discovery_prefix,  # Home Assistant's birth message is subscribed under it
    )


class MqttLink:
    """The broker connection and its thread (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        cleared: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert config.mqtt is not None
        self.settings = config.mqtt
        self._broker = config.mqtt.broker
        self.address = self._broker.address
        self._prefix = config.mqtt.topic_prefix
        self._keepalive = max(1, int(-(-config.mqtt.keepalive // 1)))  # whole seconds, up
        self._tick = min(1.0, self._keepalive / 4)  # keep-alive pings in time
        self._backoff = (
            config.delivery.backoff_initial,
            min(config.delivery.backoff_max, RECONNECT_MAX),
        )
        self._clock = clock
        self._rng = random.Random()
        self._lock = threading.Lock()
        # Handed to the thread (under the lock):
        self._config = config
        self._config_changed = True
        self._waiting: deque[_Waiting] = deque()
        self._waiting_bytes = 0
        self._orphan_on: dict[str, float] = {}  # sensors ON of events dropped from the queue
        self._alerts: deque[_AlertRequest] = deque()
        self._stopping = threading.Event()
        self._clear_on_stop = False
        # The thread's own:
        self._connected = False
        self._refused: str | None = None  # the broker's reason, while it refuses us
        self._failure: tuple[str, str] | None = None  # (failure, reason) of the last attempt
        self._sent_configs: dict[str, str] = {}  # discovery topic -> payload, this connection
        self._resend = False  # send every discovery config again (a new connection, HA's birth)
        # Discovery topics published (or to clear), kept in state_dir across restarts so that
        # an entity removed while the daemon was stopped is cleared too.
        self._memory = Path(config.state_dir) / MEMORY_FILE
        self._remembered = _recall(self._memory)
        self._announced: set[str] = set(cleared) | self._remembered
        self._content_types: dict[str, str] = {}
        self._desired: dict[str, str] = {}
        self._sensors: set[str] = set()  # state topics of the current rule sensors
        self._on_until: dict[str, float] = {}
        self._states_sent: dict[str, str] = {}
        self._inflight: list[_AlertRequest] = []
        self.dropped_snapshots = 0
        self.dropped_events = 0
        self._dropped_logged = (0, 0)  # the totals last logged
        self._dropped_logged_at = -DROP_LOG_EVERY
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)

    # -- called from other threads ----------------------------------------------------------------

    def start(self) -> None:
        """Start connecting, in the background."""
        self._thread.start()

    @property
    def connected(self) -> bool:
        """Whether the broker has accepted the current connection."""
        return self._connected

    def update(self, config: Config, previous: Iterable[str] = ()) -> None:
        """Apply a reloaded configuration with the same connection settings: its cameras,
        rules, hold and discovery. `previous`: discovery topics the old configuration had
        (cleared if the new one has them no more, even if this link never published them)."""
        with self._lock:
            self._config = config
            self._config_changed = True
            self._announced |= set(previous)
        self._wake()

    def captioned(self, event: CaptionedImage) -> None:
        """Queue what an image's caption publishes. Never blocks, never raises."""
        hold = self._config.mqtt.hold if self._config.mqtt is not None else 0.0
        item = _Waiting(event, event.data, self._clock() + hold)
        with self._lock:
            self._waiting.append(item)
            self._waiting_bytes += len(event.data)
            self._bound_queue()
        self._wake()

    def publish_alert(self, body: str, timeout: float) -> None:
        """Publish an alert body on `P/alert` (QoS 1, not retained) and wait for the broker's
        PUBACK. Raise DeliveryFailed if not connected, the connection drops first, or no PUBACK
        comes within `timeout` seconds."""
        if not self._connected or self._stopping.is_set():
            failure, reason = self._why_down()
            raise DeliveryFailed(
                f"mqtt broker at {self.address}: {reason}",
                failure=failure,
                reason=reason,
                address=self.address,
            )
        request = _AlertRequest(body)
        with self._lock:
            self._alerts.append(request)
        self._wake()
        if not request.done.wait(timeout):
            request.abandoned = True
            reason = f"no acknowledgement within {timeout:g}s"
            raise DeliveryFailed(
                f"mqtt broker at {self.address}: {reason}",
                failure="timed out",
                reason=reason,
                address=self.address,
            )
        if request.error is not None:
            raise DeliveryFailed(
                f"mqtt broker at {self.address}: {request.error}",
                failure=request.failure or "connection",
                reason=request.error,
                address=self.address,
            )

    def published_topics(self) -> set[str]:
        """Return the discovery topics this link published or was asked to clear: what a link
        that replaces it must clear if its configuration no longer has them."""
        with self._lock:
            return set(self._announced) | set(self._desired)

    def stop(self, timeout: float = 5.0, clear_discovery: bool = False) -> None:
        """Publish `offline` (and, with `clear_discovery`, remove every entity from Home
        Assistant), disconnect and end the thread, within about `timeout` seconds."""
        self._clear_on_stop = clear_discovery
        self._stopping.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if not self._thread.is_alive():  # else it may still select on them
            for sock in (self._wake_r, self._wake_w):
                sock.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (already woken) or closed (stopped)
            self._wake_w.send(b"\0")

    def _why_down(self) -> tuple[str, str]:
        if self._stopping.is_set():
            return "connection", "stopping"
        if self._refused is not None:
            return "refused", f"the broker refused the connection ({self._refused})"
        if self._failure is not None:
            return self._failure
        return "connection", "not connected yet"

    def _bound_queue(self) -> None:
        """Under the lock: drop the oldest snapshots past the byte budget, the oldest events
        past the count (their sensors still turn ON)."""
        while len(self._waiting) > QUEUE_MAX:
            gone = self._waiting.popleft()
            self._waiting_bytes -= len(gone.data or b"")
            self.dropped_events += 1
            for topic in self._alert_topics(gone.event):
                self._orphan_on[topic] = max(self._orphan_on.get(topic, 0.0), gone.on_until)
        if self._waiting_bytes > SNAPSHOT_BUDGET:
            for item in list(self._waiting)[:-1]:  # the newest keeps its bytes
                if self._waiting_bytes <= SNAPSHOT_BUDGET:
                    break
                if item.data is not None:
                    self._waiting_bytes -= len(item.data)
                    item.data = None
                    self.dropped_snapshots += 1

    def _alert_topics(self, event: CaptionedImage) -> list[str]:
        return [rule_topic(self._prefix, event.camera, rule) for rule in event.alerted]

    # -- the thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                client = self._open()
                if client is not None and self._serve(client):
                    failures = 0
            except Exception:
                # A bug or an answer paho did not expect: this connection ends, the next one
                # comes after the backoff, as for any other failure.
                log.exception("mqtt_connection_failed", broker=self._broker.shown)
            if self._stopping.is_set():
                break
            failures += 1
            self._idle(backoff(failures, *self._backoff, rng=self._rng))
        self._connected = False
        self._fail_alerts("stopping", "connection")

    def _open(self) -> paho.Client | None:
        """Return a client whose CONNECT was sent, or None (logged) if the broker cannot be
        reached."""
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id(self.settings),
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        client.suppress_exceptions = False
        if self._broker.username is not None:
            client.username_pw_set(self._broker.username, self._broker.password)
        if self._broker.tls:
            client.tls_set()  # the system's CAs; the certificate and its host name verified
        client.will_set(status_topic(self._prefix), OFFLINE, qos=1, retain=True)
        client.connect_timeout = CONNECT_TIMEOUT
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        try:
            client.connect(self._broker.host, self._broker.port, keepalive=self._keepalive)
        except (OSError, ValueError) as exc:
            why = classify(exc, CONNECT_TIMEOUT)
            self._note_failure(why.failure, why.reason)
            _close(client)
            return None
        return client

    def _note_failure(self, failure: str, reason: str) -> None:
        """Log a failure to connect once, when it starts or changes."""
        self._refused = None
        if self._failure != (failure, reason):
            log.warning(
                "mqtt_unreachable",
                broker=self._broker.shown,
                address=self.address,
                failure=failure,
                reason=reason,
                hint="retrying with backoff; alerts for mqtt wait in the outbox",
            )
        self._failure = (failure, reason)

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        if reason.is_failure:
            said = str(reason)
            if self._refused != said:
                # Never the user name or the password: the broker's reason says which is wrong.
                log.error(
                    "mqtt_refused",
                    broker=self._broker.shown,
                    reason=said,
                    code=reason.value,
                    hint="check the user name and password in mqtt.url, and the broker's ACL",
                )
            self._refused = said
            self._failure = ("refused", f"the broker refused the connection ({said})")
            return
        self._refused = None
        self._failure = None
        self._connected = True
        log.info("mqtt_connected", broker=self._broker.shown, client_id=client_id(self.settings))
        self._sent_configs = {}
        self._states_sent = {}  # every sensor's state is published again: OFF unless held
        self._resend = True
        client.publish(status_topic(self._prefix), ONLINE, qos=1, retain=True)
        if self.settings.discovery:
            # Home Assistant's birth message: it has just started and forgotten what it
            # had not kept, so the discovery configs are sent again.
            client.subscribe(f"{self.settings.discovery_prefix}/status", qos=0)

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        if (
            message.topic.endswith("/status")
            and message.payload == b"online"
            and not message.retain
        ):
            log.info("mqtt_homeassistant_online", topic=message.topic)
            self._sent_configs = {}
            self._resend = True

    def _serve(self, client: paho.Client) -> bool:
        """Run one connection until it drops or the link stops. Return whether the broker
        accepted it."""
        accepted = False
        give_up_at = self._clock() + CONNECT_TIMEOUT
        try:
            while True:
                sock = client.socket()
                if sock is None:
                    break
                if self._stopping.is_set():
                    if self._connected:
                        self._finish(client)
                    break
                if not self._connected and self._refused is None and self._clock() > give_up_at:
                    self._note_failure(
                        "timed out", f"no answer to CONNECT within {CONNECT_TIMEOUT:g}s"
                    )
                    break
                pending = bool(getattr(sock, "pending", lambda: 0)())  # TLS bytes already read
                writing = [sock] if client.want_write() else []
                timeout = 0.0 if pending else self._timeout()
                readable, writable, _ = select.select([sock, self._wake_r], writing, [], timeout)
                if self._wake_r in readable:
                    _drain(self._wake_r)
                rc = MQTTErrorCode.MQTT_ERR_SUCCESS
                if sock in readable or pending:
                    rc = client.loop_read()
                if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and sock in writable:
                    rc = client.loop_write()
                if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    rc = client.loop_misc()
                if self._connected:
                    accepted = True
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._refused is not None:
                    break
                if self._connected:
                    self._work(client)
        finally:
            if self._connected and not self._stopping.is_set():
                log.warning(
                    "mqtt_disconnected",
                    broker=self._broker.shown,
                    hint="reconnecting with backoff; alerts wait in the outbox",
                )
                self._failure = ("reset", "the connection to the broker was lost")
            self._connected = False
            self._fail_alerts("the connection was lost before the broker acknowledged", "reset")
            _close(client)
        return accepted

    def _timeout(self) -> float:
        """Return how long the thread may sleep: until the next keep-alive check or the end of
        the next hold."""
        wait = self._tick
        if self._on_until:
            wait = min(wait, max(min(self._on_until.values()) - self._clock(), 0.0) + 0.001)
        return wait

    def _idle(self, seconds: float) -> None:
        """Wait between connection attempts, failing alert requests at once (the outbox keeps
        them), until `seconds` passed or the link stops."""
        deadline = self._clock() + seconds
        while not self._stopping.is_set():
            left = deadline - self._clock()
            if left <= 0:
                return
            readable, _, _ = select.select([self._wake_r], [], [], left)
            if readable:
                _drain(self._wake_r)
            failure, reason = self._why_down()
            self._fail_alerts(reason, failure)

    # -- one connection's work (the thread, connected) --------------------------------------------

    def _work(self, client: paho.Client) -> None:
        self._apply_config(client)
        self._publish_alerts(client)
        self._publish_captions(client)
        self._publish_states(client)

    def _apply_config(self, client: paho.Client) -> None:
        with self._lock:
            changed, config = self._config_changed, self._config
            self._config_changed = False
        if not changed and not self._resend:
            return
        self._resend = False
        mqtt = config.mqtt
        assert mqtt is not None
        self.settings = mqtt
        found = discovery(config, self._content_types)
        for camera, rule, unique_id in found.collisions:
            log.warning(
                "mqtt_id_taken",
                camera=camera,
                rule=rule,
                unique_id=unique_id,
                hint="another camera and rule give the same id; rename one",
            )
        with self._lock:
            self._desired = found.messages
            gone = self._announced - set(found.messages)
            self._announced = set(found.messages)
        for topic in sorted(gone):
            client.publish(topic, b"", qos=1, retain=True)
            log.info("mqtt_entity_removed", topic=topic)
        self._remember(found.messages)
        for topic, payload in found.messages.items():
            if self._sent_configs.get(topic) != payload:
                client.publish(topic, payload, qos=1, retain=True)
        self._sent_configs = dict(found.messages)
        sensors = {rule_topic(self._prefix, cam, rule.name) for cam, rule in rule_pairs(config)}
        for topic in sorted(self._sensors - sensors):
            client.publish(topic, b"", qos=1, retain=True)  # no state left for a removed rule
            self._on_until.pop(topic, None)
            self._states_sent.pop(topic, None)
        self._sensors = sensors

    def _publish_alerts(self, client: paho.Client) -> None:
        with self._lock:
            new = list(self._alerts)
            self._alerts.clear()
        for request in new:
            info = client.publish(alert_topic(self._prefix), request.body, qos=1, retain=False)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                request.finish(f"the client could not send it ({paho.error_string(info.rc)})")
                continue
            request.info = info
            self._inflight.append(request)
        still = []
        for request in self._inflight:
            assert request.info is not None
            if request.info.is_published():
                request.finish()
            elif not request.abandoned:
                still.append(request)
        self._inflight = still

    def _publish_captions(self, client: paho.Client) -> None:
        """Publish waiting captions while the client has nothing left to write (a slow broker
        holds them in our bounded queue, not in paho's)."""
        now = self._clock()
        dropped = self.dropped_snapshots, self.dropped_events
        while not client.want_write():
            with self._lock:
                if not self._waiting:
                    orphans, self._orphan_on = self._orphan_on, {}
                    item = None
                else:
                    item = self._waiting.popleft()
                    self._waiting_bytes -= len(item.data or b"")
                    orphans = {}
            self._hold(orphans, now)
            if item is None:
                break
            self._publish_caption(client, item)
            self._hold(dict.fromkeys(self._alert_topics(item.event), item.on_until), now)
        if dropped != self._dropped_logged and now - self._dropped_logged_at >= DROP_LOG_EVERY:
            self._dropped_logged, self._dropped_logged_at = dropped, now
            log.warning(
                "mqtt_backlog_dropped",
                snapshots=dropped[0],
                captions=dropped[1],
                hint="the broker is slow or away; the newest caption and snapshot are kept",
            )

    def _publish_caption(self, client: paho.Client, item: _Waiting) -> None:
        event = item.event
        text = caption_message(
            event.caption,
            printable_path(event.path),
            event.sha256,
            iso_utc(event.captioned_at),
            list(event.rules),
        )
        if item.data is not None:
            if self._content_types.get(event.camera, JPEG) != event.content_type:
                # The image entity was announced with another type: say this one first.
                self._content_types[event.camera] = event.content_type
                with self._lock:
                    self._config_changed = True
                self._apply_config(client)
            client.publish(
                snapshot_topic(self._prefix, event.camera), item.data, qos=0, retain=True
            )
        client.publish(caption_topic(self._prefix, event.camera), text, qos=1, retain=True)

    def _hold(self, until: dict[str, float], now: float) -> None:
        for topic, deadline in until.items():
            if deadline > now and topic in self._sensors:
                self._on_until[topic] = max(self._on_until.get(topic, 0.0), deadline)

    def _publish_states(self, client: paho.Client) -> None:
        now = self._clock()
        for topic, deadline in list(self._on_until.items()):
            if deadline <= now:
                del self._on_until[topic]
        for topic in sorted(self._sensors):
            state = ON if topic in self._on_until else OFF
            if self._states_sent.get(topic) != state:
                client.publish(topic, state, qos=1, retain=True)
                self._states_sent[topic] = state

    def _finish(self, client: paho.Client) -> None:
        """A clean stop: `offline` (and the discovery configs cleared when asked), acknowledged
        within STOP_FLUSH, then DISCONNECT (the broker then drops the will)."""
        last: list[paho.MQTTMessageInfo] = []
        if self._clear_on_stop:
            for topic in sorted(self._announced | set(self._desired)):
                last.append(client.publish(topic, b"", qos=1, retain=True))
            self._remember(())
        last.append(client.publish(status_topic(self._prefix), OFFLINE, qos=1, retain=True))
        deadline = self._clock() + STOP_FLUSH
        while self._clock() < deadline and not all(m.is_published() for m in last):
            sock = client.socket()
            if sock is None:
                break
            writing = [sock] if client.want_write() else []
            select.select([sock], writing, [], 0.05)
            if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
            if client.want_write() and client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        with contextlib.suppress(Exception):
            client.disconnect()
        log.info(
            "mqtt_stopped",
            broker=self._broker.shown,
            offline_acknowledged=all(m.is_published() for m in last),
        )

    def _remember(self, topics: Iterable[str]) -> None:
        """Keep the announced discovery topics in state_dir (written only when they change)."""
        wanted = set(topics)
        if wanted == self._remembered:
            return
        text = json.dumps({"topics": sorted(wanted)}, ensure_ascii=False)
        temp = self._memory.with_name(self._memory.name + ".tmp")
        try:
            temp.write_text(text, encoding="utf-8")
            os.replace(temp, self._memory)
        except OSError as exc:
            log.warning("mqtt_memory_unwritable", path=str(self._memory), error=exc.strerror)
            return
        self._remembered = wanted

    def _fail_alerts(self, reason: str, failure: str) -> None:
        with self._lock:
            queued = list(self._alerts)
            self._alerts.clear()
        for request in [*queued, *self._inflight]:
            request.finish(reason, failure)
        self._inflight = []


def _recall(path: Path) -> set[str]:
    """Return the discovery topics a previous run announced (none if it left no file, or one
    this cannot read: at worst an entity stays until removed in Home Assistant)."""
    try:
        topics = json.loads(path.read_text(encoding="utf-8")).get("topics", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {t for t in topics if isinstance(t, str)} if isinstance(topics, list) else set()


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError, OSError):
        while sock.recv(4096):
            pass


def _close(client: paho.Client) -> None:
    """Close a client's socket, whatever state it is in."""
    sock = client.socket()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
