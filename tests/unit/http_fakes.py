"""A scripted transport for `requests`, for unit tests that must not open a socket.

    adapter = ScriptedAdapter((503, {"code": 503, "msg": "busy"}), (200, answer))
    session = session_with(adapter)     # hand it to the code under test
    ...
    adapter.requests[0].body            # what was sent, as bytes

Each request takes the next step of the script, then `default` once the script is used up (no
default: the request fails the test with an AssertionError). A step is

    (status, body) or (status, body, headers)
                        body: bytes or str sent as is; anything else as JSON
    an exception        raised from the adapter, as requests raises its own:
                        requests.ConnectionError("refused"), requests.Timeout, ...
    a callable          called with the PreparedRequest; returns one of the above

The answer is a real `requests.Response` over a real (unread) urllib3 response, so code that
streams the body (`stream=True`, `response.raw.read1(...)`, `iter_content`) reads it as it
would read one off the network. Thread-safe: worker threads may share one adapter.
"""

from __future__ import annotations

import collections
import io
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeAlias

import requests
import urllib3
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

Reply: TypeAlias = tuple[int, Any] | tuple[int, Any, Mapping[str, str]]
Answer: TypeAlias = Reply | BaseException | type[BaseException]
Step: TypeAlias = Answer | Callable[[requests.PreparedRequest], Answer]


@dataclass(frozen=True)
class Sent:
    """One request as the adapter received it."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        """Return the request's Content-Type header ("" without one)."""
        return next((v for k, v in self.headers.items() if k.lower() == "content-type"), "")


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    return b"".join(body)  # an iterable of chunks (a streamed upload)


class ScriptedAdapter(BaseAdapter):
    """Answers each request with the next step of a script; records every request."""

    def __init__(self, *script: Step, default: Step | None = None) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._script: collections.deque[Step] = collections.deque(script)
        self.default = default
        self.requests: list[Sent] = []

    def push(self, *steps: Step) -> None:
        """Append steps to the script."""
        with self._lock:
            self._script.extend(steps)

    @property
    def remaining(self) -> int:
        """Return how many scripted steps are still unused."""
        with self._lock:
            return len(self._script)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        """Record the request and answer it from the script."""
        sent = Sent(
            method=request.method or "",
            url=request.url or "",
            headers=dict(request.headers),
            body=_body_bytes(request.body),
        )
        with self._lock:
            self.requests.append(sent)
            step = self._script.popleft() if self._script else self.default
        if step is None:
            raise AssertionError(f"ScriptedAdapter: no answer left for {sent.method} {sent.url}")
        if callable(step) and not isinstance(step, type):
            step = step(request)
        if isinstance(step, BaseException) or (
            isinstance(step, type) and issubclass(step, BaseException)
        ):
            raise step
        return build_response(request, *step)

    def close(self) -> None:
        """Nothing to close."""


def build_response(
    request: requests.PreparedRequest,
    status: int,
    body: Any,
    headers: Mapping[str, str] | None = None,
) -> requests.Response:
    """Return a `requests.Response` to `request` whose body is not read yet."""
    header_map: dict[str, str] = dict(headers or {})
    if isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode("utf-8")
    else:
        data = json.dumps(body).encode("utf-8")
        if not any(k.lower() == "content-type" for k in header_map):
            header_map["Content-Type"] = "application/json"
    header_map.setdefault("Content-Length", str(len(data)))
    response = requests.Response()
    response.status_code = status
    response.reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    response.headers = CaseInsensitiveDict(header_map)
    response.encoding = get_encoding_from_headers(response.headers)
    response.raw = urllib3.HTTPResponse(
        body=io.BytesIO(data),
        headers=header_map,
        status=status,
        preload_content=False,
        request_method=request.method,
        request_url=request.url,
    )
    response.url = request.url or ""
    response.request = request
    return response


def session_with(adapter: BaseAdapter) -> requests.Session:
    """Return a Session that sends every http:// and https:// request through `adapter` (and
    reads no proxy or .netrc settings from the environment)."""
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
