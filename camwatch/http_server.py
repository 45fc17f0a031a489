"""The HTTP listener (`http.listen`): `/metrics`, `/healthz`, the timeline (`/`) and its
thumbnails (`/thumb/<image id>`), on the standard library's ThreadingHTTPServer in a thread.

Every path asks for the token when one is set: `Authorization: Bearer TOKEN`, or HTTP Basic with
any user name and the token as password (a browser asks for it after the 401's
`WWW-Authenticate: Basic`), compared in constant time. Then only GET and HEAD are served (405
otherwise), and an unknown path is a 404.

The listener faces whatever can reach it, so each connection is bounded: at most MAX_CONNECTIONS
at once (more are answered 503 and closed), a request head of at most MAX_HEAD_BYTES that must
arrive within HEAD_TIMEOUT_S of its first byte, an idle keep-alive connection closed after
IDLE_TIMEOUT_S, a request body never read (its connection is closed after the answer), and no
traceback ever sent. Requests are logged at debug level, never with credentials.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import io
import json
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from camwatch.config import HttpConfig
from camwatch.health import health
from camwatch.log import clip, get_logger
from camwatch.metrics import Metrics
from camwatch.state_view import ServiceView
from camwatch.timeline import Timeline

log = get_logger(__name__)

MAX_CONNECTIONS = 32
MAX_HEAD_BYTES = 16 * 1024  # request line and headers; a browser sends under 2 kB
HEAD_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 30.0  # Prometheus keeps its connection open between scrapes (15 s by default)
WRITE_TIMEOUT_S = 30.0  # per send: a client that stops reading is dropped
MAX_QUERY_FIELDS = 32
_STOP_JOIN_S = 2.0

_REALM = 'Basic realm="camwatch", charset="UTF-8"'
_TEXT = "text/plain; charset=utf-8"
# The timeline needs no script: none may run, whatever a caption holds.
_HTML_POLICY = (
    "default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
    b"Connection: close\r\n\r\nbusy\n"
)


@dataclass(frozen=True)
class Answer:
    """One response."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _text(status: int, text: str, **headers: str) -> Answer:
    return Answer(status, _TEXT, (text + "\n").encode("utf-8"), headers)


class App:
    """What the listener serves, by path. `timeline` is replaced on a reload."""

    def __init__(self, metrics: Metrics, view: ServiceView, timeline: Timeline) -> None:
        self.metrics = metrics
        self.view = view
        self.timeline = timeline

    def answer(self, path: str, query: str, accept: str | None) -> Answer:
        """Return the answer to a GET of `path` with `query` (the raw query string)."""
        if path == "/metrics":
            content_type, body = self.metrics.render(accept)
            return Answer(200, content_type, body)
        if path == "/healthz":
            state = health(self.view.look())
            body = json.dumps(state.as_json()).encode("ascii")  # \u-escapes: any text fits
            return Answer(200 if state.ok else 503, "application/json", body)
        if path == "/":
            try:
                fields = urllib.parse.parse_qs(
                    query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS
                )
            except ValueError:
                return _text(400, "too many query parameters")
            return Answer(*self.timeline.page(fields))
        if path.startswith("/thumb/"):
            return Answer(*self.timeline.thumbnail(path.removeprefix("/thumb/")))
        return _text(404, "not found")


def authorized(token: bytes | None, header: str | None) -> bool:
    """Given the token (None: none required) and a request's `Authorization` header, return
    whether it may be served: `Bearer TOKEN`, or `Basic` with any user and the token as
    password. Compared in constant time."""
    if token is None:
        return True
    if not header:
        return False
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    # http.client decodes header values as latin-1: encoding them back gives the bytes sent.
    if scheme.lower() == "bearer":
        given = credentials.encode("latin-1", "replace")
    elif scheme.lower() == "basic":
        try:
            pair = base64.b64decode(credentials.encode("latin-1", "replace"), validate=True)
        except (binascii.Error, ValueError):
            return False
        _, colon, given = pair.partition(b":")
        if not colon:
            return False
    else:
        return False
    return hmac.compare_digest(given, token)


class _HeadTooLarge(Exception):
    """The request line and headers are larger than MAX_HEAD_BYTES."""

    def __init__(self, line_ended: bool) -> None:
        super().__init__("request head too large")
        self.line_ended = line_ended  # False: the request line alone is too long


class _HeadReader:
    """Reads request heads off a connection, each whole and bounded (see the module's
    docstring); bytes after a head stay for the next request (pipelining)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""

    def read(self) -> bytes | None:
        """Return the next request's head, through its blank line; None when the client
        closed the connection. Raise _HeadTooLarge, TimeoutError, OSError."""
        deadline: float | None = None
        while True:
            end = _head_end(self._buf)
            if len(self._buf if end is None else self._buf[:end]) > MAX_HEAD_BYTES:
                raise _HeadTooLarge(b"\n" in self._buf[:MAX_HEAD_BYTES])
            if end is not None:
                head, self._buf = self._buf[:end], self._buf[end:]
                return head
            now = time.monotonic()
            if deadline is None and self._buf:
                deadline = now + HEAD_TIMEOUT_S
            left = IDLE_TIMEOUT_S if deadline is None else deadline - now
            if left <= 0:
                raise TimeoutError("request head not received in time")
            self._sock.settimeout(left)
            chunk = self._sock.recv(4096)
            if not chunk:
                return None
            self._buf += chunk


def _head_end(buf: bytes) -> int | None:
    ends = [i + len(mark) for mark in (b"\r\n\r\n", b"\n\n") if (i := buf.find(mark)) >= 0]
    return min(ends) if ends else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Prometheus reuses its connection
    # Until a request line is understood: so that a 400 for a garbled one still has a status
    # line and headers (the standard library's HTTP/0.9 default would send the bare body).
    default_request_version = "HTTP/1.0"
    server_version = "camwatch"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = WRITE_TIMEOUT_S
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Heads are read by _HeadReader and parsed from memory, never off the socket directly.
        self.rfile.close()
        self.rfile = io.BytesIO()
        self._heads = _HeadReader(self.connection)
        self._started = time.monotonic()

    def handle_one_request(self) -> None:
        try:
            head = self._heads.read()
        except _HeadTooLarge as exc:
            self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
            self.close_connection = True
            self.send_error(431 if exc.line_ended else 414)
            return
        except OSError as exc:  # TimeoutError included: an idle or slow client
            log.debug("http_connection_closed", client=self.client_address[0], reason=str(exc))
            self.close_connection = True
            return
        if head is None:
            self.close_connection = True
            return
        self._started = time.monotonic()
        self.connection.settimeout(WRITE_TIMEOUT_S)
        self.rfile = io.BytesIO(head)
        super().handle_one_request()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        length = (self.headers.get("Content-Length") or "0").strip()
        if length != "0" or "Transfer-Encoding" in self.headers:
            # A body is never read: it would be taken for the next request on this connection.
            self.close_connection = True
        if self.command not in ("GET", "HEAD"):
            self._serve()
            return False
        return True

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_GET

    def _serve(self) -> None:
        if not authorized(self.server.token, self.headers.get("Authorization")):
            answer = _text(401, "unauthorized", **{"WWW-Authenticate": _REALM})
        elif self.command not in ("GET", "HEAD"):
            answer = _text(405, "method not allowed", Allow="GET, HEAD")
        else:
            path, _, query = self.path.partition("?")
            if not path.startswith("/"):  # an absolute URI: GET http://host/metrics
                path = urllib.parse.urlsplit(self.path).path or "/"
            try:
                answer = self.server.app.answer(path, query, self.headers.get("Accept"))
            except Exception:
                log.exception("http_request_failed", path=clip(path))
                answer = _text(500, "internal error (see the daemon's log)")
        self._send(answer)

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        # Captions and camera images: no cache may keep them, no other site may frame them.
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        if answer.content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", _HTML_POLICY)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = getattr(self, "path", "")
        log.debug(
            "http_request",
            method=self.command or None,
            path=clip(path.partition("?")[0]),
            status=int(code) if str(code).isdigit() else code,
            client=self.client_address[0],
            ms=round((time.monotonic() - self._started) * 1000, 1),
        )

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http_error", client=self.client_address[0], message=clip(format % args))


class _Server(ThreadingHTTPServer):
    """The listening socket: a thread per connection, at most MAX_CONNECTIONS, each one closed
    by `close_connections` (so a re-bind with a new token leaves no old session open)."""

    daemon_threads = True
    allow_reuse_address = True  # re-bind at once on a reload or a restart
    request_queue_size = 16

    def __init__(
        self,
        address: tuple[Any, ...],
        family: socket.AddressFamily,
        app: App,
        token: bytes | None,
    ) -> None:
        self.address_family = family
        self.app = app
        self.token = token
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer's own would look the host up in the DNS (getfqdn): nothing here uses it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(_BUSY)
            self.shutdown_request(request)
            return
        with self._open_lock:
            self._open.add(request)
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="http-connection",
            daemon=True,
        )
        try:
            thread.start()
        except RuntimeError:
            self._done(request)
            self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done(request)

    def _done(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-answer; never a traceback on stderr.
        exc = sys.exc_info()[1]
        log.debug("http_connection_failed", client=client_address[0], error=repr(exc))

    def close_connections(self) -> None:
        with self._open_lock:
            connections = list(self._open)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class HttpListener:
    """The listener of one `http` configuration on its own thread: `start` binds, `stop`
    closes it and every connection."""

    def __init__(self, http: HttpConfig, app: App) -> None:
        self.http = http
        self.app = app
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the one chosen, for port 0)."""
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Bind and serve. Raise OSError if the address cannot be had."""
        listen = self.http.address
        family, _, _, _, address = socket.getaddrinfo(
            listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        token = self.http.token
        secret = token.get_secret_value().encode("ascii") if token is not None else None
        self._server = _Server(address, family, self.app, secret)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.25},
            name="http-listener",
            daemon=True,
        )
        self._thread.start()
        log.info(
            "http_listening",
            listen=self.http.listen,
            port=self.port,
            auth="token" if secret is not None else "none",
        )

    def stop(self) -> None:
        """Stop listening and close every connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(_STOP_JOIN_S)
