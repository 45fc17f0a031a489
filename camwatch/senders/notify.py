"""Messages for people, through Apprise URLs (ntfy, Discord, Telegram, e-mail, ...).

The message (title, body, the image to attach) was formatted when the alert was decided and
stored; a URL that no Apprise plugin understands can never work, so it is refused for good
rather than retried for a week.
"""

from __future__ import annotations

import json
import os
import threading

from camwatch.config import Config, NotifyConfig
from camwatch.errors import DeliveryFailed, DeliveryRefused
from camwatch.senders import Sender, TargetKind


def send_notify(target: NotifyConfig, stored: str) -> None:
    """Send one message to every Apprise URL of a notify target. Raise DeliveryRefused if an URL
    is not understood, DeliveryFailed unless every service accepted the message."""
    import apprise  # imported here: it is slow to load and only needed when notify is used

    message = json.loads(stored)
    app = apprise.Apprise()
    for url in target.urls:
        if not app.add(url.get_secret_value()):
            raise DeliveryRefused(f"notify {target.name!r}: an URL is not understood by Apprise")
    attach = None
    if target.attach_image and message.get("image") and os.path.isfile(message["image"]):
        attach = message["image"]
    if not app.notify(title=message["title"], body=message["body"], attach=attach):
        raise DeliveryFailed(f"notify {target.name!r}: not every service accepted the message")


class NotifySender:
    """One notify target: a list of Apprise URLs."""

    kind = TargetKind.NOTIFY

    def __init__(self, target: NotifyConfig) -> None:
        self.name = target.name
        self.settings = target
        self._target = target

    def send(self, event_id: str, stored: str) -> None:
        send_notify(self._target, stored)

    def close(self) -> None:
        pass  # Apprise holds nothing between messages


def senders(config: Config, stop: threading.Event) -> list[Sender]:
    """Return a sender per configured notify target."""
    return [NotifySender(target) for target in config.notify]
