"""Messages for people, through Apprise URLs (ntfy, Discord, Telegram, e-mail, ...).

The message (title, body, the image to attach) was formatted when the alert was decided and
stored; a URL that no Apprise plugin understands can never work, so it is refused for good
rather than retried for a week.

The image attached is the bytes that were captioned, stored with the message, never the
image's path opened again: by delivery time an uploader may have replaced the file with a
symbolic link to any file the service can read (its API key, the state database). Apprise is
handed a private copy, written for the one delivery into a fresh folder only this user can
read, and removed afterwards. Not Apprise's in-memory attachment: its `path` is the bare name,
and several plugins (e-mail via SES or Mailgun, Matrix, Pushbullet, form://, ...) open
`attachment.path`, which would read a file of that name in the daemon's working folder.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import tempfile
import threading
from typing import Any

from camwatch.config import Config, NotifyConfig
from camwatch.errors import DeliveryFailed, DeliveryRefused
from camwatch.senders import Sender, TargetKind


def _attached_bytes(message: dict[str, Any]) -> tuple[str, bytes] | None:
    """Return the name and bytes stored to attach with a message, or None. A message stored
    before the bytes were (only the image's path) gets no attachment: the path is never opened."""
    attachment = message.get("attachment")
    if not isinstance(attachment, dict) or not isinstance(attachment.get("base64"), str):
        return None
    try:
        data = base64.b64decode(attachment["base64"], validate=True)
    except (binascii.Error, ValueError):
        return None
    name = attachment.get("name")
    return (name if isinstance(name, str) and name else "snapshot"), data


def _private_copy(folder: str, data: bytes) -> str:
    """Write `data` to a new file only this user can read, in a fresh private folder; return
    its path. The name is fixed: the name shown to people is set on the attachment."""
    path = os.path.join(folder, "snapshot")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def send_notify(target: NotifyConfig, stored: str) -> None:
    """Send one message to every Apprise URL of a notify target. Raise DeliveryRefused if an URL
    is not understood, DeliveryFailed unless every service accepted the message."""
    import apprise  # imported here: it is slow to load and only needed when notify is used
    from apprise.attachment.file import AttachFile

    message = json.loads(stored)
    app = apprise.Apprise()
    for url in target.urls:
        if not app.add(url.get_secret_value()):
            raise DeliveryRefused(f"notify {target.name!r}: an URL is not understood by Apprise")
    attached = _attached_bytes(message) if target.attach_image else None
    folder = None
    try:
        attach = None
        if attached is not None:
            name, data = attached
            folder = tempfile.mkdtemp(prefix="camwatch-notify-")  # mode 0700
            attach = AttachFile(_private_copy(folder, data), name=name)
        if not app.notify(title=message["title"], body=message["body"], attach=attach):
            raise DeliveryFailed(f"notify {target.name!r}: not every service accepted the message")
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


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
