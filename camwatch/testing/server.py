"""The loopback HTTP server both stand-ins are built on.

`LoopbackServer` runs a `ThreadingHTTPServer` on a thread of its own, like a small real server:
HTTP/1.1 keep-alive with exact Content-Length (clients reuse their pooled connections),
TCP_NODELAY, and a clean stop that closes every open connection and joins every thread it started.
It can be taken off the network (`go_down` closes the listening socket and every connection, so a
client sees "connection refused"; `come_up` listens on the same port again), holds a `Script` of
forced answers and a `Journal` of what it received. Subclasses answer POSTs in `_on_post`.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from camwatch.testing.answers import Answer, Script, error_answer, json_bytes
from camwatch.testing.journal import Journal

_JOIN_TIMEOUT_S = 5.0
_DISCARD_CHUNK = 1 << 16


class Handler(BaseHTTPRequestHandler):
    """The handler both stand-ins share: a POST goes to the owner's `_on_post`, any other
    method gets 405 (the caption API and webhooks only take POST)."""

    protocol_version = "HTTP/1.1"  # keep-alive: requests' pool reuses the connection
    disable_nagle_algorithm = True  # headers and body leave at once, no delayed-ACK stall
    server_version = "camwatch-standin/1"
    sys_version = ""
    server: _Server

    def do_POST(self) -> None:
        self.server.owner._on_post(self)

    def _not_allowed(self) -> None:
        body = json_bytes({"code": "0405", "msg": "method not allowed", "data": None})
        self.server.owner._drain(self)
        send_answer(self, Answer(405, body, {"Allow": "POST"}))

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_allowed

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the recorded requests are the log."""


def send_answer(handler: BaseHTTPRequestHandler, answer: Answer) -> bool:
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
    """The listening server: one tracked thread per connection, so that stop() and go_down()
    can close every connection and join every thread."""

    daemon_threads = True
    allow_reuse_address = True  # come_up() re-listens on the same port at once
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], owner: LoopbackServer) -> None:
        self.owner = owner
        super().__init__(address, Handler)

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


class LoopbackServer:
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
        self.script = Script()
        self._journal = Journal()

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

    def start(self) -> LoopbackServer:
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

    def __enter__(self) -> Self:
        self.start()
        return self

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
            send_answer(handler, error_answer(411, code=-1))
            return None
        raw = handler.headers.get("Content-Length")
        try:
            length = int(raw) if raw is not None else 0
            if length < 0:
                raise ValueError
        except ValueError:
            handler.close_connection = True
            send_answer(handler, error_answer(400, {"code": -1, "msg": "bad Content-Length"}))
            return None
        if length > limit:
            self._discard(handler, length)
            send_answer(handler, error_answer(413, {"code": -1, "msg": "request too large"}))
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

    def _on_post(self, handler: Handler) -> None:
        """Answer one POST (each stand-in its own way)."""
        raise NotImplementedError
