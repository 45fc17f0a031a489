"""The `mqtt` target: each alert's JSON body on `P/alert`, QoS 1, not retained.

The body is the webhook's, built once when the alert was decided, sent byte for byte on every
try with the same `id`, so a subscriber drops duplicates by id. Delivered means the broker
acknowledged it (PUBACK); while the broker is away, or refuses us, the alert fails this try and
waits in the outbox (DeliveryFailed), so an outage delays it and loses nothing. The connection
is the daemon's one link (camwatch/mqtt/link.py), looked up at each try: a reload may replace it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from camwatch.config import Config
from camwatch.errors import DeliveryFailed
from camwatch.mqtt.link import MqttLink
from camwatch.senders import Sender, TargetKind

NAME = "mqtt"  # the target's name in the outbox, logs and `status`
ACK_TIMEOUT = 10.0  # how long a try waits for the broker's PUBACK

LinkGetter = Callable[[], MqttLink | None]


class MqttSender:
    """Publishes alerts through the current link."""

    kind = TargetKind.MQTT
    name = NAME

    def __init__(self, settings: object, link: LinkGetter) -> None:
        self.settings = settings
        self._link = link

    def send(self, event_id: str, stored: str) -> None:
        link = self._link()
        if link is None:
            raise DeliveryFailed("mqtt: not connected yet", failure="connection")
        link.publish_alert(stored, ACK_TIMEOUT)

    def close(self) -> None:
        """Nothing to release: the link belongs to the service."""


def senders(config: Config, stop: threading.Event, link: LinkGetter) -> list[Sender]:
    """Return the mqtt target if the configuration has `mqtt`."""
    if config.mqtt is None:
        return []
    return [MqttSender(config.mqtt, link)]
