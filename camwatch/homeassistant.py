"""Home Assistant MQTT discovery: the retained config messages that make camwatch's entities
appear there by themselves (pure functions; camwatch/mqtt/link.py publishes them).

Per camera, one device (`identifiers: ["camwatch_CAMERA"]`) with:
- a `binary_sensor` per rule that applies to the camera (`unique_id: camwatch_CAMERA_RULE`),
  reading `P/CAMERA/RULE` (`ON` / `OFF`), its `device_class` the rule's `ha_device_class`;
- a `sensor`, the last caption: its state is the caption cut to 255 characters (the longest
  state Home Assistant keeps), and the whole caption JSON of `P/CAMERA/caption` is its
  attributes (`caption`, `image`, `sha256`, `captioned_at`, `rules`);
- an `image`, the last captioned snapshot on `P/CAMERA/snapshot`, with its `content_type`.

Every entity is unavailable while `P/status` is `offline`. Each config goes to
`<discovery_prefix>/<component>/<unique_id>/config` (Home Assistant's advice for entities with a
unique id), with the full key names (no abbreviations) and an `origin`. An empty retained
message on a config topic removes the entity.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from camwatch import __version__
from camwatch.config import Config, RuleConfig
from camwatch.mqtt.topics import (
    camera_id,
    caption_topic,
    rule_id,
    rule_topic,
    snapshot_topic,
    status_topic,
)

ON = "ON"
OFF = "OFF"
ONLINE = "online"
OFFLINE = "offline"
JPEG = "image/jpeg"
STATE_MAX = 255  # Home Assistant refuses a longer state


@dataclass(frozen=True)
class Discovery:
    """The discovery messages of a configuration: topic -> JSON text, and the rule sensors left
    out because their unique id was already taken by another camera and rule."""

    messages: dict[str, str] = field(default_factory=dict)
    collisions: list[tuple[str, str, str]] = field(default_factory=list)  # (camera, rule, id)


def rule_pairs(config: Config) -> list[tuple[str, RuleConfig]]:
    """Return (camera name, rule) for every rule that applies to every camera: the binary
    sensors (a rule's schedule does not matter: the sensor exists, and stays OFF outside it)."""
    return [
        (camera.name, rule)
        for camera in config.cameras
        for rule in config.rules
        if rule.cameras is None or camera.name in rule.cameras
    ]


def device(camera: str) -> dict[str, Any]:
    """Return the Home Assistant device of a camera."""
    return {
        "identifiers": [f"camwatch_{camera_id(camera)}"],
        "name": camera,
        "manufacturer": "camwatch",
        "model": "camera folder",
        "sw_version": __version__,
    }


def _common(prefix: str, camera: str, unique_id: str, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "unique_id": unique_id,
        "availability_topic": status_topic(prefix),
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": device(camera),
        "origin": {"name": "camwatch", "sw_version": __version__},
    }


def rule_sensor(prefix: str, camera: str, rule: RuleConfig) -> tuple[str, dict[str, Any]]:
    """Return the unique id and the config of a rule's binary sensor on a camera."""
    unique_id = f"camwatch_{camera_id(camera)}_{rule_id(rule.name)}"
    payload = _common(prefix, camera, unique_id, rule.name)
    payload["state_topic"] = rule_topic(prefix, camera, rule.name)
    payload["payload_on"] = ON
    payload["payload_off"] = OFF
    if rule.ha_device_class is not None:
        payload["device_class"] = rule.ha_device_class
    return unique_id, payload


def caption_sensor(prefix: str, camera: str) -> tuple[str, dict[str, Any]]:
    """Return the unique id and the config of a camera's last-caption sensor."""
    unique_id = f"camwatch_{camera_id(camera)}_caption"
    payload = _common(prefix, camera, unique_id, "Last caption")
    topic = caption_topic(prefix, camera)
    payload["state_topic"] = topic
    payload["value_template"] = "{{ value_json.caption[:" + str(STATE_MAX) + "] }}"
    payload["json_attributes_topic"] = topic
    return unique_id, payload


def snapshot_image(prefix: str, camera: str, content_type: str) -> tuple[str, dict[str, Any]]:
    """Return the unique id and the config of a camera's last-snapshot image entity."""
    unique_id = f"camwatch_{camera_id(camera)}_snapshot"
    payload = _common(prefix, camera, unique_id, "Snapshot")
    payload["image_topic"] = snapshot_topic(prefix, camera)
    payload["content_type"] = content_type
    return unique_id, payload


def config_topic(discovery_prefix: str, component: str, unique_id: str) -> str:
    """Return `<discovery_prefix>/<component>/<unique_id>/config`."""
    return f"{discovery_prefix}/{component}/{unique_id}/config"


def discovery(config: Config, content_types: Mapping[str, str] | None = None) -> Discovery:
    """Given a configuration with `mqtt`, return its discovery messages (none without
    `mqtt.discovery`). `content_types` maps a camera name to the type of its last snapshot
    (default `image/jpeg`)."""
    mqtt = config.mqtt
    out = Discovery()
    if mqtt is None or not mqtt.discovery:
        return out
    types = content_types or {}
    prefix, where = mqtt.topic_prefix, mqtt.discovery_prefix

    def add(component: str, unique_id: str, payload: dict[str, Any]) -> None:
        text = json.dumps(payload, ensure_ascii=False)
        out.messages[config_topic(where, component, unique_id)] = text

    for camera in config.cameras:
        add("sensor", *caption_sensor(prefix, camera.name))
        add("image", *snapshot_image(prefix, camera.name, types.get(camera.name, JPEG)))
    taken: set[str] = set()
    for camera_name, rule in rule_pairs(config):
        unique_id, payload = rule_sensor(prefix, camera_name, rule)
        if unique_id in taken:
            out.collisions.append((camera_name, rule.name, unique_id))
            continue
        taken.add(unique_id)
        add("binary_sensor", unique_id, payload)
    return out


def caption_message(
    caption: str, image: str, sha256: str, captioned_at: str, rules: list[str]
) -> str:
    """Return the JSON of `P/CAMERA/caption`."""
    payload = {
        "caption": caption,
        "image": image,
        "sha256": sha256,
        "captioned_at": captioned_at,
        "rules": rules,
    }
    return json.dumps(payload, ensure_ascii=False)
