"""A webhook receiver on loopback: records every POST (any path) and answers 200, unless told to
fail (`fail_next`, `set_outage`) or taken off the network (`go_down`/`come_up`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from requests.structures import CaseInsensitiveDict

from camwatch.testing.answers import Answer, error_answer
from camwatch.testing.server import Handler, LoopbackServer, send_answer


@dataclass(frozen=True)
class ReceivedWebhook:
    """One POST the webhook receiver received: raw body bytes, parsed JSON (None if the body is
    not JSON), headers (case-insensitive), when (`time.monotonic()` and `time.time()`), and the
    status it answered."""

    time: float
    wall_time: float
    path: str
    headers: CaseInsensitiveDict[str]
    body: bytes
    json: Any
    status: int
    client_port: int = 0

    @property
    def event_id(self) -> str | None:
        """The `X-Camwatch-Event-Id` header."""
        return self.headers.get("X-Camwatch-Event-Id")

    @property
    def signature(self) -> str | None:
        """The `X-Camwatch-Signature` header."""
        return self.headers.get("X-Camwatch-Signature")


class WebhookReceiver(LoopbackServer):
    """Records every POST (any path) and answers 200, unless told to fail."""

    name = "standin-webhook"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        max_bytes: int = 10_000_000,
    ) -> None:
        super().__init__(host, port, latency)
        self.max_bytes = max_bytes

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `count` POSTs with `status` (they are still recorded)."""
        self.script.push(count, error_answer(status, body or b'{"ok": false}', headers))

    def set_outage(self, status: int | None) -> None:
        """Answer every POST with `status` until called with None."""
        self.script.set_outage(None if status is None else error_answer(status, b"{}"))

    @property
    def received(self) -> list[ReceivedWebhook]:
        """Every POST received, failed ones included, in order (a copy)."""
        return self._journal.items()

    @property
    def delivered(self) -> list[ReceivedWebhook]:
        """The POSTs answered with 2xx."""
        return [r for r in self._journal.items() if 200 <= r.status < 300]

    def wait_for_delivered(self, n: int, timeout: float) -> bool:
        """Wait until `n` POSTs have been answered with 2xx."""
        return self._journal.wait_for(
            lambda items: sum(1 for r in items if 200 <= r.status < 300) >= n, timeout
        )

    @staticmethod
    def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
        """Given a raw body, its `X-Camwatch-Signature` header and the secret, return whether
        the header is `sha256=<hex HMAC-SHA256 of the body>`."""
        if not header:
            return False
        expected = "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace"))

    def _on_post(self, handler: Handler) -> None:
        arrived, wall = time.monotonic(), time.time()
        self._journal.begin()
        try:
            body = self._read_body(handler, self.max_bytes)
            if body is None:
                return
            answer = self.script.take() or Answer(200, b'{"ok": true}')
            if not self._pause(arrived):
                handler.close_connection = True
                return
            try:
                parsed: Any = json.loads(body)
            except ValueError:
                parsed = None
            self._journal.add(
                ReceivedWebhook(
                    time=arrived,
                    wall_time=wall,
                    path=handler.path,
                    headers=CaseInsensitiveDict(handler.headers.items()),
                    body=body,
                    json=parsed,
                    status=answer.status,
                    client_port=handler.client_address[1],
                )
            )
            send_answer(handler, answer)  # after recording, as for the API
        finally:
            self._journal.end()
