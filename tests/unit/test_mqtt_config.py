"""The `mqtt:` settings: the broker URL parsed (mqtt://, mqtts://, credentials), plain messages
that never quote a password, the topic prefixes, `hold` and `keepalive`, `ha_device_class`, and
what redaction and the configuration audit know of the broker's credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from camwatch.config import address_warnings, parse_config, readable_secrets
from camwatch.errors import ConfigError
from camwatch.mqtt.address import Broker, parse_broker
from camwatch.service import secrets_of

PASSWORD = "s3cret-mqtt-pw"


def config_with(tmp_path: Path, mqtt: Any = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "cameras": [{"name": "frontdoor", "path": str(tmp_path / "cam")}],
        "state_dir": str(tmp_path / "state"),
        **extra,
    }
    if mqtt is not None:
        data["mqtt"] = mqtt
    return data


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ={})
    return caught.value.problems


@pytest.mark.parametrize(
    ("url", "broker"),
    [
        ("mqtt://broker", Broker(False, "broker", 1883)),
        ("mqtts://broker", Broker(True, "broker", 8883)),
        ("MQTT://broker.lan:1884/", Broker(False, "broker.lan", 1884)),
        ("mqtt://ha:pw@10.0.0.2", Broker(False, "10.0.0.2", 1883, "ha", "pw")),
        ("mqtts://u%40x:p%3Aw%2F@h:8884", Broker(True, "h", 8884, "u@x", "p:w/")),
        ("mqtt://user@h", Broker(False, "h", 1883, "user", None)),
        ("mqtt://user:@h", Broker(False, "h", 1883, "user", "")),
        ("mqtt://[::1]:1883", Broker(False, "::1", 1883)),
    ],
)
def test_broker_urls(url: str, broker: Broker) -> None:
    assert parse_broker(url) == broker
    assert parse_broker(url).password == broker.password  # not compared by ==: repr=False


def test_broker_shown_without_credentials() -> None:
    broker = parse_broker(f"mqtts://camwatch:{PASSWORD}@[fd00::5]:8883")
    assert broker.shown == "mqtts://[fd00::5]:8883"
    assert broker.address == "[fd00::5]:8883"
    assert PASSWORD not in repr(broker)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (f"http://u:{PASSWORD}@h", "got scheme 'http'"),
        (f"u:{PASSWORD}@h:1883", "no scheme"),
        ("mqtt://", "no host"),
        (f"mqtt://u:{PASSWORD}@h:70000", "not a URL this can read"),
        (f"mqtt://u:{PASSWORD}@h/camwatch", "a path, query or fragment means nothing"),
        (f"mqtt://u:{PASSWORD}@h?x=1", "a path, query or fragment means nothing"),
        (f"mqtt://:{PASSWORD}@h", "a password without a user name"),
    ],
)
def test_bad_urls_are_refused_without_the_password(tmp_path: Path, url: str, said: str) -> None:
    found = problems(config_with(tmp_path, {"url": url}))
    assert len(found) == 1
    assert found[0].startswith("mqtt.url: ")
    assert said in found[0]
    assert PASSWORD not in found[0]


def test_defaults(tmp_path: Path) -> None:
    config = parse_config(config_with(tmp_path, {"url": "mqtt://broker"}), environ={})
    assert config.mqtt is not None
    assert config.mqtt.topic_prefix == "camwatch"
    assert config.mqtt.discovery is True
    assert config.mqtt.discovery_prefix == "homeassistant"
    assert config.mqtt.hold == 30.0
    assert config.mqtt.keepalive == 30.0
    assert parse_config(config_with(tmp_path), environ={}).mqtt is None


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({"topic_prefix": ""}, "mqtt.topic_prefix: must not be empty"),
        ({"topic_prefix": "cams/+"}, "mqtt.topic_prefix: '+', '#' and NUL"),
        ({"discovery_prefix": "ha/#"}, "mqtt.discovery_prefix: '+', '#' and NUL"),
        ({"topic_prefix": "/camwatch"}, "mqtt.topic_prefix: no leading, trailing or doubled '/'"),
        ({"topic_prefix": "a//b"}, "mqtt.topic_prefix: no leading, trailing or doubled '/'"),
        (
            {"topic_prefix": "$SYS"},
            "mqtt.topic_prefix: topics starting with '$' belong to the broker",
        ),
        ({"hold": "500ms"}, "mqtt.hold: expected at least 1s"),
        ({"hold": "soon"}, "mqtt.hold: expected a duration, got 'soon'"),
        ({"keepalive": 0}, "mqtt.keepalive: expected between 1s and 65535s, got 0s"),
        ({"keepalive": "1d"}, "mqtt.keepalive: expected between 1s and 65535s"),
        ({"discovery": "maybe"}, "mqtt.discovery: expected true or false"),
        ({"hould": "5s"}, "mqtt.hould: unknown key; did you mean 'hold'?"),
    ],
)
def test_bad_settings(tmp_path: Path, settings: dict[str, Any], said: str) -> None:
    found = problems(config_with(tmp_path, {"url": "mqtt://broker", **settings}))
    assert any(p.startswith(said) for p in found), found


def test_url_is_required(tmp_path: Path) -> None:
    assert problems(config_with(tmp_path, {"topic_prefix": "x"})) == ["mqtt.url: required"]


def test_ha_device_class(tmp_path: Path) -> None:
    rule = {"name": "person-down", "any": ["lying on the ground"], "ha_device_class": "safety"}
    config = parse_config(config_with(tmp_path, rules=[rule]), environ={})
    assert config.rules[0].ha_device_class == "safety"
    plain = parse_config(config_with(tmp_path, rules=[{"name": "r", "any": ["x"]}]), environ={})
    assert plain.rules[0].ha_device_class is None
    found = problems(config_with(tmp_path, rules=[{**rule, "ha_device_class": "safty"}]))
    assert found[0].startswith("rules[0].ha_device_class: expected 'battery'")
    assert found[0].endswith("got 'safty'; did you mean 'safety'?")


def test_secrets_for_redaction(tmp_path: Path) -> None:
    url = f"mqtt://camwatch:{PASSWORD}@broker:1883"
    config = parse_config(config_with(tmp_path, {"url": url}), environ={})
    secrets = secrets_of(config)
    assert url in secrets and PASSWORD in secrets
    # Not the user name alone: "camwatch" would blank out the word in every log line.
    assert "camwatch" not in secrets
    # A URL without credentials is what the logs show as the broker: not a secret.
    bare = parse_config(config_with(tmp_path, {"url": "mqtt://broker:1883"}), environ={})
    assert "mqtt://broker:1883" not in secrets_of(bare)


def test_password_over_plain_mqtt_to_another_host_is_warned(tmp_path: Path) -> None:
    def warnings(url: str) -> list[str]:
        return address_warnings(parse_config(config_with(tmp_path, {"url": url}), environ={}))

    found = warnings(f"mqtt://u:{PASSWORD}@192.168.1.10")
    assert len(found) == 1 and found[0].startswith("mqtt.url: plain mqtt:// to a host")
    assert PASSWORD not in found[0]
    assert warnings(f"mqtts://u:{PASSWORD}@192.168.1.10") == []
    assert warnings(f"mqtt://u:{PASSWORD}@127.0.0.1") == []
    assert warnings("mqtt://192.168.1.10") == []  # no password to lose
    assert warnings("mqtt://169.254.169.254")[0].startswith("mqtt.url: 169.254.169.254 is a link")


def test_a_password_written_in_a_readable_file_is_found(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"mqtt:\n  url: mqtt://u:{PASSWORD}@broker\n")
    path.chmod(0o644)
    exposed = readable_secrets(path)
    assert exposed is not None and exposed.fields == ["mqtt.url"]
    path.write_text("mqtt:\n  url: mqtt://u:${MQTT_PASSWORD}@broker\n")
    assert readable_secrets(path) is None
