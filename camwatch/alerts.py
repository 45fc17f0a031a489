"""Alert payloads, their signature, and one delivery attempt to a webhook or a notify target.

The body is built once, when the alert is decided, and stored; every retry sends those same
bytes with the same event id, so a receiver can verify and de-duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
import tenacity

from camwatch import __version__
from camwatch.config import NotifyConfig, WebhookConfig
from camwatch.files import printable_path
from camwatch.log import get_logger

log = get_logger(__name__)

USER_AGENT = f"camwatch/{__version__}"


def iso_utc(timestamp: float) -> str:
    """Given a Unix time, return it as `2026-11-23T12:00:01.512Z`."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def new_event_id() -> str:
    """Return a fresh alert id."""
    return str(uuid.uuid4())


def alert_body(
    event_id: str,
    rule: str,
    severity: str,
    camera: str,
    image: str,
    sha256: str,
    caption: str,
    matched: list[str],
    detected_at: float,
    alerted_at: float,
) -> str:
    """Return the webhook body of the spec, as the exact text that will be sent."""
    payload = {
        "id": event_id,
        "event": "camwatch.alert",
        "rule": rule,
        "severity": severity,
        "camera": camera,
        "image": printable_path(image),
        "sha256": sha256,
        "caption": caption,
        "matched": matched,
        "detected_at": iso_utc(detected_at),
        "alerted_at": iso_utc(alerted_at),
    }
    return json.dumps(payload, ensure_ascii=False)


def sign(body: bytes, secret: str) -> str:
    """Return the `X-Camwatch-Signature` value: `sha256=<hex HMAC-SHA256 of body>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_headers(event_id: str, body: bytes, hook: WebhookConfig) -> dict[str, str]:
    """Return the headers of one webhook POST."""
    headers = {"User-Agent": USER_AGENT, **hook.headers}
    headers["Content-Type"] = "application/json"
    headers["X-Camwatch-Event-Id"] = event_id
    if hook.secret is not None and hook.secret.get_secret_value():
        headers["X-Camwatch-Signature"] = sign(body, hook.secret.get_secret_value())
    return headers


class DeliveryFailed(Exception):
    """A delivery attempt did not reach the target (non-2xx, connection error, timeout)."""


@dataclass(frozen=True)
class QuickRetry:
    """The short, in-call retry of a delivery; longer outages are left to the outbox schedule."""

    attempts: int = 3
    initial: float = 0.5
    maximum: float = 5.0


def post_webhook(
    session: requests.Session,
    hook: WebhookConfig,
    event_id: str,
    body: str,
    stop: threading.Event,
    quick: QuickRetry = QuickRetry(),
) -> int:
    """POST one alert to a webhook, retrying quickly (tenacity, exponential backoff with jitter)
    on non-2xx answers and connection errors. Return the HTTP status. Raise DeliveryFailed."""
    raw = body.encode()
    headers = webhook_headers(event_id, raw, hook)

    def attempt() -> int:
        try:
            response = session.post(hook.url, data=raw, headers=headers, timeout=hook.timeout)
        except requests.RequestException as exc:
            raise DeliveryFailed(f"{type(exc).__name__} reaching webhook {hook.name!r}") from None
        with response:
            if 200 <= response.status_code < 300:
                return response.status_code
            raise DeliveryFailed(f"HTTP {response.status_code} from webhook {hook.name!r}")

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(DeliveryFailed),
        stop=tenacity.stop_after_attempt(quick.attempts),
        wait=_quick_wait(quick),
        sleep=_interruptible_sleep(stop),
        reraise=True,
    )
    return int(retrying(attempt))


def _quick_wait(quick: QuickRetry) -> Any:
    # Not tenacity.wait_exponential_jitter: tenacity 9 deprecates its `initial` (a warning on
    # every call) and tenacity 8 lacks the `multiplier` that replaces it.
    def wait(retry_state: tenacity.RetryCallState) -> float:
        base = quick.initial * 2 ** (retry_state.attempt_number - 1)
        return min(base + random.uniform(0, quick.initial), quick.maximum)

    return wait


def _interruptible_sleep(stop: threading.Event) -> Any:
    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise DeliveryFailed("shutting down")

    return sleep


def notify_body(
    target: NotifyConfig,
    fields: dict[str, Any],
) -> str:
    """Return the stored form of a notify message: its title, body and image to attach."""
    title = _format(target.title, fields)
    text = _format(target.body, fields)
    return json.dumps({"title": title, "body": text, "image": fields.get("image")})


class _Fields(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _format(template: str, fields: dict[str, Any]) -> str:
    try:
        return template.format_map(_Fields(fields))
    except (ValueError, IndexError, AttributeError):
        return template


def send_notify(target: NotifyConfig, stored: str) -> None:
    """Send one message to every Apprise URL of a notify target. Raise DeliveryFailed unless
    every URL accepted it."""
    import apprise  # imported here: it is slow to load and only needed when notify is used

    message = json.loads(stored)
    app = apprise.Apprise()
    for url in target.urls:
        if not app.add(url.get_secret_value()):
            raise DeliveryFailed(f"notify {target.name!r}: an URL is not understood by Apprise")
    attach = None
    if target.attach_image and message.get("image"):
        import os

        if os.path.isfile(message["image"]):
            attach = message["image"]
    if not app.notify(title=message["title"], body=message["body"], attach=attach):
        raise DeliveryFailed(f"notify {target.name!r}: not every service accepted the message")
