"""Scripted answers: what a stand-in sends back instead of its normal answer.

`Answer` is one whole HTTP answer; `error_answer` builds the caption API's error envelope (or any
forced body); `Script` holds the queue of `fail_next` batches and the optional outage that a
stand-in consults before answering normally.
"""

from __future__ import annotations

import collections
import json
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, body bytes and extra headers (Content-Type and Content-Length
    are always sent)."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def json_bytes(value: Any) -> bytes:
    """Given a JSON value, return it as UTF-8 JSON bytes (non-ASCII kept as is)."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def error_answer(
    status: int, body: Any = None, headers: dict[str, str] | None = None, code: Any = None
) -> Answer:
    """Return a forced answer: `body` as given (bytes/str sent as is, anything else as JSON),
    else the API's error envelope with `code` (default: the status as four digits)."""
    if body is None:
        reason = (
            HTTPStatus(status).phrase.lower() if status in HTTPStatus._value2member_map_ else ""
        )
        if code is None:
            code = f"{status:04d}"
        msg = "failure" if status == 200 else reason or "error"
        payload = json_bytes({"code": code, "msg": msg, "data": None})
    elif isinstance(body, bytes):
        payload = body
    elif isinstance(body, str):
        payload = body.encode("utf-8")
    else:
        payload = json_bytes(body)
    return Answer(status, payload, dict(headers or {}))


class Script:
    """Forced answers, thread-safe: a queue of `fail_next` batches and an optional outage."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: collections.deque[list[Any]] = collections.deque()  # [remaining, answer]
        self._outage: Answer | None = None

    def push(self, count: int, answer: Answer) -> None:
        """Force `answer` on the next `count` requests, after the batches already queued."""
        if count > 0:
            with self._lock:
                self._queue.append([count, answer])

    def set_outage(self, answer: Answer | None) -> None:
        """Force `answer` on every request (ahead of the queue) until called with None."""
        with self._lock:
            self._outage = answer

    def take(self) -> Answer | None:
        """Return the answer forced on the next request, if any, and use it up."""
        with self._lock:
            if self._outage is not None:
                return self._outage
            if not self._queue:
                return None
            entry = self._queue[0]
            entry[0] -= 1
            if entry[0] <= 0:
                self._queue.popleft()
            return entry[1]

    def clear(self) -> None:
        """Drop every queued batch and the outage."""
        with self._lock:
            self._queue.clear()
            self._outage = None

    @property
    def pending(self) -> int:
        """How many requests the queued batches will still answer."""
        with self._lock:
            return sum(entry[0] for entry in self._queue)
