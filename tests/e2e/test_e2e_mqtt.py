"""End to end: the real daemon and a real MQTT broker (Debian's mosquitto, started here on a free
loopback port with a generated configuration), watched by a paho-mqtt subscriber.

Home Assistant discovery, the sensors' ON then OFF, the caption JSON and the snapshot bytes; a
broker outage while alerts are decided (every alert arrives, deduplicated by id); the last
will on kill -9 and `offline` on SIGTERM; a reload that removes a rule clears its entities;
password authentication, and a wrong password logged without the password while the daemon
carries on.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from camwatch.testing import StandinCaptionAPI, WebhookReceiver

from .support import (
    WAIT,
    ConfigWriter,
    Daemon,
    Tree,
    delivered,
    drop,
    image,
    run_cli,
    sha256,
    wait_until,
)

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None
)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")

pytestmark = pytest.mark.skipif(
    MOSQUITTO is None,
    reason="needs Debian's mosquitto (apt-get install mosquitto; .ci/run installs it)",
)

PREFIX = "camwatch"
DISCOVERY = "homeassistant"
MQTT_USER = "cw-user"
MQTT_PASSWORD = "mqtt-pw-5d81c2e7"


# -- the broker -----------------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    """A mosquitto broker on 127.0.0.1, its configuration and state in a folder of its own;
    `stop()` and `start()` again keep the port and (persistence) the retained messages and
    sessions."""

    def __init__(
        self,
        folder: Path,
        users: dict[str, str] | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        assert MOSQUITTO is not None
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [
            # As root, mosquitto would switch to its own user, who cannot read pytest's folders.
            f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {folder}/",
            f"log_dest file {folder}/mosquitto.log",
            "log_type all",
        ]
        if users:
            if MOSQUITTO_PASSWD is None:
                pytest.skip("needs mosquitto_passwd (Debian's mosquitto package)")
            passwords = folder / "passwords"
            for i, (user, password) in enumerate(users.items()):
                create = ["-c"] if i == 0 else []
                subprocess.run(
                    [MOSQUITTO_PASSWD, *create, "-b", str(passwords), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if tls is not None:
            lines += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        """Start the broker; return once it accepts connections."""
        assert MOSQUITTO is not None
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10.0
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mosquitto did not start\n{self.log()}")
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop the broker (SIGTERM: it saves its retained messages and sessions)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10.0)
        self.proc = None

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """An anonymous mosquitto on a free loopback port."""
    server = Mosquitto(tmp_path / "broker").start()
    yield server
    server.stop()


# -- the subscriber -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    at: float  # monotonic, when received

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")

    @property
    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A paho-mqtt client subscribed to `#`, keeping every message; it reconnects by itself.
    With `session`, a persistent session (QoS 1), so that the broker keeps its messages while it
    is away."""

    def __init__(self, port: int, session: str | None = None, auth: tuple[str, str] | None = None):
        self.port = port
        self._cond = threading.Condition()
        self.messages: list[Message] = []
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=session or "",
            clean_session=session is None,
        )
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _on_connect(self, client: paho.Client, *args: Any) -> None:
        client.subscribe("#", qos=1)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(
                Message(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos, time.monotonic())
            )
            self._cond.notify_all()

    def start(self) -> Subscriber:
        self.client.connect("127.0.0.1", self.port, keepalive=5)
        self.client.loop_start()
        wait_until(self.client.is_connected, message="the test subscriber to connect")
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, topic: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait(
        self,
        topic: str,
        predicate: Callable[[Message], bool] = lambda m: True,
        timeout: float = WAIT,
        after: int = 0,
    ) -> Message:
        """Wait for a message on `topic` (the `after`-th and later) passing `predicate`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [m for m in self.messages[after:] if m.topic == topic and predicate(m)]
                if hits:
                    return hits[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = sorted({m.topic for m in self.messages})
                    pytest.fail(f"no message on {topic} within {timeout:g}s; topics seen: {seen}")
                self._cond.wait(min(left, 0.5))

    def retained(self, timeout: float = 2.0) -> dict[str, bytes]:
        """Return what a fresh subscriber gets as retained messages (topic -> payload)."""
        fresh = Subscriber(self.port)
        fresh.client._username = self.client._username  # same credentials, if any
        fresh.client._password = self.client._password
        fresh.start()
        try:
            # The broker sends every retained message at once on subscribe; the status topic
            # is always retained, so its arrival means the batch is (being) delivered.
            fresh.wait(f"{PREFIX}/status", timeout=timeout)
            time.sleep(0.3)  # the rest of the same batch, already on its way
            with fresh._cond:
                return {m.topic: m.payload for m in fresh.messages if m.retain}
        finally:
            fresh.close()


@pytest.fixture
def subscribe() -> Iterator[Callable[..., Subscriber]]:
    """Return `subscribe(port, session=None, auth=None) -> Subscriber` (closed at the end)."""
    made: list[Subscriber] = []

    def make(port: int, session: str | None = None, auth: tuple[str, str] | None = None):
        sub = Subscriber(port, session, auth)
        made.append(sub)
        return sub.start()

    yield make
    for sub in made:
        sub.close()


# -- helpers --------------------------------------------------------------------------------------


def mqtt_config(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "url": url,
        "topic_prefix": PREFIX,
        "discovery": True,
        "discovery_prefix": DISCOVERY,
        "hold": "1s",
        "keepalive": "2s",
        **extra,
    }


def with_mqtt(config: ConfigWriter, url: str, **extra: Any) -> Path:
    """Write the base configuration with `mqtt:` and a device class on person-down."""
    data = config.data(mqtt=mqtt_config(url, **extra))
    data["rules"][0]["ha_device_class"] = "safety"
    return config.write(data)


def config_topic(component: str, unique_id: str) -> str:
    return f"{DISCOVERY}/{component}/{unique_id}/config"


RULE_SENSORS = {
    ("frontdoor", "person-down"),
    ("frontdoor", "package"),
    ("driveway", "person-down"),
    ("driveway", "package"),
    ("driveway", "vehicle"),
}


# -- the tests ------------------------------------------------------------------------------------


def test_discovery_states_caption_and_snapshot(
    tree: Tree,
    config: ConfigWriter,
    hooks: WebhookReceiver,
    api: StandinCaptionAPI,
    broker: Mosquitto,
    subscribe: Callable[..., Subscriber],
    start_daemon: Callable[..., Daemon],
    make_image: Callable[..., bytes],
) -> None:
    sub = subscribe(broker.port)
    daemon = start_daemon(with_mqtt(config, broker.url))
    sub.wait(f"{PREFIX}/status", lambda m: m.text == "online")
    daemon.wait_event("mqtt_connected", broker=f"mqtt://127.0.0.1:{broker.port}")

    # Discovery: one device per camera; a binary sensor per rule that applies to the camera.
    for camera, rule in RULE_SENSORS:
        unique_id = f"camwatch_{camera}_{rule}"
        payload = sub.wait(config_topic("binary_sensor", unique_id)).json
        assert payload["unique_id"] == unique_id
        assert payload["name"] == rule
        assert payload["state_topic"] == f"{PREFIX}/{camera}/{rule}"
        assert payload["payload_on"] == "ON" and payload["payload_off"] == "OFF"
        assert payload["availability_topic"] == f"{PREFIX}/status"
        assert payload["device"]["identifiers"] == [f"camwatch_{camera}"]
        assert payload["device"]["name"] == camera
        assert payload["device"]["manufacturer"] == "camwatch"
        assert payload["origin"]["name"] == "camwatch"
        if rule == "person-down":
            assert payload["device_class"] == "safety"
        else:
            assert "device_class" not in payload
        # Every sensor is published OFF at start: none is left ON by an earlier run.
        assert sub.wait(f"{PREFIX}/{camera}/{rule}").text == "OFF"
    assert not sub.on(config_topic("binary_sensor", "camwatch_frontdoor_vehicle"))
    for camera in ("frontdoor", "driveway"):
        sensor = sub.wait(config_topic("sensor", f"camwatch_{camera}_caption")).json
        assert sensor["state_topic"] == f"{PREFIX}/{camera}/caption"
        assert sensor["json_attributes_topic"] == f"{PREFIX}/{camera}/caption"
        assert sensor["value_template"] == "{{ value_json.caption[:255] }}"
        assert sensor["availability_topic"] == f"{PREFIX}/status"
        assert sensor["device"]["identifiers"] == [f"camwatch_{camera}"]
        picture = sub.wait(config_topic("image", f"camwatch_{camera}_snapshot")).json
        assert picture["image_topic"] == f"{PREFIX}/{camera}/snapshot"
        assert picture["content_type"] == "image/jpeg"
        assert picture["availability_topic"] == f"{PREFIX}/status"
        assert picture["unique_id"] == f"camwatch_{camera}_snapshot"

    # An image that alerts: caption JSON and snapshot (retained), the sensor ON then OFF after
    # `hold`, and the alert body on P/alert (QoS 1, not retained), the webhook's body.
    mark = len(sub.messages)
    caption = "A person lying on the ground next to a parcel."
    data = image(caption)
    path = drop(tree.frontdoor / "down.jpg", data)
    wait_until(lambda: len(delivered(hooks)) == 2, message="two webhook alerts")
    snapshot = sub.wait(f"{PREFIX}/frontdoor/snapshot", after=mark)
    assert snapshot.payload == data
    body = sub.wait(f"{PREFIX}/frontdoor/caption", after=mark).json
    assert body["caption"] == caption
    assert body["image"] == str(path)
    assert body["sha256"] == sha256(data)
    assert body["captioned_at"].endswith("Z")
    assert sorted(body["rules"]) == ["package", "person-down"]
    on = sub.wait(f"{PREFIX}/frontdoor/person-down", lambda m: m.text == "ON", after=mark)
    assert on.at >= snapshot.at  # the snapshot is there when the sensor trips
    off = sub.wait(f"{PREFIX}/frontdoor/person-down", lambda m: m.text == "OFF", after=mark)
    assert 0.8 <= off.at - on.at <= 5.0
    assert sub.wait(f"{PREFIX}/frontdoor/package", lambda m: m.text == "ON", after=mark)
    assert not [m for m in sub.on(f"{PREFIX}/driveway/person-down")[1:]]  # other camera: quiet
    wait_until(lambda: len(sub.on(f"{PREFIX}/alert")) >= 2, message="two alerts on P/alert")
    alerts = sub.on(f"{PREFIX}/alert")
    assert all(m.qos == 1 for m in alerts)
    assert sorted(m.payload for m in alerts) == sorted(r.body for r in delivered(hooks))
    daemon.wait_event("alert_delivered", target="mqtt", count=2)

    # What a subscriber that comes later (Home Assistant after a restart) gets: the retained
    # status, configs, caption, snapshot and states; never an alert.
    kept = sub.retained()
    assert kept[f"{PREFIX}/status"] == b"online"
    assert kept[f"{PREFIX}/frontdoor/snapshot"] == data
    assert json.loads(kept[f"{PREFIX}/frontdoor/caption"])["sha256"] == sha256(data)
    assert kept[f"{PREFIX}/frontdoor/person-down"] == b"OFF"
    assert config_topic("binary_sensor", "camwatch_driveway_vehicle") in kept
    assert f"{PREFIX}/alert" not in kept

    # A PNG: the image entity is announced again with its content type, then the bytes.
    api.captions["lot.png"] = "An empty driveway."
    png = make_image("PNG", seed=3)
    mark = len(sub.messages)
    drop(tree.driveway / "lot.png", png)
    announced = sub.wait(config_topic("image", "camwatch_driveway_snapshot"), after=mark)
    assert announced.json["content_type"] == "image/png"
    shot = sub.wait(f"{PREFIX}/driveway/snapshot", after=mark)
    assert shot.payload == png and shot.at >= announced.at


def test_check_config_shows_the_broker_without_credentials(
    config: ConfigWriter, broker: Mosquitto
) -> None:
    url = f"mqtt://{MQTT_USER}:{MQTT_PASSWORD}@127.0.0.1:{broker.port}"
    result = run_cli("check-config", "-c", str(with_mqtt(config, url)))
    assert result.returncode == 0, result.stderr
    assert f"  mqtt: mqtt://127.0.0.1:{broker.port} topics {PREFIX}/#" in result.stdout
    assert MQTT_PASSWORD not in result.stdout + result.stderr
    assert MQTT_USER not in result.stdout + result.stderr


def test_broker_outage_delays_alerts_and_loses_none(
    tree: Tree,
    config: ConfigWriter,
    hooks: WebhookReceiver,
    broker: Mosquitto,
    subscribe: Callable[..., Subscriber],
    start_daemon: Callable[..., Daemon],
) -> None:
    # A persistent session: the broker keeps the QoS 1 alerts for the test while it is away.
    sub = subscribe(broker.port, session="e2e-outage")
    daemon = start_daemon(with_mqtt(config, broker.url))
    daemon.wait_event("mqtt_connected")
    sub.wait(f"{PREFIX}/status", lambda m: m.text == "online")

    broker.stop()
    daemon.wait_event("mqtt_disconnected")
    captions = [f"A person lying on the ground, number {i}." for i in range(3)]
    for i, caption in enumerate(captions):
        drop(tree.frontdoor / f"down-{i}.jpg", image(caption))
    daemon.wait_event("alert_decided", count=3)
    decided = daemon.named("alert_decided")
    wait_until(lambda: len(delivered(hooks)) == 3, message="the webhooks, unaffected")
    daemon.wait_event("alert_delivery_failed", target="mqtt")  # waiting in the outbox

    broker.start()
    daemon.wait_event("mqtt_connected", count=2)
    wait_until(
        lambda: (
            {m.json["id"] for m in sub.on(f"{PREFIX}/alert")} >= {e["event_id"] for e in decided}
        ),
        timeout=WAIT,
        message="every alert decided during the outage on P/alert",
    )
    received = {m.json["id"]: m.json for m in sub.on(f"{PREFIX}/alert")}  # deduplicated by id
    assert set(received) == {e["event_id"] for e in decided}
    assert sorted(b["caption"] for b in received.values()) == sorted(captions)
    by_id = {r.json["id"]: r.body for r in delivered(hooks)}
    for message in sub.on(f"{PREFIX}/alert"):
        assert message.payload == by_id[message.json["id"]]  # byte for byte the webhook's body
    daemon.wait_event("alert_delivered", target="mqtt", count=3)


def test_last_will_on_kill_and_offline_on_sigterm(
    tree: Tree,
    config: ConfigWriter,
    broker: Mosquitto,
    subscribe: Callable[..., Subscriber],
    start_daemon: Callable[..., Daemon],
) -> None:
    sub = subscribe(broker.port)
    path = with_mqtt(config, broker.url, keepalive="1s", hold="1h")
    first = start_daemon(path)
    sub.wait(f"{PREFIX}/status", lambda m: m.text == "online")
    # A sensor ON for an hour when the daemon dies.
    drop(tree.frontdoor / "down.jpg", image("Someone collapsed on the porch."))
    sub.wait(f"{PREFIX}/frontdoor/person-down", lambda m: m.text == "ON")

    mark = len(sub.messages)
    killed_at = time.monotonic()
    first.kill9()
    will = sub.wait(f"{PREFIX}/status", lambda m: m.text == "offline", after=mark, timeout=10.0)
    # The broker sends the will after 1.5 x keepalive without a word from us.
    assert will.at - killed_at <= 5.0
    assert sub.retained()[f"{PREFIX}/status"] == b"offline"

    mark = len(sub.messages)
    second = start_daemon(path)
    sub.wait(f"{PREFIX}/status", lambda m: m.text == "online", after=mark)
    # No sensor is left ON by the run that died: the new run publishes OFF at once.
    sub.wait(f"{PREFIX}/frontdoor/person-down", lambda m: m.text == "OFF", after=mark)

    mark = len(sub.messages)
    code, seconds = second.terminate()
    assert code == 0 and seconds < 10.0
    sub.wait(f"{PREFIX}/status", lambda m: m.text == "offline", after=mark, timeout=5.0)
    second.wait_event("mqtt_stopped", offline_acknowledged=True)
    assert sub.retained()[f"{PREFIX}/status"] == b"offline"


def test_reload_and_restart_clear_removed_entities(
    tree: Tree,
    config: ConfigWriter,
    broker: Mosquitto,
    subscribe: Callable[..., Subscriber],
    start_daemon: Callable[..., Daemon],
) -> None:
    sub = subscribe(broker.port)
    path = with_mqtt(config, broker.url)
    daemon = start_daemon(path)
    package = [
        config_topic("binary_sensor", f"camwatch_{c}_package") for c in ("frontdoor", "driveway")
    ]
    for topic in package:
        sub.wait(topic, lambda m: bool(m.payload))

    # A reload without the `package` rule: its configs and states are cleared (empty, retained).
    data = json.loads(json.dumps(config.data(mqtt=mqtt_config(broker.url))))
    data["rules"] = [r for r in data["rules"] if r["name"] != "package"]
    mark = len(sub.messages)
    config.write(data)
    daemon.hup()
    daemon.wait_event("reloaded")
    for topic in package:
        sub.wait(topic, lambda m: m.payload == b"", after=mark)
    sub.wait(f"{PREFIX}/frontdoor/package", lambda m: m.payload == b"", after=mark)
    kept = sub.retained()
    assert not [t for t in kept if "package" in t]
    assert config_topic("binary_sensor", "camwatch_driveway_vehicle") in kept
    assert config_topic("binary_sensor", "camwatch_frontdoor_person-down") in kept

    # A rule removed while the daemon is stopped is cleared at the next start too.
    code, _ = daemon.terminate()
    assert code == 0
    data["rules"] = [r for r in data["rules"] if r["name"] != "vehicle"]
    config.write(data)
    mark = len(sub.messages)
    start_daemon(path)
    vehicle = config_topic("binary_sensor", "camwatch_driveway_vehicle")
    sub.wait(vehicle, lambda m: m.payload == b"", after=mark)
    assert vehicle not in sub.retained()


def test_password_auth_and_a_wrong_password(
    tmp_path: Path,
    tree: Tree,
    config: ConfigWriter,
    hooks: WebhookReceiver,
    subscribe: Callable[..., Subscriber],
    start_daemon: Callable[..., Daemon],
) -> None:
    broker = Mosquitto(tmp_path / "auth-broker", users={MQTT_USER: MQTT_PASSWORD}).start()
    try:
        sub = subscribe(broker.port, auth=(MQTT_USER, MQTT_PASSWORD))
        good = f"mqtt://{MQTT_USER}:{MQTT_PASSWORD}@127.0.0.1:{broker.port}"
        daemon = start_daemon(with_mqtt(config, good))
        sub.wait(f"{PREFIX}/status", lambda m: m.text == "online")
        daemon.wait_event("mqtt_connected", broker=f"mqtt://127.0.0.1:{broker.port}")
        sub.wait(config_topic("image", "camwatch_frontdoor_snapshot"))
        code, _ = daemon.terminate()
        assert code == 0

        wrong = f"mqtt://{MQTT_USER}:not-the-pw-71c3@127.0.0.1:{broker.port}"
        daemon = start_daemon(with_mqtt(config, wrong))
        refused = daemon.wait_event("mqtt_refused")
        assert "not authori" in refused["reason"].lower() or "password" in refused["reason"].lower()
        assert refused["code"] in (4, 5, 134, 135)
        # The daemon carries on: images are captioned and webhooks delivered.
        data = image("A person lying on the ground.")
        drop(tree.frontdoor / "down.jpg", data)
        daemon.wait_event("image_captioned")
        wait_until(lambda: len(delivered(hooks)) == 1, message="the webhook alert")
        daemon.wait_event("alert_delivery_failed", target="mqtt", failure="refused")
        assert daemon.running()
        assert len(daemon.named("mqtt_refused")) == 1  # said once, not at every retry
        code, _ = daemon.terminate()
        assert code == 0
        log = daemon.stderr_text
        assert "not-the-pw-71c3" not in log and MQTT_USER not in log
    finally:
        broker.stop()


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """Make a test CA and a certificate for localhost signed by it (openssl). Return the CA's
    certificate, the server's certificate and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_extensions = [
        *("-subj", "/CN=camwatch e2e CA"),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    ]
    for argv in (
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", *ca_extensions],
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
    ):
        subprocess.run([openssl, *map(str, argv)], check=True, capture_output=True)
    extensions = folder / "server.ext"
    extensions.write_text(
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n"
        "keyUsage=critical,digitalSignature\nauthorityKeyIdentifier=keyid\n"
    )
    sign = ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial"]
    sign += ["-out", cert, "-days", "2", "-extfile", extensions]
    subprocess.run([openssl, *map(str, sign)], check=True, capture_output=True)
    return ca, cert, key


def test_mqtts_verifies_the_broker_certificate(
    tmp_path: Path,
    config: ConfigWriter,
    start_daemon: Callable[..., Daemon],
) -> None:
    ca, cert, key = make_certificates(tmp_path / "pki")
    broker = Mosquitto(tmp_path / "tls-broker", tls=(cert, key)).start()
    try:
        path = with_mqtt(config, f"mqtts://localhost:{broker.port}")
        # A certificate from a CA the system does not trust: refused, said once, retried.
        untrusted = start_daemon(path)
        failed = untrusted.wait_event("mqtt_unreachable")
        assert failed["failure"] == "tls", failed
        assert "not trusted" in failed["reason"]
        code, _ = untrusted.terminate()
        assert code == 0
        # Trusted (the test CA as the system's CA file): connected over TLS.
        trusted = start_daemon(path, env={"SSL_CERT_FILE": str(ca)})
        trusted.wait_event("mqtt_connected", broker=f"mqtts://localhost:{broker.port}")
    finally:
        broker.stop()


def test_silent_camera_alerts_go_to_mqtt_too(
    config: ConfigWriter,
    hooks: WebhookReceiver,
    broker: Mosquitto,
    subscribe: Callable[..., Subscriber],
    start_daemon: Callable[..., Daemon],
) -> None:
    sub = subscribe(broker.port)
    data = config.data(mqtt=mqtt_config(broker.url))
    data["cameras"][0]["expect_every"] = "1s"
    daemon = start_daemon(config.write(data))
    silent = sub.wait(f"{PREFIX}/alert", lambda m: m.json["event"] == "camwatch.camera_silent")
    assert silent.json["camera"] == "frontdoor"
    wait_until(lambda: any(r.json["id"] == silent.json["id"] for r in delivered(hooks)))
    hooked = next(r for r in delivered(hooks) if r.json["id"] == silent.json["id"])
    assert silent.payload == hooked.body
    daemon.wait_event("alert_delivered", target="mqtt", rule="camwatch.camera_silent")
