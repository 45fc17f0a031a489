"""Messages for people, through Apprise URLs (ntfy, Discord, Telegram, e-mail, ...).

The message (title, body, the image to attach) was formatted when the alert was decided and
stored; a URL that no Apprise plugin understands can never work, so it is refused for good
rather than retried for a week. Each URL is sent to on its own, so that a failure names which
(`urls[1]`), its service and, as far as Apprise tells, the kind of failure (`http 503`,
`connection`); never the URL, whose parts are often tokens.

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
import contextlib
import json
import os
import re
import shutil
import tempfile
import threading
from typing import Any

from camwatch.config import Config, NotifyConfig
from camwatch.errors import DeliveryFailed, DeliveryRefused
from camwatch.netfail import CONNECTION, NetFailure, http_failure
from camwatch.senders import Sender, TargetKind

# How Apprise's plugins word an HTTP status in their warnings: "...: Not Found, error=404."
_STATUS = re.compile(r"\berror=(\d{3})\b")


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


def _warnings_of(result: Any) -> list[str]:
    """Return what Apprise warned of during one notify call: the words of its result (Apprise
    2.x captures them per call, whatever thread the service ran on); none from an older
    Apprise, whose notify returns a bare bool."""
    logs = getattr(result, "logs", None)
    if not callable(logs):
        return []
    try:
        return [str(entry.message) for entry in logs()]
    except Exception:  # a result that does not look as expected: no detail, not a crash
        return []


def _notify_failure(messages: list[str]) -> NetFailure:
    """Given what Apprise warned of while a service failed, return the kind of failure. Only a
    status or the fact of a connection error is taken from its words: they may name the
    service's host, which for some services is a token."""
    for text in messages:
        status = _STATUS.search(text)
        if status:
            return http_failure(int(status.group(1)))
    if any("connection error" in text.lower() for text in messages):
        return NetFailure(CONNECTION, "cannot connect to the service")
    return NetFailure("rejected", "the service did not accept the message")


def _service_name(app: Any) -> str:
    """Return the name of the one service an Apprise object holds ("JSON", "ntfy", ...)."""
    with contextlib.suppress(Exception):
        name = getattr(app[0], "service_name", None)
        if isinstance(name, str) and name:
            return name
    return "Apprise"


def send_notify(target: NotifyConfig, stored: str) -> None:
    """Send one message to every Apprise URL of a notify target, one URL at a time (so that a
    failure says which). Raise DeliveryRefused if an URL is not understood, DeliveryFailed
    unless every service accepted the message, naming the first that did not (`urls[j]`, its
    service, the kind of failure), never its URL."""
    import apprise  # imported here: it is slow to load and only needed when notify is used
    from apprise.attachment.file import AttachFile

    message = json.loads(stored)
    services: list[Any] = []
    for index, url in enumerate(target.urls):
        app = apprise.Apprise()
        if not app.add(url.get_secret_value()):
            raise DeliveryRefused(
                f"notify {target.name!r}: urls[{index}] is not understood by Apprise",
                failure="unsupported url",
                reason="no Apprise plugin understands this URL",
                url=f"urls[{index}]",
            )
        services.append(app)
    attached = _attached_bytes(message) if target.attach_image else None
    folder = None
    failures: list[tuple[int, str, NetFailure]] = []
    try:
        attach = None
        if attached is not None:
            name, data = attached
            folder = tempfile.mkdtemp(prefix="camwatch-notify-")  # mode 0700
            attach = AttachFile(_private_copy(folder, data), name=name)
        for index, app in enumerate(services):
            sent = app.notify(title=message["title"], body=message["body"], attach=attach)
            if not sent:
                failures.append((index, _service_name(app), _notify_failure(_warnings_of(sent))))
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    if failures:
        index, service, failed = failures[0]
        more = f" (and {len(failures) - 1} more of its URLs)" if len(failures) > 1 else ""
        raise DeliveryFailed(
            f"notify {target.name!r} urls[{index}] ({service}): {failed.reason}{more}",
            failure=failed.failure,
            reason=failed.reason,
            url=f"urls[{index}]",
        )


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
