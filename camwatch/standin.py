"""Local stand-ins for the far ends of camwatch's two HTTP connections, on 127.0.0.1.

`StandinCaptionAPI` speaks the caption API's wire format (and checks it strictly: a request the
real API would not understand gets a 400 here too); `WebhookReceiver` records alert deliveries.
`camwatch demo`, the end-to-end tests and the benchmarks all use this same code, so it is built
like a small real server: `ThreadingHTTPServer`, HTTP/1.1 keep-alive with exact Content-Length
(clients reuse their pooled connections), TCP_NODELAY, and a clean stop that closes every open
connection and joins every thread it started.

Both can be scripted (`fail_next`, `set_outage`, `latency`) and taken off the network
(`go_down` closes the listening socket and every connection, so a client sees "connection
refused"; `come_up` listens on the same port again). Both record what they received, and
`wait_for(n, timeout)` waits on a Condition rather than polling.

Run one in the foreground: `python -m camwatch.standin api --port 8080 --latency 0.1 --api-key K`
or `python -m camwatch.standin webhook --port 8081`; the first line on stdout is its URL.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import hmac
import json
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from requests.structures import CaseInsensitiveDict

DEFAULT_CAPTION = "A quiet scene with nothing unusual."
DEFAULT_API_KEY = "standin-key"
ENDPOINTS = ("/v1/understand/uploadImg", "/v1/understand/uploadImgFile")
IMAGE_TYPES = ("image/jpeg", "image/png")
CAPTION_PREFIX = b"caption:"

_JOIN_TIMEOUT_S = 5.0
_MAX_PARTS = 16
_DISCARD_CHUNK = 1 << 16


# -- what the stand-ins record ---------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request the stand-in caption API received, as it understood it.

    `time` is `time.monotonic()` when the request arrived (compare two of them for the gap between
    tries); `wall_time` is the same moment as `time.time()`. For an upload, `json` is the `req`
    part and `parts`, `part_filenames`, `part_types` describe the parts in the order they came;
    for a URL request `json` is the body and `url` its `url`. `status` is the HTTP status of the
    answer given, `error` the reason for a 400/415 the stand-in gave itself, `client_port` the
    client's TCP port (the same one on consecutive requests when the connection is reused)."""

    time: float
    wall_time: float
    method: str
    path: str
    headers: CaseInsensitiveDict[str]
    content_type: str
    json: dict[str, Any] | None
    file_name: str | None
    file_size: int
    file_content_type: str | None
    sha256: str | None
    url: str | None
    status: int
    parts: list[str] = field(default_factory=list)
    part_filenames: list[str | None] = field(default_factory=list)
    part_types: list[str | None] = field(default_factory=list)
    caption: str | None = None
    error: str | None = None
    client_port: int = 0

    @property
    def authorization(self) -> str | None:
        """The `Authorization` header as received."""
        return self.headers.get("Authorization")


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


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _error_answer(
    status: int, body: Any = None, headers: dict[str, str] | None = None, code: Any = None
) -> _Answer:
    """Return a forced answer: `body` as given (bytes/str sent as is, anything else as JSON),
    else the API's error envelope with `code` (default: the status as four digits)."""
    if body is None:
        reason = (
            HTTPStatus(status).phrase.lower() if status in HTTPStatus._value2member_map_ else ""
        )
        if code is None:
            code = f"{status:04d}"
        msg = "failure" if status == 200 else reason or "error"
        payload = _json_bytes({"code": code, "msg": msg, "data": None})
    elif isinstance(body, bytes):
        payload = body
    elif isinstance(body, str):
        payload = body.encode("utf-8")
    else:
        payload = _json_bytes(body)
    return _Answer(status, payload, dict(headers or {}))


class _Script:
    """Forced answers, thread-safe: a queue of `fail_next` batches and an optional outage."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: collections.deque[list[Any]] = collections.deque()  # [remaining, answer]
        self._outage: _Answer | None = None

    def push(self, count: int, answer: _Answer) -> None:
        if count > 0:
            with self._lock:
                self._queue.append([count, answer])

    def set_outage(self, answer: _Answer | None) -> None:
        with self._lock:
            self._outage = answer

    def take(self) -> _Answer | None:
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
        with self._lock:
            self._queue.clear()
            self._outage = None

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(entry[0] for entry in self._queue)


class _Journal:
    """What a stand-in recorded, with a Condition to wait on (no polling)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: list[Any] = []
        self._in_flight = 0

    def add(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def items(self) -> list[Any]:
        with self._cond:
            return list(self._items)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._items), timeout)

    def begin(self) -> None:
        with self._cond:
            self._in_flight += 1
            self._cond.notify_all()

    def end(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self._in_flight

    def wait_in_flight(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._in_flight >= n, timeout)


# -- the HTTP plumbing shared by both --------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: requests' pool reuses the connection
    disable_nagle_algorithm = True  # headers and body leave at once, no delayed-ACK stall
    server_version = "camwatch-standin/1"
    sys_version = ""
    server: _Server

    def do_POST(self) -> None:
        self.server.owner._on_post(self)

    def _not_allowed(self) -> None:
        body = _json_bytes({"code": "0405", "msg": "method not allowed", "data": None})
        self.server.owner._drain(self)
        _send(self, _Answer(405, body, {"Allow": "POST"}))

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_allowed

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the recorded requests are the log."""


def _send(handler: BaseHTTPRequestHandler, answer: _Answer) -> bool:
    """Write one whole answer with its exact Content-Length. Return False if the client had
    gone."""
    try:
        handler.send_response(answer.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        if handler.close_connection:
            handler.send_header("Connection", "close")
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(answer.body)
        handler.wfile.flush()
        return True
    except OSError:  # the client timed out or went away: nothing to answer
        handler.close_connection = True
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # come_up() re-listens on the same port at once
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], owner: _LoopbackServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"{self.owner.name}-conn",
            daemon=True,
        )
        self.owner._track(request, thread)
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.owner._forget(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that hung up, or go_down() closing the connection under it
        super().handle_error(request, client_address)


class _LoopbackServer:
    """A ThreadingHTTPServer on a thread, with start/stop, go_down/come_up and a context
    manager. Subclasses implement `_on_post`."""

    name = "standin"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0) -> None:
        self.host = host
        self.latency = latency
        self._port = port
        self._lifecycle = threading.Lock()
        self._placeholder: socket.socket | None = None
        self._conns_lock = threading.Lock()
        self._conns: dict[Any, threading.Thread] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._down = threading.Event()  # set while not listening: wakes latency waits
        self._down.set()
        self.script = _Script()
        self._journal = _Journal()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port (known once started)."""
        return self._port

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://{self.host}:{self._port}"

    @property
    def running(self) -> bool:
        """Whether it is listening."""
        return self._server is not None

    def start(self) -> _LoopbackServer:
        """Start listening (idempotent). Return self."""
        with self._lifecycle:
            if self._server is None:
                self._listen()
        return self

    def stop(self) -> None:
        """Stop listening, close every connection, join every thread (idempotent)."""
        with self._lifecycle:
            self._unlisten()
            self._release_placeholder()

    def reset(self) -> None:
        """Forget what was received and every forced answer."""
        self._journal.clear()
        self.script.clear()

    @property
    def count(self) -> int:
        """How many requests were received (failed ones included)."""
        return len(self._journal)

    def wait_for(self, n: int, timeout: float) -> bool:
        """Wait until `n` requests have been received (failed ones included, their answers
        decided). Return whether they were in time."""
        return self._journal.wait_for(lambda items: len(items) >= n, timeout)

    def go_down(self) -> None:
        """Close the listening socket and every open connection, keeping the port: clients now
        get "connection refused" until `come_up()`."""
        with self._lifecycle:
            self._unlisten()
            # Hold the port with a bound socket that does not listen: connections are still
            # refused, and no other program's server can be given this port meanwhile.
            if self._placeholder is None and self._port:
                holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    holder.bind((self.host, self._port))
                except OSError:
                    holder.close()
                else:
                    self._placeholder = holder

    def come_up(self) -> None:
        """Listen again on the same port after `go_down()`."""
        with self._lifecycle:
            self._release_placeholder()
            if self._server is None:
                self._listen()

    def _release_placeholder(self) -> None:
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _listen(self) -> None:
        server = _Server((self.host, self._port), self)
        self._port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how fast stop() gets the loop to notice
            name=f"{self.name}-{self._port}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        self._down.clear()
        thread.start()

    def _unlisten(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._down.set()
        server.shutdown()
        server.server_close()
        thread.join(_JOIN_TIMEOUT_S)
        self._server = self._thread = None
        with self._conns_lock:
            conns = dict(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):  # wakes a handler blocked reading keep-alive
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + _JOIN_TIMEOUT_S
        for conn_thread in conns.values():
            conn_thread.join(max(deadline - time.monotonic(), 0.0))

    def _track(self, sock: Any, thread: threading.Thread) -> None:
        with self._conns_lock:
            self._conns[sock] = thread

    def _forget(self, sock: Any) -> None:
        with self._conns_lock:
            self._conns.pop(sock, None)

    # -- request helpers -------------------------------------------------------------------

    def _read_body(self, handler: BaseHTTPRequestHandler, limit: int) -> bytes | None:
        """Return the request body, or None after answering a request whose body cannot be
        read (the connection is then closed)."""
        if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
            handler.close_connection = True
            _send(handler, _error_answer(411, code=-1))
            return None
        raw = handler.headers.get("Content-Length")
        try:
            length = int(raw) if raw is not None else 0
            if length < 0:
                raise ValueError
        except ValueError:
            handler.close_connection = True
            _send(handler, _error_answer(400, {"code": -1, "msg": "bad Content-Length"}))
            return None
        if length > limit:
            self._discard(handler, length)
            _send(handler, _error_answer(413, {"code": -1, "msg": "request too large"}))
            return None
        body = handler.rfile.read(length) if length else b""
        if len(body) < length:  # the client hung up mid-body
            handler.close_connection = True
            return None
        return body

    def _drain(self, handler: BaseHTTPRequestHandler) -> None:
        try:
            length = int(handler.headers.get("Content-Length") or 0)
        except ValueError:
            handler.close_connection = True
            return
        self._discard(handler, length)

    @staticmethod
    def _discard(handler: BaseHTTPRequestHandler, length: int) -> None:
        left = length
        while left > 0:  # bounded: every pass consumes bytes or stops
            chunk = handler.rfile.read(min(left, _DISCARD_CHUNK))
            if not chunk:
                handler.close_connection = True
                return
            left -= len(chunk)

    def _pause(self, arrived: float) -> bool:
        """Sleep until `latency` seconds after the request `arrived` (monotonic; woken early by
        stop/go_down): an API with latency L answers L after the request, however long this
        stand-in took to read and parse it on a shared CPU. Return False if the server went
        down meanwhile and the request should get no answer."""
        latency = self.latency - (time.monotonic() - arrived)
        if latency > 0 and self._down.wait(latency):
            return False
        return not self._down.is_set()

    def _on_post(self, handler: _Handler) -> None:
        raise NotImplementedError


# -- the caption API -------------------------------------------------------------------------


@dataclass
class _Parsed:
    content_type: str = ""
    json: dict[str, Any] | None = None
    file_name: str | None = None
    file_bytes: bytes = b""
    file_content_type: str | None = None
    url: str | None = None
    parts: list[str] = field(default_factory=list)
    part_filenames: list[str | None] = field(default_factory=list)
    part_types: list[str | None] = field(default_factory=list)
    error: tuple[int, str] | None = None


class StandinCaptionAPI(_LoopbackServer):
    """The memories.ai Image Caption API, on loopback, with its exact wire format.

    The caption of an upload is, in order: the text after `caption:` in a JPEG comment segment
    of the uploaded bytes (see `jpeg_with_caption`), `captions[file name]`, `default_caption`. A
    URL request is never fetched: its base name is looked up in `captions`. `captions=None`
    means the bundled samples' captions. `api_key=None` accepts any key."""

    name = "standin-api"

    def __init__(
        self,
        captions: dict[str, str] | None = None,
        api_key: str | None = DEFAULT_API_KEY,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        default_caption: str = DEFAULT_CAPTION,
        max_bytes: int = 25_000_000,
    ) -> None:
        super().__init__(host, port, latency)
        self.captions = dict(_bundled_captions() if captions is None else captions)
        self.api_key = api_key
        self.default_caption = default_caption
        self.max_bytes = max_bytes

    def __enter__(self) -> StandinCaptionAPI:
        self.start()
        return self

    # -- scripting -------------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        status: int | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        code: Any = None,
    ) -> None:
        """Answer the next `count` requests with `status` (default 503, or 200 when `code` is
        given), `headers` (e.g. `{"Retry-After": "2"}`) and `body` (bytes/str as is, else JSON;
        default the API's error envelope with `code`). E.g. `fail_next(2, code=-1)` for two
        `code: -1` answers, `fail_next(1, 200, body=b"<html>")` for a garbled one."""
        if status is None:
            status = 200 if code is not None else 503
        self.script.push(count, _error_answer(status, body, headers, code))

    def set_outage(
        self, status: int | None, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        """Answer every request with `status` until called with None."""
        self.script.set_outage(None if status is None else _error_answer(status, body, headers))

    # -- what was received -----------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order (a copy)."""
        return self._journal.items()

    @property
    def in_flight(self) -> int:
        """How many requests are being answered right now."""
        return self._journal.in_flight

    def wait_in_flight(self, n: int, timeout: float) -> bool:
        """Wait until `n` requests are being answered at once (e.g. held by `latency`)."""
        return self._journal.wait_in_flight(n, timeout)

    # -- answering -------------------------------------------------------------------------

    def _on_post(self, handler: _Handler) -> None:
        arrived, wall = time.monotonic(), time.time()
        self._journal.begin()
        try:
            body = self._read_body(handler, self.max_bytes)
            if body is None:
                return
            parsed = _parse_request(handler.headers.get("Content-Type") or "", body)
            answer, caption = self._decide(handler, parsed)
            if not self._pause(arrived):
                handler.close_connection = True
                return
            data = parsed.file_bytes
            self._journal.add(
                RecordedRequest(
                    time=arrived,
                    wall_time=wall,
                    method=handler.command,
                    path=handler.path,
                    headers=CaseInsensitiveDict(handler.headers.items()),
                    content_type=parsed.content_type,
                    json=parsed.json,
                    file_name=parsed.file_name,
                    file_size=len(data),
                    file_content_type=parsed.file_content_type,
                    sha256=hashlib.sha256(data).hexdigest()
                    if parsed.file_name is not None
                    else None,
                    url=parsed.url,
                    status=answer.status,
                    parts=parsed.parts,
                    part_filenames=parsed.part_filenames,
                    part_types=parsed.part_types,
                    caption=caption,
                    error=parsed.error[1] if parsed.error else None,
                    client_port=handler.client_address[1],
                )
            )
            # Recorded first: a client that has its answer finds its request in the record.
            _send(handler, answer)
        finally:
            self._journal.end()

    def _decide(self, handler: _Handler, parsed: _Parsed) -> tuple[_Answer, str | None]:
        path = urllib.parse.urlsplit(handler.path).path
        if path not in ENDPOINTS:
            return _error_answer(404, {"code": "0404", "msg": "not found", "data": None}), None
        forced = self.script.take()
        if forced is not None:
            return forced, None
        given = handler.headers.get("Authorization")
        if not given or (self.api_key is not None and given != self.api_key):
            return _error_answer(401, {"code": "0401", "msg": "unauthorized", "data": None}), None
        if parsed.error is not None:
            status, reason = parsed.error
            return _error_answer(status, {"code": -1, "msg": reason, "data": None}), None
        caption = self._caption_for(parsed)
        assert parsed.json is not None
        prompt = f"{parsed.json['user_prompt']} {parsed.json['system_prompt']}"
        tokens_in = 258 + len(prompt) // 4
        tokens_out = 1 + len(caption) // 4
        body = {
            "code": 0,
            "msg": "success",
            "data": {
                "text": caption,
                "token": {
                    "input": tokens_in,
                    "output": tokens_out,
                    "total": tokens_in + tokens_out,
                },
            },
        }
        return _Answer(200, _json_bytes(body)), caption

    def _caption_for(self, parsed: _Parsed) -> str:
        if parsed.url is not None:
            name = urllib.parse.unquote(urllib.parse.urlsplit(parsed.url).path).rsplit("/", 1)[-1]
            return self.captions.get(name, self.default_caption)
        embedded = jpeg_caption(parsed.file_bytes)
        if embedded is not None:
            return embedded
        return self.captions.get(parsed.file_name or "", self.default_caption)


def _parse_request(content_type: str, body: bytes) -> _Parsed:
    """Given a request's Content-Type and body, return what it holds and, if the real API would
    refuse it, the status and reason."""
    mime, params = _header_params(content_type)
    parsed = _Parsed(content_type=content_type)
    try:
        if mime == "multipart/form-data":
            _parse_upload(parsed, params.get("boundary", ""), body)
        elif mime == "application/json":
            _parse_url_body(parsed, body)
        else:
            parsed.error = (415, f"unsupported Content-Type {mime or '(none)'!r}")
    except _Refused as exc:
        parsed.error = (exc.status, exc.reason)
    return parsed


class _Refused(ValueError):
    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


_PROMPT_FIELDS = {"user_prompt": str, "system_prompt": str, "thinking": bool}


def _check_fields(obj: Any, with_url: bool) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _Refused("the JSON must be an object")
    expected = dict(_PROMPT_FIELDS)
    if with_url:
        expected["url"] = str
    missing = [k for k in expected if k not in obj]
    extra = [k for k in obj if k not in expected]
    if missing or extra:
        raise _Refused(f"JSON fields: missing {missing}, unexpected {extra}")
    for key, kind in expected.items():
        if not isinstance(obj[key], kind):
            raise _Refused(f"{key}: expected {kind.__name__}")
    return obj


def _load_json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _Refused("the body is not valid JSON") from None


def _parse_url_body(parsed: _Parsed, body: bytes) -> None:
    obj = _load_json(body)
    parsed.json = obj if isinstance(obj, dict) else None
    if isinstance(obj, dict) and isinstance(obj.get("url"), str):
        parsed.url = obj["url"]
    _check_fields(obj, with_url=True)
    if not re.match(r"^https?://[^/\s]+", parsed.url or ""):
        raise _Refused("url: expected an http(s) URL")


def _parse_upload(parsed: _Parsed, boundary: str, body: bytes) -> None:
    if not boundary:
        raise _Refused("multipart/form-data without a boundary")
    parts = parse_multipart(body, boundary)
    for part in parts:
        parsed.parts.append(part.name)
        parsed.part_filenames.append(part.filename)
        parsed.part_types.append(part.content_type)
    named = {p.name: p for p in parts}
    if "file" in named:
        parsed.file_name = named["file"].filename
        parsed.file_bytes = named["file"].content
        parsed.file_content_type = named["file"].content_type
    if "req" in named:
        obj = _load_json(named["req"].content)
        parsed.json = obj if isinstance(obj, dict) else None
    if parsed.parts != ["req", "file"]:
        raise _Refused(f"expected two parts, req then file; got {parsed.parts}")
    req, upload = parts
    if req.filename != "req.json":
        raise _Refused(f"req: expected filename 'req.json', got {req.filename!r}")
    if _header_params(req.content_type or "")[0] != "application/json":
        raise _Refused(f"req: expected type application/json, got {req.content_type!r}")
    _check_fields(_load_json(req.content), with_url=False)
    if not upload.filename or "/" in upload.filename or "\\" in upload.filename:
        raise _Refused(f"file: expected a base file name, got {upload.filename!r}")
    kind = _header_params(upload.content_type or "")[0]
    if kind not in IMAGE_TYPES:
        raise _Refused(f"file: unsupported type {upload.content_type!r}", 415)
    if not upload.content:
        raise _Refused("file: empty")
    magic = b"\x89PNG\r\n\x1a\n" if kind == "image/png" else b"\xff\xd8\xff"
    if not upload.content.startswith(magic):
        raise _Refused(f"file: the bytes are not {kind}")


@dataclass(frozen=True)
class Part:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str | None
    content: bytes


def parse_multipart(body: bytes, boundary: str) -> list[Part]:
    """Given a multipart/form-data body and its boundary, return its parts in order. Raise
    ValueError (a _Refused) if the body is not well formed."""
    delim = b"--" + boundary.encode("latin-1")
    if body.startswith(delim):
        pos = 0
    else:
        pos = body.find(b"\r\n" + delim)
        if pos < 0:
            raise _Refused("multipart: no boundary line")
        pos += 2
    parts: list[Part] = []
    for _ in range(_MAX_PARTS + 1):
        pos += len(delim)
        if body[pos : pos + 2] == b"--":
            if not parts:
                raise _Refused("multipart: no parts")
            return parts
        line_end = body.find(b"\r\n", pos)
        if line_end < 0 or body[pos:line_end].strip(b" \t"):
            raise _Refused("multipart: malformed boundary line")
        start = line_end + 2
        end = body.find(b"\r\n" + delim, start)
        if end < 0:
            raise _Refused("multipart: missing closing boundary")
        parts.append(_parse_part(body[start:end]))
        pos = end + 2
    raise _Refused(f"multipart: more than {_MAX_PARTS} parts")


def _parse_part(raw: bytes) -> Part:
    if raw.startswith(b"\r\n"):
        head, content = b"", raw[2:]
    else:
        head, sep, content = raw.partition(b"\r\n\r\n")
        if not sep:
            raise _Refused("multipart: a part without a blank line after its headers")
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n"):
        name, sep, value = line.decode("utf-8", "replace").partition(":")
        if not sep or not name.strip():
            raise _Refused("multipart: malformed part header")
        headers[name.strip().lower()] = value.strip()
    kind, params = _header_params(headers.get("content-disposition", ""))
    if kind != "form-data" or "name" not in params:
        raise _Refused("multipart: a part without Content-Disposition: form-data; name=...")
    return Part(params["name"], params.get("filename"), headers.get("content-type"), content)


_PARAM_RE = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _header_params(value: str) -> tuple[str, dict[str, str]]:
    """Given a header such as `form-data; name="file"; filename="a.jpg"`, return
    `("form-data", {"name": "file", "filename": "a.jpg"})`, the first item lowercased."""
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM_RE.finditer(";" + rest):
        key, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            # HTML5 form encoding (what urllib3 sends) escapes these three as percent codes.
            raw = raw.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")
        if key.endswith("*"):  # RFC 5987: utf-8''percent-encoded
            charset, _, encoded = raw.partition("''")
            key = key[:-1]
            raw = urllib.parse.unquote(encoded, encoding=charset or "utf-8", errors="replace")
        params[key] = raw
    return head.strip().lower(), params


# -- the webhook receiver --------------------------------------------------------------------


class WebhookReceiver(_LoopbackServer):
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

    def __enter__(self) -> WebhookReceiver:
        self.start()
        return self

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `count` POSTs with `status` (they are still recorded)."""
        self.script.push(count, _error_answer(status, body or b'{"ok": false}', headers))

    def set_outage(self, status: int | None) -> None:
        """Answer every POST with `status` until called with None."""
        self.script.set_outage(None if status is None else _error_answer(status, b"{}"))

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

    def _on_post(self, handler: _Handler) -> None:
        arrived, wall = time.monotonic(), time.time()
        self._journal.begin()
        try:
            body = self._read_body(handler, self.max_bytes)
            if body is None:
                return
            answer = self.script.take() or _Answer(200, b'{"ok": true}')
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
            _send(handler, answer)  # after recording, as for the API
        finally:
            self._journal.end()


# -- JPEG comments and the bundled samples ---------------------------------------------------


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """Given JPEG bytes, yield (marker, start, end) of each header segment after SOI, up to
    (not including) the first SOS or EOI; stop quietly at anything malformed."""
    pos = 2
    while pos + 4 <= len(data):  # bounded: pos grows on every pass
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xDA, 0xD9):
            return
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2 or pos + 2 + length > len(data):
            return
        yield marker, pos, pos + 2 + length
        pos += 2 + length


def jpeg_caption(data: bytes) -> str | None:
    """Given image bytes, return the text after `caption:` in the first JPEG comment (COM)
    segment that starts so, or None."""
    if not data.startswith(b"\xff\xd8"):
        return None
    for marker, start, end in _jpeg_segments(data):
        if marker == 0xFE and data[start + 4 : end].startswith(CAPTION_PREFIX):
            return data[start + 4 + len(CAPTION_PREFIX) : end].decode("utf-8", "replace").strip()
    return None


def jpeg_with_caption(caption: str, base: bytes | None = None) -> bytes:
    """Given a caption, return a real JPEG (`base`, default a bundled sample) with a comment
    segment `caption:<text>` right after SOI, which the stand-in API answers with. Any caption
    comment `base` already had is dropped. Raise ValueError if `base` is not a JPEG or the caption
    does not fit in one segment (64 KB)."""
    if base is None:
        base = next(data for name, data, _ in sample_images() if name.endswith(".jpg"))
    if not base.startswith(b"\xff\xd8\xff"):
        raise ValueError("base is not a JPEG (no SOI marker)")
    payload = CAPTION_PREFIX + caption.encode("utf-8")
    if len(payload) + 2 > 0xFFFF:
        raise ValueError("caption too long for a JPEG comment segment")
    kept = bytearray()
    pos = 2
    for marker, start, end in _jpeg_segments(base):
        kept += base[pos:start]
        if not (marker == 0xFE and base[start + 4 : end].startswith(CAPTION_PREFIX)):
            kept += base[start:end]
        pos = end
    kept += base[pos:]
    segment = b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload
    return b"\xff\xd8" + segment + bytes(kept)


def _samples_dir() -> Any:
    return resources.files("camwatch") / "samples"


def _bundled_captions() -> dict[str, str]:
    text = (_samples_dir() / "captions.json").read_text(encoding="utf-8")
    captions: dict[str, str] = json.loads(text)
    return captions


def sample_images() -> list[tuple[str, bytes, str]]:
    """Return (file name, bytes, caption) of each bundled sample snapshot, in the order of
    `samples/captions.json`."""
    folder = _samples_dir()
    return [
        (name, (folder / name).read_bytes(), text) for name, text in _bundled_captions().items()
    ]


# -- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run a stand-in in the foreground until SIGINT/SIGTERM; print its URL first."""
    parser = argparse.ArgumentParser(
        prog="python -m camwatch.standin", description="Local stand-ins for benchmarks and demos."
    )
    sub = parser.add_subparsers(dest="what", required=True)
    api = sub.add_parser("api", help="the caption API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=0)
    api.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    api.add_argument("--api-key", default=DEFAULT_API_KEY)
    api.add_argument("--captions", help="JSON file: file name -> caption (default: the samples)")
    hook = sub.add_parser("webhook", help="a webhook receiver")
    hook.add_argument("--host", default="127.0.0.1")
    hook.add_argument("--port", type=int, default=0)
    hook.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    args = parser.parse_args(argv)

    server: StandinCaptionAPI | WebhookReceiver
    if args.what == "api":
        captions = None
        if args.captions:
            with open(args.captions, encoding="utf-8") as handle:
                captions = json.load(handle)
        server = StandinCaptionAPI(
            captions, api_key=args.api_key, latency=args.latency, host=args.host, port=args.port
        )
    else:
        server = WebhookReceiver(host=args.host, port=args.port, latency=args.latency)
    # Block the signals before any thread starts (threads inherit the mask); sigwait takes them.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server.start()
    try:
        print(server.url, flush=True)
        signal.sigwait(stop_signals)
    finally:
        server.stop()
    print(f"{server.name}: {server.count} requests", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
