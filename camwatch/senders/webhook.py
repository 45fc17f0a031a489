"""Webhooks: signed JSON POSTed to a URL, with a short retry inside the call.

The body was built once, when the alert was decided, and is sent byte for byte on every try with
the same event id, so a receiver can verify it and drop duplicates. A 2xx answer is delivery; 404
and 410 (the URL is wrong or gone) are refused for good; anything else (a refused connection, a
timeout, 5xx, 429, another 4xx) is tried again.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import threading
from dataclasses import dataclass
from typing import Any

import requests
import tenacity
from requests.adapters import HTTPAdapter

from camwatch import __version__
from camwatch.backoff import backoff
from camwatch.config import Config, WebhookConfig
from camwatch.errors import DeliveryFailed, DeliveryRefused
from camwatch.senders import Sender, TargetKind
from camwatch.sessions import settle_environment

USER_AGENT = f"camwatch/{__version__}"

# Answers that say the URL itself is wrong or gone: trying again for a week would not help.
# (Others, 400 and 422 included, are retried as the contract says: a receiver being redeployed
# answers them for a while too.)
REFUSED_STATUSES = frozenset({404, 410})


@dataclass(frozen=True)
class QuickRetry:
    """The short, in-call retry of a delivery; longer outages are left to the outbox schedule."""

    attempts: int = 3
    initial: float = 0.5
    maximum: float = 5.0


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


def post_webhook(
    session: requests.Session,
    hook: WebhookConfig,
    event_id: str,
    body: str,
    stop: threading.Event,
    quick: QuickRetry = QuickRetry(),
) -> int:
    """POST one alert to a webhook, retrying quickly (tenacity, backoff with jitter) on answers
    that may pass and on connection errors. Return the HTTP status. Raise DeliveryFailed, or
    DeliveryRefused for an answer that will not change."""
    raw = body.encode()
    headers = webhook_headers(event_id, raw, hook)

    def attempt() -> int:
        try:
            response = session.post(hook.url, data=raw, headers=headers, timeout=hook.timeout)
        except requests.RequestException as exc:
            raise DeliveryFailed(f"{type(exc).__name__} reaching webhook {hook.name!r}") from None
        with response:
            status = response.status_code
            if 200 <= status < 300:
                return status
            if status in REFUSED_STATUSES:
                raise DeliveryRefused(f"HTTP {status} from webhook {hook.name!r}")
            raise DeliveryFailed(f"HTTP {status} from webhook {hook.name!r}")

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(DeliveryFailed),
        stop=tenacity.stop_after_attempt(quick.attempts),
        wait=_quick_wait(quick),
        sleep=_interruptible_sleep(stop),
        reraise=True,
    )
    return int(retrying(attempt))


def _quick_wait(quick: QuickRetry) -> Any:
    rng = random.Random()

    def wait(retry_state: tenacity.RetryCallState) -> float:
        return backoff(retry_state.attempt_number, quick.initial, quick.maximum, rng=rng)

    return wait


def _interruptible_sleep(stop: threading.Event) -> Any:
    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise DeliveryFailed("shutting down")

    return sleep


class WebhookSender:
    """One webhook, with its own small connection pool."""

    kind = TargetKind.WEBHOOK

    def __init__(self, hook: WebhookConfig, quick: QuickRetry, stop: threading.Event) -> None:
        self.name = hook.name
        self.settings = (hook, quick)
        self._hook = hook
        self._quick = quick
        self._stop = stop
        self._session = requests.Session()
        self._session.mount("http://", HTTPAdapter(pool_maxsize=2))
        self._session.mount("https://", HTTPAdapter(pool_maxsize=2))
        settle_environment(self._session, hook.url)

    def send(self, event_id: str, stored: str) -> None:
        post_webhook(self._session, self._hook, event_id, stored, self._stop, self._quick)

    def close(self) -> None:
        self._session.close()


def quick_retry(config: Config) -> QuickRetry:
    """Return the in-call retry for a configuration: a few tries within seconds."""
    return QuickRetry(
        attempts=3,
        initial=min(config.delivery.backoff_initial, 1.0),
        maximum=min(config.delivery.backoff_max, 5.0),
    )


def senders(config: Config, stop: threading.Event) -> list[Sender]:
    """Return a sender per configured webhook."""
    quick = quick_retry(config)
    return [WebhookSender(hook, quick, stop) for hook in config.webhooks]
