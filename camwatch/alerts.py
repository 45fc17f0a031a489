"""What an alert says: the webhook body and the notify message, built once when the alert is
decided and stored, so every retry sends the same bytes with the same event id.

Sending them is the senders' job (camwatch/senders/).
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from camwatch.config import Config, NotifyConfig
from camwatch.files import printable_path
from camwatch.rules import RuleDecision
from camwatch.store import AlertCandidate


def iso_utc(timestamp: float) -> str:
    """Given a Unix time, return it as `2026-11-23T12:00:01.512Z`."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def new_event_id() -> str:
    """Return a fresh alert id."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Alert:
    """One rule's alert about one image: the fields of the webhook body."""

    event_id: str
    rule: str
    severity: str
    camera: str
    image: str  # the path as read (undecodable bytes are written as \xNN in the body)
    sha256: str
    caption: str
    matched: tuple[str, ...]
    detected_at: float
    alerted_at: float


def all_targets(config: Config) -> list[tuple[str, str]]:
    """Return (kind, name) of every delivery target a configuration defines."""
    targets = [("webhook", w.name) for w in config.webhooks]
    targets += [("notify", n.name) for n in config.notify]
    return targets + mqtt_target(config)


def every_target(config: Config, message: str) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Return every delivery target of a configuration, for the alerts about camwatch itself
    (silent cameras, cost pauses), with `message` as each notify target's message."""
    return all_targets(config), {n.name: message for n in config.notify}


def mqtt_target(config: Config) -> list[tuple[str, str]]:
    """Return the mqtt target (`P/alert`) if the configuration has `mqtt`: it gets every
    alert, the rules' `webhooks` and `notify` lists do not name it."""
    return [("mqtt", "mqtt")] if config.mqtt is not None else []


def alert_body(alert: Alert) -> str:
    """Return the webhook body of the spec, as the exact text that will be sent."""
    payload = {
        "id": alert.event_id,
        "event": "camwatch.alert",
        "rule": alert.rule,
        "severity": alert.severity,
        "camera": alert.camera,
        "image": printable_path(alert.image),
        "sha256": alert.sha256,
        "caption": alert.caption,
        "matched": list(alert.matched),
        "detected_at": iso_utc(alert.detected_at),
        "alerted_at": iso_utc(alert.alerted_at),
    }
    return json.dumps(payload, ensure_ascii=False)


def notify_body(
    target: NotifyConfig,
    fields: dict[str, Any],
    image_data: bytes | None = None,
) -> str:
    """Return the stored form of a notify message: its title, body and, for a target with
    `attach_image`, the image's bytes (base64) with the name to attach them under.

    The bytes are the ones that were captioned, stored with the message: the sender never opens
    the image's path again, which by then may be a link to any file the service can read."""
    title = _format(target.title, fields)
    text = _format(target.body, fields)
    message: dict[str, Any] = {"title": title, "body": text, "image": fields.get("image")}
    if target.attach_image and image_data:
        image = fields.get("image")
        name = printable_path(os.path.basename(image)) if isinstance(image, str) else ""
        message["attachment"] = {
            "name": name or "snapshot",
            "base64": base64.b64encode(image_data).decode("ascii"),
        }
    return json.dumps(message)


class _Fields(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _format(template: str, fields: dict[str, Any]) -> str:
    try:
        return template.format_map(_Fields(fields))
    except (ValueError, IndexError, AttributeError):
        return template


def alert_candidates(
    config: Config,
    decisions: list[RuleDecision],
    camera: str,
    image: str,
    sha256: str,
    caption: str,
    detected_at: float,
    alerted_at: float,
    image_data: bytes | None = None,
) -> list[AlertCandidate]:
    """Given the rules that matched a caption, return one alert per rule, with its body built
    once for every target. `image_data` is the image as captioned: notify targets with
    `attach_image` get these bytes (without them, no image is attached)."""
    rules = {rule.name: rule for rule in config.rules}
    notify = {n.name: n for n in config.notify}
    out = []
    for decision in decisions:
        rule = rules[decision.rule]
        alert = Alert(
            event_id=new_event_id(),
            rule=rule.name,
            severity=rule.severity,
            camera=camera,
            image=image,
            sha256=sha256,
            caption=caption,
            matched=tuple(decision.phrases),
            detected_at=detected_at,
            alerted_at=alerted_at,
        )
        hooks = rule.webhooks if rule.webhooks is not None else [w.name for w in config.webhooks]
        notes = rule.notify if rule.notify is not None else list(notify)
        targets = [("webhook", name) for name in hooks] + [("notify", name) for name in notes]
        targets += mqtt_target(config)
        fields = {
            "id": alert.event_id,
            "rule": rule.name,
            "severity": rule.severity,
            "camera": camera,
            "image": image,
            "caption": caption,
            "matched": ", ".join(decision.phrases),
        }
        # Notify targets are people: each gets its own message, formatted now and stored.
        messages = {name: notify_body(notify[name], fields, image_data) for name in notes}
        out.append(
            AlertCandidate(
                alert.event_id,
                rule.name,
                camera,
                rule.cooldown,
                targets,
                alert_body(alert),
                messages,
            )
        )
    return out
