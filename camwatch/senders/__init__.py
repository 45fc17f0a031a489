"""Where alerts go: one Sender per configured target, all behind one interface.

A sender takes an alert's event id and its stored text and either delivers it, or raises
DeliveryFailed (not this time: the outbox tries again with backoff) or DeliveryRefused (never as
configured: the alert goes to the dead letters with the reason, for an operator to fix and
`camwatch retry --alerts`). The dispatcher knows nothing else about a target. A new kind of
target is one new module here with a `senders(config, stop)` function, listed in `_KINDS`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol

from camwatch.config import Config


class TargetKind(StrEnum):
    """The kinds of target an alert can go to (stored with each outbox row)."""

    WEBHOOK = "webhook"
    NOTIFY = "notify"
    MQTT = "mqtt"


class Sender(Protocol):
    """One target: sends an alert, or says why it did not."""

    kind: TargetKind
    name: str
    settings: object  # the target's configuration: a reload restarts a sender whose changed

    def send(self, event_id: str, stored: str) -> None:
        """Deliver one alert. Raise DeliveryFailed to try again later, DeliveryRefused if it
        can never be delivered as configured."""

    def close(self) -> None:
        """Release what the sender holds (connections)."""


def senders_for(
    config: Config, stop: threading.Event, mqtt_link: Callable[[], Any] = lambda: None
) -> list[Sender]:
    """Return a sender for every target the configuration defines. `mqtt_link` returns the
    daemon's current MQTT connection (camwatch/mqtt/link.py), or None."""
    from camwatch.senders import mqtt, notify, webhook  # each kind's module, with its deps

    kinds: list[Callable[[Config, threading.Event], list[Sender]]] = [
        webhook.senders,
        notify.senders,
        functools.partial(mqtt.senders, link=mqtt_link),
    ]
    return [sender for make in kinds for sender in make(config, stop)]
