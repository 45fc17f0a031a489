"""The MQTT link's side that other threads call, without a broker: the pipeline's events are
queued without blocking and the queue stays bounded (the oldest snapshots go first); an alert
while not connected fails at once (the outbox keeps it); the discovery topics of a previous run
are read back from state_dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camwatch.config import Config, parse_config
from camwatch.errors import DeliveryFailed
from camwatch.mqtt import link as link_module
from camwatch.mqtt.link import MqttLink, client_id, connection_settings
from camwatch.pipeline import CaptionedImage


@pytest.fixture
def config(tmp_path: Path) -> Config:
    data = {
        "cameras": [{"name": "frontdoor", "path": str(tmp_path / "cam")}],
        "state_dir": str(tmp_path / "state"),
        "rules": [{"name": "person-down", "any": ["lying on the ground"]}],
        "mqtt": {"url": "mqtt://u:pw-9c1e@127.0.0.1:1", "hold": "5s"},
    }
    (tmp_path / "state").mkdir()
    return parse_config(data, environ={})


def event(n: int, size: int = 10, alerted: tuple[str, ...] = ()) -> CaptionedImage:
    return CaptionedImage(
        camera="frontdoor",
        path=f"/cams/frontdoor/{n}.jpg",
        sha256=f"{n:064x}",
        caption=f"caption {n}",
        captioned_at=1_800_000_000.0 + n,
        rules=alerted,
        alerted=alerted,
        data=bytes([n % 256]) * size,
    )


def test_waiting_snapshots_are_bounded_oldest_first(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(link_module, "SNAPSHOT_BUDGET", 1000)
    link = MqttLink(config)
    try:
        for n in range(5):
            link.captioned(event(n, size=400))
        assert link.dropped_snapshots == 3  # 5 x 400 bytes, 1000 kept at most
        kept = [w.data is not None for w in link._waiting]
        assert kept == [False, False, False, True, True]
        assert [w.event.caption for w in link._waiting] == [f"caption {n}" for n in range(5)]
        # One larger than the whole budget still goes: the newest snapshot is never dropped.
        link.captioned(event(9, size=5000))
        assert link._waiting[-1].data is not None
        assert link._waiting_bytes == 5000
    finally:
        link.stop()


def test_waiting_events_are_bounded_and_their_alerts_kept(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(link_module, "QUEUE_MAX", 10)
    link = MqttLink(config, clock=lambda: 100.0)
    try:
        link.captioned(event(0, alerted=("person-down",)))
        for n in range(1, 12):
            link.captioned(event(n))
        assert len(link._waiting) == 10
        assert link.dropped_events == 2
        # The dropped event had alerted: its sensor still turns ON (until now + hold).
        assert link._orphan_on == {"camwatch/frontdoor/person-down": 105.0}
    finally:
        link.stop()


def test_an_alert_while_not_connected_fails_at_once(config: Config) -> None:
    link = MqttLink(config)
    try:
        with pytest.raises(DeliveryFailed) as caught:
            link.publish_alert('{"id": "x"}', timeout=30.0)
        assert caught.value.address == "127.0.0.1:1"
        assert caught.value.failure == "connection"
        assert "pw-9c1e" not in str(caught.value)
    finally:
        link.stop()


def test_discovery_topics_of_a_previous_run_are_recalled(config: Config) -> None:
    memory = Path(config.state_dir) / link_module.MEMORY_FILE
    memory.write_text(json.dumps({"topics": ["homeassistant/binary_sensor/camwatch_x/config"]}))
    link = MqttLink(config, cleared={"homeassistant/sensor/camwatch_y_caption/config"})
    try:
        assert link.published_topics() == {
            "homeassistant/binary_sensor/camwatch_x/config",
            "homeassistant/sensor/camwatch_y_caption/config",
        }
    finally:
        link.stop()
    memory.write_text("not json")
    unreadable = MqttLink(config)
    try:
        assert unreadable.published_topics() == set()
    finally:
        unreadable.stop()


def test_client_id_and_connection_settings(config: Config) -> None:
    assert config.mqtt is not None
    ident = client_id(config.mqtt)
    assert ident.startswith("camwatch-") and len(ident) <= 23
    assert ident == client_id(config.mqtt)
    other = config.mqtt.model_copy(update={"hold": 60.0})
    assert connection_settings(other) == connection_settings(config.mqtt)  # no new connection
    moved = config.mqtt.model_copy(update={"topic_prefix": "cams"})
    assert connection_settings(moved) != connection_settings(config.mqtt)
