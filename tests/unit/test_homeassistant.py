"""Home Assistant discovery: the ids and topics made of camera and rule names, and the config
messages of each entity, with the keys Home Assistant's MQTT documentation requires."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from camwatch import __version__
from camwatch.config import Config, parse_config
from camwatch.homeassistant import caption_message, discovery, rule_pairs
from camwatch.mqtt.topics import (
    alert_topic,
    camera_id,
    caption_topic,
    object_id,
    rule_id,
    rule_topic,
    snapshot_topic,
    status_topic,
)

SAFE = re.compile(r"^[a-zA-Z0-9_-]+$")  # Home Assistant's rule for discovery ids

RULES = [
    {"name": "person-down", "any": ["lying on the ground"], "ha_device_class": "safety"},
    {"name": "vehicle", "any": ["car"], "cameras": ["driveway"]},
]


def make_config(tmp_path: Path, cameras: list[str], **mqtt: Any) -> Config:
    data: dict[str, Any] = {
        "cameras": [{"name": n, "path": str(tmp_path / f"cam{i}")} for i, n in enumerate(cameras)],
        "state_dir": str(tmp_path / "state"),
        "rules": RULES if "driveway" in cameras else RULES[:1],
        "mqtt": {"url": "mqtt://broker", **mqtt},
    }
    return parse_config(data, environ={})


# -- ids and topics -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["frontdoor", "person-down", "cam_2", "A-Z_09"])
def test_safe_names_are_kept(name: str) -> None:
    assert object_id(name) == name


@pytest.mark.parametrize(
    ("name", "start"),
    [
        ("front door", "front_door_"),
        ("front/door", "front_door_"),
        ("cam+1", "cam_1_"),
        ("#", "x_"),
        ("Küche", "K_che_"),
        ("  spaced  ", "spaced_"),
    ],
)
def test_unsafe_names_are_cleaned_and_told_apart(name: str, start: str) -> None:
    cleaned = object_id(name)
    assert SAFE.match(cleaned)
    assert cleaned.startswith(start)
    assert re.fullmatch(re.escape(start) + r"[0-9a-f]{6}", cleaned)
    assert object_id(name) == cleaned  # stable: the same entity after every restart


def test_names_that_clean_alike_stay_apart() -> None:
    ids = {object_id(n) for n in ("front door", "front/door", "front+door", "front_door")}
    assert len(ids) == 4


def test_rules_never_take_a_camera_topic() -> None:
    assert rule_id("caption") != "caption" and rule_id("caption").startswith("caption_")
    assert rule_id("snapshot").startswith("snapshot_")
    assert camera_id("caption") == "caption"  # P/caption/caption is its own topic


def test_topics() -> None:
    assert status_topic("cw") == "cw/status"
    assert alert_topic("cw") == "cw/alert"
    assert caption_topic("cw", "front door") == f"cw/{object_id('front door')}/caption"
    assert snapshot_topic("cw", "frontdoor") == "cw/frontdoor/snapshot"
    assert rule_topic("a/b", "frontdoor", "person-down") == "a/b/frontdoor/person-down"
    for topic in (rule_topic("cw", "cam/+#", "rule/#"), caption_topic("cw", "#")):
        assert "+" not in topic and "#" not in topic and topic.count("/") == 2


# -- discovery ------------------------------------------------------------------------------------


def messages(config: Config, **types: str) -> dict[str, dict[str, Any]]:
    return {t: json.loads(p) for t, p in discovery(config, types).messages.items()}


def test_entities_per_camera(tmp_path: Path) -> None:
    found = messages(make_config(tmp_path, ["frontdoor", "driveway"]))
    assert set(found) == {
        "homeassistant/sensor/camwatch_frontdoor_caption/config",
        "homeassistant/image/camwatch_frontdoor_snapshot/config",
        "homeassistant/binary_sensor/camwatch_frontdoor_person-down/config",
        "homeassistant/sensor/camwatch_driveway_caption/config",
        "homeassistant/image/camwatch_driveway_snapshot/config",
        "homeassistant/binary_sensor/camwatch_driveway_person-down/config",
        "homeassistant/binary_sensor/camwatch_driveway_vehicle/config",  # cameras: [driveway]
    }
    for topic, payload in found.items():
        # <discovery_prefix>/<component>/<object_id>/config, the object id the unique id.
        assert topic.split("/")[2] == payload["unique_id"]
        assert SAFE.match(payload["unique_id"])
        assert payload["availability_topic"] == "camwatch/status"
        assert payload["payload_available"] == "online"
        assert payload["payload_not_available"] == "offline"
        assert payload["origin"] == {"name": "camwatch", "sw_version": __version__}
        device = payload["device"]
        camera = device["name"]
        assert device == {
            "identifiers": [f"camwatch_{camera}"],
            "name": camera,
            "manufacturer": "camwatch",
            "model": "camera folder",
            "sw_version": __version__,
        }
        # Full key names only: no abbreviation (`stat_t`, `dev`, ...) anywhere.
        assert not {"~", "dev", "o", "stat_t", "avty_t", "uniq_id"} & set(payload)


def test_binary_sensor(tmp_path: Path) -> None:
    found = messages(make_config(tmp_path, ["frontdoor", "driveway"]))
    down = found["homeassistant/binary_sensor/camwatch_frontdoor_person-down/config"]
    assert down["name"] == "person-down"
    assert down["unique_id"] == "camwatch_frontdoor_person-down"
    assert down["state_topic"] == "camwatch/frontdoor/person-down"
    assert (down["payload_on"], down["payload_off"]) == ("ON", "OFF")
    assert down["device_class"] == "safety"
    vehicle = found["homeassistant/binary_sensor/camwatch_driveway_vehicle/config"]
    assert "device_class" not in vehicle  # none configured: Home Assistant's generic on/off


def test_caption_sensor_and_image(tmp_path: Path) -> None:
    config = make_config(tmp_path, ["frontdoor", "driveway"])
    found = messages(config, driveway="image/png")
    sensor = found["homeassistant/sensor/camwatch_frontdoor_caption/config"]
    assert sensor["name"] == "Last caption"
    assert sensor["state_topic"] == "camwatch/frontdoor/caption"
    assert sensor["json_attributes_topic"] == "camwatch/frontdoor/caption"
    assert sensor["value_template"] == "{{ value_json.caption[:255] }}"
    image = found["homeassistant/image/camwatch_frontdoor_snapshot/config"]
    assert image["name"] == "Snapshot"
    assert image["image_topic"] == "camwatch/frontdoor/snapshot"
    assert image["content_type"] == "image/jpeg"  # until a PNG is seen
    assert "url_topic" not in image  # exclusive with image_topic
    png = found["homeassistant/image/camwatch_driveway_snapshot/config"]
    assert png["content_type"] == "image/png"


def test_prefixes_and_display_names(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, ["Front Door"], topic_prefix="home/cams", discovery_prefix="ha-discovery"
    )
    cid = object_id("Front Door")
    found = messages(config)
    sensor = found[f"ha-discovery/sensor/camwatch_{cid}_caption/config"]
    assert sensor["device"]["name"] == "Front Door"  # the name as written
    assert sensor["device"]["identifiers"] == [f"camwatch_{cid}"]
    assert sensor["state_topic"] == f"home/cams/{cid}/caption"
    assert sensor["availability_topic"] == "home/cams/status"


def test_without_discovery_nothing_is_announced(tmp_path: Path) -> None:
    config = make_config(tmp_path, ["frontdoor"], discovery=False)
    assert discovery(config).messages == {}
    assert [c for c, _ in rule_pairs(config)] == ["frontdoor"]  # the sensors' states still go


def test_a_taken_unique_id_is_reported_not_published_twice(tmp_path: Path) -> None:
    data: dict[str, Any] = {
        "cameras": [
            {"name": "a_b", "path": str(tmp_path / "1")},
            {"name": "a", "path": str(tmp_path / "2")},
        ],
        "state_dir": str(tmp_path / "state"),
        "rules": [{"name": "c", "any": ["x"]}, {"name": "b_c", "any": ["y"]}],
        "mqtt": {"url": "mqtt://broker"},
    }
    found = discovery(parse_config(data, environ={}))
    assert found.collisions == [("a", "b_c", "camwatch_a_b_c")]
    assert "homeassistant/binary_sensor/camwatch_a_b_c/config" in found.messages


def test_caption_message() -> None:
    text = caption_message("A car.", "/cams/x.jpg", "ab" * 32, "2026-11-23T12:00:01.512Z", ["v"])
    assert json.loads(text) == {
        "caption": "A car.",
        "image": "/cams/x.jpg",
        "sha256": "ab" * 32,
        "captioned_at": "2026-11-23T12:00:01.512Z",
        "rules": ["v"],
    }
