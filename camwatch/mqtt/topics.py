"""Topic names, and the ids made of camera and rule names.

Home Assistant wants the ids in discovery topics and unique ids made of `[a-zA-Z0-9_-]` only,
and a name with `/`, `+` or `#` would add a topic level or a wildcard. A name made of those
characters alone is used as it is (`frontdoor`, `person-down`); any other is cleaned and gets
six hex digits of its SHA-256, so that two names that clean alike (`front door`, `front/door`)
keep apart. The display names stay as written.

    P/status             online / offline (the last will)
    P/CAMERA/caption     the last caption, JSON
    P/CAMERA/snapshot    the last captioned image's bytes
    P/CAMERA/RULE        ON / OFF
    P/alert              every alert's JSON body (QoS 1, not retained)
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]+")
_SAFE = re.compile(r"^[a-zA-Z0-9_-]+$")
_WILDCARDS = ("+", "#", "\0")

CAPTION = "caption"
SNAPSHOT = "snapshot"
# A rule called like a camera's other topics would share its topic: it gets the suffix too.
RULE_RESERVED = frozenset({CAPTION, SNAPSHOT})


def object_id(name: str, reserved: frozenset[str] = frozenset()) -> str:
    """Given a camera or rule name, return the id that topics and unique ids use: the name
    itself when it is made of `[a-zA-Z0-9_-]` and not `reserved`, else the cleaned name and six
    hex digits of the name's SHA-256."""
    if _SAFE.match(name) and name not in reserved:
        return name
    clean = _UNSAFE.sub("_", name).strip("_") or "x"
    return f"{clean}_{hashlib.sha256(name.encode()).hexdigest()[:6]}"


def camera_id(name: str) -> str:
    """Return a camera's id in topics and unique ids."""
    return object_id(name)


def rule_id(name: str) -> str:
    """Return a rule's id in topics and unique ids (never `caption` or `snapshot`)."""
    return object_id(name, RULE_RESERVED)


def status_topic(prefix: str) -> str:
    """Return `P/status`."""
    return f"{prefix}/status"


def alert_topic(prefix: str) -> str:
    """Return `P/alert`."""
    return f"{prefix}/alert"


def caption_topic(prefix: str, camera: str) -> str:
    """Return `P/CAMERA/caption` for a camera name."""
    return f"{prefix}/{camera_id(camera)}/{CAPTION}"


def snapshot_topic(prefix: str, camera: str) -> str:
    """Return `P/CAMERA/snapshot` for a camera name."""
    return f"{prefix}/{camera_id(camera)}/{SNAPSHOT}"


def rule_topic(prefix: str, camera: str, rule: str) -> str:
    """Return `P/CAMERA/RULE`, the state of a rule's binary sensor on a camera."""
    return f"{prefix}/{camera_id(camera)}/{rule_id(rule)}"


def prefix_problem(value: str) -> str | None:
    """Given a topic prefix, return why it cannot be one, or None."""
    if not value:
        return "must not be empty"
    if any(c in value for c in _WILDCARDS):
        return "'+', '#' and NUL are wildcards or forbidden in MQTT topic names"
    if value.startswith("$"):
        return "topics starting with '$' belong to the broker"
    if value.startswith("/") or value.endswith("/") or "//" in value:
        return "no leading, trailing or doubled '/' (each level needs a name)"
    return None
