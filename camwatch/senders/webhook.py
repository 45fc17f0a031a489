"""Webhooks: signed JSON POSTed to a URL, with a short retry inside the call.

The body was built once, when the alert was decided, and is sent byte for byte on every try with
the same event id, so a receiver can verify it and drop duplicates. A 2xx answer is delivery; 404
and 410 (the URL is wrong or gone) are refused for good; anything else (a refused connection, a
timeout, 5xx, 429, another 4xx) is tried again. A failure names the webhook, its `host:port` (the
URL's user, password, path and query may be credentials: never shown) and the kind of failure
(camwatch/netfail.py), which the dispatcher logs as fields.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
import tenacity

from camwatch import __version__
from camwatch.backoff import backoff
from camwatch.config import Config, WebhookConfig, scrub_url
from camwatch.errors import DeliveryFailed, DeliveryRefused
from camwatch.netfail import classify, host_port, http_failure
from camwatch.senders import Sender, TargetKind
from camwatch.sessions import answer_deadline, deadline_session, settle_environment

USER_AGENT = f"camwatch/{__version__}"

# Answers that say the URL itself is wrong or gone: trying again for a week would not help.
# (Others, 400 and 422 included, are retried as the contract says: a receiver being redeployed
# answers them for a while too.)
REFUSED_STATUSES = frozenset({404, 410})
_ANSWER_MAX = 64 * 1024  # what is read of a webhook's answer at most


@dataclass(frozen=True)
class QuickRetry:
    """The short, in-call retry of a delivery; longer outages are left to the outbox schedule."""

    attempts: int = 3
    initial: float = 0.5
    maximum: float = 5.0


def sign(body: bytes, secret: str) -> str:
    """Return the `X-Camwatch-Signature` value: `sha256=<hex HMAC-SHA256 of body>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_key(secret: str) -> bytes:
    """Return the Standard Webhooks signing key of a secret: the base64 decoding of what follows
    `whsec_`, else the secret's UTF-8 bytes (so one secret works with any of their libraries)."""
    if secret.startswith("whsec_"):
        with contextlib.suppress(binascii.Error, ValueError):
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    return secret.encode()


def standard_signature(event_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """Return the `webhook-signature` value: `v1,` and the base64 HMAC-SHA256 of
    `{id}.{timestamp}.{body}`."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(
    event_id: str, body: bytes, hook: WebhookConfig, now: float | None = None
) -> dict[str, str]:
    """Return the headers of one webhook attempt: the same on every retry but for the Standard
    Webhooks timestamp and signature, made fresh for each attempt (a receiver rejects replays
    older than its tolerance)."""
    headers = {"User-Agent": USER_AGENT, **hook.headers}
    headers["Content-Type"] = "application/json"
    headers["X-Camwatch-Event-Id"] = event_id
    if hook.secret is not None and hook.secret.get_secret_value():
        secret = hook.secret.get_secret_value()
        timestamp = int(time.time() if now is None else now)
        headers["X-Camwatch-Signature"] = sign(body, secret)
        headers["webhook-id"] = event_id
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = standard_signature(event_id, timestamp, body, secret)
    return headers


def _where(location: str) -> str:
    """Return a redirect's target as scheme://host:port only: its path and query may hold a
    token, and it is logged."""
    if "://" not in location:
        return "a relative location"
    return scrub_url(location) or "an unreadable location"


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
    DeliveryRefused for an answer that will not change. Never follows a redirect (it would
    carry the body, the signature and the custom headers to another host, or turn the POST
    into a GET whose 2xx would count as delivery), and reads at most a few kB of the answer
    within `timeout`, so a receiver that drips or floods cannot hold the target's thread."""
    raw = body.encode()
    address = host_port(hook.url)  # what a failure names: never the URL's credentials or path

    def attempt() -> int:
        headers = webhook_headers(event_id, raw, hook)
        try:
            with answer_deadline(hook.timeout):
                response = session.post(
                    hook.url,
                    data=raw,
                    headers=headers,
                    timeout=hook.timeout,
                    allow_redirects=False,
                    stream=True,
                )
                with response:
                    status = response.status_code
                    location = response.headers.get("Location", "")
                    _drain(response)
        except requests.RequestException as exc:
            why = classify(exc, hook.timeout)
            raise DeliveryFailed(
                f"webhook {hook.name!r} at {address}: {why.reason}",
                failure=why.failure,
                reason=why.reason,
                address=address,
            ) from None
        if 200 <= status < 300:
            return status
        answered = http_failure(status)
        fields = {"failure": answered.failure, "reason": answered.reason, "address": address}
        if status in REFUSED_STATUSES:
            raise DeliveryRefused(f"HTTP {status} from webhook {hook.name!r}", **fields)
        if 300 <= status < 400:
            fields["reason"] = f"a redirect to {_where(location)}, not followed"
            raise DeliveryFailed(
                f"HTTP {status} from webhook {hook.name!r}: a redirect to {_where(location)},"
                " not followed (set the webhook's url to where it points)",
                **fields,
            )
        raise DeliveryFailed(f"HTTP {status} from webhook {hook.name!r}", **fields)

    failed: list[DeliveryFailed] = []

    def attempt_noted() -> int:
        try:
            return attempt()
        except DeliveryFailed as exc:
            failed.append(exc)
            raise

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(DeliveryFailed),
        stop=tenacity.stop_after_attempt(quick.attempts),
        wait=_quick_wait(quick),
        sleep=_interruptible_sleep(stop),
        reraise=True,
    )
    try:
        return int(retrying(attempt_noted))
    except _Stopped:
        pass
    # Shutting down between two tries: the last try's failure is what the outbox keeps.
    raise failed[-1]


def _drain(response: requests.Response) -> None:
    """Read at most _ANSWER_MAX bytes of an answer (its body means nothing to us, but reading a
    small one lets the connection be reused); a larger one closes the connection instead."""
    read = 0
    for chunk in response.iter_content(4096):
        read += len(chunk)
        if read > _ANSWER_MAX:
            response.close()
            return


def _quick_wait(quick: QuickRetry) -> Any:
    rng = random.Random()

    def wait(retry_state: tenacity.RetryCallState) -> float:
        return backoff(retry_state.attempt_number, quick.initial, quick.maximum, rng=rng)

    return wait


class _Stopped(Exception):
    """Internal: shutdown was requested while waiting for the next quick try."""


def _interruptible_sleep(stop: threading.Event) -> Any:
    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise _Stopped

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
        self._session = deadline_session(pool_maxsize=2)
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
