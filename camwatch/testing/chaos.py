"""A fault-injecting TCP proxy on loopback, for chaos tests of camwatch's two HTTP connections.

    with StandinCaptionAPI() as api, ChaosProxy("127.0.0.1", api.port, 11, Faults.spread(0.3)) as p:
        ...                     # point the client at p.url instead of api.url
        p.counts                # {"pass": 41, "reset": 3, "stall": 2, ...}
        p.set_faults(Faults())  # pass-through from now on

`ChaosProxy` listens on 127.0.0.1 (port 0: any free one) and relays each connection to a stand-in
server, one thread per connection. It understands just enough HTTP/1.1 to find where a request
and its answer end (Content-Length, chunked, or an answer that ends with the connection), so it
decides a fault for every exchange, not only for the first request of a connection: a client
pool such as requests' keeps its connections alive, and a proxy that decided once per connection
would soon be relaying nothing but healthy connections. The faults:

| fault     | what the client sees                                                       |
|-----------|----------------------------------------------------------------------------|
| `pass`    | the server's answer, untouched                                             |
| `reset`   | a TCP reset (SO_LINGER 0): at once (`start`; on a kept-alive connection,   |
|           | as its next request begins), after part of its request reached the server |
|           | (`request`), or after part of the server's answer (`answer`)               |
| `stall`   | nothing: the request is read and dropped, the connection held `stall_s`    |
|           | seconds (or until the client gives up), then closed                        |
| `cut`     | the server's answer up to a point in its body, then an orderly close       |
| `garbage` | random bytes (`bytes`) or another protocol's line (`line`), then a close   |
| `error`   | `HTTP/1.1 503` made by the proxy itself, with `Connection: close`          |

Reproducible: a `random.Random(seed)` gives each accepted connection a generator of its own, in
accept order, and every decision draws the same four numbers from it; so connection N's sequence
of faults depends only on the seed and N, whatever the threads' timing. `decisions` lists every
decision, `injected` what each applied fault did, `counts` how many of each were applied.
`stop()` closes every socket and joins every thread it started (idempotent); it is a context
manager. It only ever connects to a loopback address.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import json
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Self

_POLL_S = 0.05  # how often a waiting socket operation looks at the stop flag
_CHUNK = 65536
_MAX_HEAD = 64 * 1024  # request or status line and headers
_MAX_MESSAGE = 64 * 1024 * 1024  # a whole request or answer
_MAX_READS = 1_000_000  # socket reads for one message (bounded by its deadline too)
_MAX_CHUNKS = 100_000  # chunks of one chunked body
_MAX_EXCHANGES = 100_000  # requests on one connection
_MAX_ACCEPT_POLLS = 2_000_000  # accept() calls, each at most _POLL_S when idle: over a day
_JOIN_TIMEOUT_S = 5.0
_MAX_STALL_S = 60.0

RESET_POINTS = ("start", "request", "answer")
GARBAGE_KINDS = ("bytes", "line")

# Lines of other protocols (or none): never a status line an HTTP client could accept.
_NOT_HTTP = (
    b"SSH-2.0-OpenSSH_9.6p1\r\n",
    b"220 mail.example.net ESMTP Postfix\r\n",
    b"<html><body><h1>502 Bad Gateway</h1></body></html>\r\n",
    b"+OK POP3 server ready\r\n",
    b"\x00\x00\x00\x00\x00\x00\x00\x00\r\n",
    b"hello\r\n\r\n",
)


class Fault(StrEnum):
    """What the proxy does to one exchange (a request and its answer)."""

    PASS = "pass"
    RESET = "reset"
    STALL = "stall"
    CUT = "cut"
    GARBAGE = "garbage"
    ERROR = "error"


FAULTS = (Fault.RESET, Fault.STALL, Fault.CUT, Fault.GARBAGE, Fault.ERROR)


@dataclass(frozen=True)
class Faults:
    """The probability of each fault per exchange (each 0..1, together at most 1; the rest pass
    through), how long a stall holds the connection, and which variants of reset and garbage
    may be drawn."""

    reset: float = 0.0
    stall: float = 0.0
    cut: float = 0.0
    garbage: float = 0.0
    error: float = 0.0
    stall_s: float = 3.0
    reset_points: tuple[str, ...] = RESET_POINTS
    garbage_kinds: tuple[str, ...] = GARBAGE_KINDS

    def __post_init__(self) -> None:
        rates = [self.rate(fault) for fault in FAULTS]
        if any(not 0.0 <= r <= 1.0 for r in rates) or sum(rates) > 1.0 + 1e-9:
            raise ValueError(f"fault probabilities must be in 0..1 and sum to at most 1: {self}")
        if not 0.0 < self.stall_s <= _MAX_STALL_S:
            raise ValueError(f"stall_s must be in (0, {_MAX_STALL_S:g}]: {self.stall_s!r}")
        if not self.reset_points or not set(self.reset_points) <= set(RESET_POINTS):
            raise ValueError(f"reset_points must be some of {RESET_POINTS}")
        if not self.garbage_kinds or not set(self.garbage_kinds) <= set(GARBAGE_KINDS):
            raise ValueError(f"garbage_kinds must be some of {GARBAGE_KINDS}")

    @classmethod
    def spread(cls, rate: float, stall_s: float = 3.0) -> Faults:
        """Return faults on `rate` of the exchanges, split evenly between the five kinds."""
        share = rate / len(FAULTS)
        return cls(share, share, share, share, share, stall_s=stall_s)

    def rate(self, fault: Fault) -> float:
        """Return the probability of `fault` (of PASS: what the others leave)."""
        if fault is Fault.PASS:
            return max(1.0 - sum(self.rate(f) for f in FAULTS), 0.0)
        return float(getattr(self, fault.value))

    def pick(self, roll: float) -> Fault:
        """Given a number in [0, 1), return the fault it falls on."""
        edge = 0.0
        for fault in FAULTS:
            edge += self.rate(fault)
            if roll < edge:
                return fault
        return Fault.PASS


@dataclass(frozen=True)
class Decision:
    """The fault decided for one exchange: `connection` counts accepted connections from 0,
    `exchange` the requests on it from 0. `detail` is the reset point or the garbage kind,
    `fraction` where in the request or answer a reset or cut falls, `salt` seeds the garbage."""

    connection: int
    exchange: int
    fault: Fault
    detail: str
    fraction: float
    salt: int


@dataclass(frozen=True)
class Injected:
    """A fault as it was applied: `sent` is how many bytes got through (of the request to the
    server for a `request` reset, of the answer to the client for an `answer` reset or a cut,
    of garbage or of the 503 answer), `of` the whole length (0 when unknown)."""

    decision: Decision
    sent: int = 0
    of: int = 0


@dataclass(frozen=True)
class _Message:
    """One request or answer as read off a socket."""

    data: bytes
    complete: bool
    close: bool = False  # the connection ends after it
    method: str = ""
    head: int = 0  # how many bytes the start line and headers take


class _Unframed(Exception):
    """A message whose end cannot be found."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _abort(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER on, timeout 0)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _close(sock: socket.socket | None) -> None:
    """Close in order: FIN after everything sent."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    sock.close()


def _headers(head: bytes) -> tuple[list[bytes], dict[bytes, bytes]]:
    lines = head.split(b"\r\n")
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return lines[0].split(None, 2), fields


def _framing(head: bytes, answer: bool, head_request: bool) -> tuple[str, int, bool, str]:
    """Given a message's head, return (mode, Content-Length, close after it, request method);
    mode is `none` (no body), `length`, `chunked` or `eof` (an answer that ends with the
    connection). Raise _Unframed when the end cannot be known."""
    first, fields = _headers(head)
    version = (first[2] if not answer and len(first) > 2 else first[0] if first else b"").upper()
    method = first[0].decode("latin-1") if not answer and first else ""
    tokens = {t.strip().lower() for t in fields.get(b"connection", b"").split(b",")}
    close = b"close" in tokens or (version == b"HTTP/1.0" and b"keep-alive" not in tokens)
    if answer:
        try:
            status = int(first[1])
        except (IndexError, ValueError):
            raise _Unframed("no status") from None
        if head_request or status < 200 or status in (204, 304):
            return "none", 0, close, method
    if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        return "chunked", 0, close, method
    if b"content-length" in fields:
        try:
            length = int(fields[b"content-length"])
        except ValueError:
            raise _Unframed("bad Content-Length") from None
        if length < 0:
            raise _Unframed("negative Content-Length")
        return "length", length, close, method
    if answer:
        return "eof", 0, True, method
    return "none", 0, close, method


def _chunked_end(buf: bytes | bytearray, start: int) -> int | None:
    """Return where a chunked body that begins at `start` ends, None if not all of it is in
    `buf` yet. Raise _Unframed for a body that is not chunked encoding."""
    pos = start
    for _ in range(_MAX_CHUNKS):
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[pos:eol]).split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _Unframed("bad chunk size") from None
        if size < 0:
            raise _Unframed("bad chunk size")
        if size == 0:  # the last chunk: trailers, then an empty line
            end = buf.find(b"\r\n\r\n", eol)
            return end + 4 if end >= 0 else None
        pos = eol + 2 + size + 2
        if pos > len(buf):
            return None
    raise _Unframed("too many chunks")


def error_503() -> bytes:
    """Return the whole 503 answer the proxy makes itself (the caption API's error envelope)."""
    body = json.dumps({"code": "0503", "msg": "chaos proxy: unavailable", "data": None}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def garbage(kind: str, salt: int) -> bytes:
    """Return the garbage of a `garbage` fault: never the start of an HTTP status line."""
    rng = random.Random(salt)
    if kind == "line":
        return rng.choice(_NOT_HTTP)
    data = bytearray(rng.randbytes(rng.randint(1, 512)))
    if data[:1] in (b"H", b"h"):
        data[0] = 0
    return bytes(data)


class ChaosProxy:
    """A threaded TCP proxy on 127.0.0.1 in front of a loopback server, injecting faults."""

    name = "chaos-proxy"

    def __init__(
        self,
        target_host: str,
        target_port: int,
        seed: int,
        faults: Faults | None = None,
        *,
        host: str = "127.0.0.1",
        io_timeout: float = 30.0,
        idle_timeout: float = 60.0,
    ) -> None:
        """Given the server to relay to, a seed and the fault probabilities (default: none),
        build a proxy (not listening yet). `io_timeout` bounds reading one request or answer,
        `idle_timeout` how long a kept-alive connection may wait for its next request."""
        if not _is_loopback(target_host) or not _is_loopback(host):
            raise ValueError("ChaosProxy only relays between loopback addresses")
        self.target = (target_host, target_port)
        self.host = host
        self.seed = seed
        self.io_timeout = io_timeout
        self.idle_timeout = idle_timeout
        self._faults = faults if faults is not None else Faults()
        self._lock = threading.Lock()
        self._lifecycle = threading.Lock()
        self._rng = random.Random(seed)
        self._accepted = 0
        self._decisions: list[Decision] = []
        self._injected: list[Injected] = []
        self._counts: collections.Counter[str] = collections.Counter()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._conns: dict[threading.Thread, list[socket.socket]] = {}
        self._port = 0

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port (known once started)."""
        return self._port

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://{self.host}:{self._port}"

    def start(self) -> Self:
        """Start listening (idempotent). Return self."""
        with self._lifecycle:
            if self._listener is not None:
                return self
            self._stopping.clear()
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                listener.bind((self.host, self._port))
                listener.listen(128)
            except OSError:
                listener.close()
                raise
            listener.settimeout(_POLL_S)
            self._port = listener.getsockname()[1]
            self._listener = listener
            self._thread = threading.Thread(
                target=self._accept_loop, args=(listener,), name=f"{self.name}-{self._port}"
            )
            self._thread.daemon = True
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening, close every connection and join every thread (idempotent)."""
        with self._lifecycle:
            listener, thread = self._listener, self._thread
            if listener is None or thread is None:
                return
            self._stopping.set()
            thread.join(_JOIN_TIMEOUT_S)
            listener.close()
            self._listener = self._thread = None
            with self._lock:
                conns = {t: list(socks) for t, socks in self._conns.items()}
            for socks in conns.values():
                for sock in socks:  # wakes a blocked send; the thread closes its own sockets
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
            deadline = time.monotonic() + _JOIN_TIMEOUT_S
            for conn_thread in conns:
                conn_thread.join(max(deadline - time.monotonic(), 0.0))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- the faults and what was done ---------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The fault probabilities now in force."""
        with self._lock:
            return self._faults

    def set_faults(self, faults: Faults) -> None:
        """Use `faults` from the next exchange on (`Faults()`: pass everything through). The
        draws do not change, so a run stays reproducible."""
        with self._lock:
            self._faults = faults

    @property
    def decisions(self) -> list[Decision]:
        """Every decision, in the order made (a copy)."""
        with self._lock:
            return list(self._decisions)

    @property
    def injected(self) -> list[Injected]:
        """Every fault applied (pass-through included), in order (a copy)."""
        with self._lock:
            return list(self._injected)

    @property
    def counts(self) -> dict[str, int]:
        """How many exchanges each fault was applied to (`pass` included; zeros kept)."""
        with self._lock:
            return {str(f): self._counts[f] for f in (Fault.PASS, *FAULTS)}

    @property
    def connections(self) -> int:
        """How many connections were accepted."""
        with self._lock:
            return self._accepted

    def summary(self) -> str:
        """Return the counts on one line, for a test's failure message."""
        return f"{self.name}:{self._port} seed={self.seed} " + " ".join(
            f"{name}={n}" for name, n in self.counts.items()
        )

    def _decide(self, rng: random.Random, connection: int, exchange: int) -> Decision:
        # Always the same four draws, whatever they decide: the sequence stays aligned.
        roll, where, fraction, salt = rng.random(), rng.random(), rng.random(), rng.getrandbits(32)
        faults = self.faults
        fault = faults.pick(roll)
        detail = ""
        if fault is Fault.RESET:
            detail = faults.reset_points[int(where * len(faults.reset_points))]
        elif fault is Fault.GARBAGE:
            detail = faults.garbage_kinds[int(where * len(faults.garbage_kinds))]
        decision = Decision(connection, exchange, fault, detail, fraction, salt)
        with self._lock:
            self._decisions.append(decision)
        return decision

    def _applied(self, decision: Decision, sent: int = 0, of: int = 0) -> None:
        with self._lock:
            self._counts[decision.fault] += 1
            self._injected.append(Injected(decision, sent, of))

    # -- threads ------------------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        for _ in range(_MAX_ACCEPT_POLLS):  # and until stop()
            if self._stopping.is_set():
                return
            try:
                client, _addr = listener.accept()
            except (TimeoutError, ConnectionAbortedError):
                continue  # nothing yet, or a client that gave up while queued
            except OSError:
                if self._stopping.wait(_POLL_S):  # out of descriptors? keep serving
                    return
                continue
            try:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # gone already
                client.close()
                continue
            with self._lock:
                index = self._accepted
                self._accepted += 1
                rng = random.Random(self._rng.getrandbits(64))
            thread = threading.Thread(
                target=self._serve,
                args=(index, client, rng),
                name=f"{self.name}-conn-{index}",
            )
            thread.daemon = True
            with self._lock:
                self._conns[thread] = [client]
            thread.start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            socks = self._conns.get(threading.current_thread())
            if socks is not None:
                socks.append(sock)

    def _serve(self, index: int, client: socket.socket, rng: random.Random) -> None:
        upstream: list[socket.socket | None] = [None]
        try:
            for exchange in range(_MAX_EXCHANGES):
                if exchange > 0 and not self._wait_request(client):
                    return
                decision = self._decide(rng, index, exchange)
                if not self._exchange(decision, client, upstream):
                    return
        except OSError:
            pass  # a peer went away mid-relay: the connection is over
        finally:
            with contextlib.suppress(OSError):
                client.close()  # a no-op after an abort
            if upstream[0] is not None:
                upstream[0].close()
            with self._lock:
                self._conns.pop(threading.current_thread(), None)

    def _exchange(
        self, decision: Decision, client: socket.socket, upstream: list[socket.socket | None]
    ) -> bool:
        """Apply one decision to one exchange. Return whether the connection goes on."""
        fault = decision.fault
        if fault is Fault.RESET and decision.detail == "start":
            self._applied(decision)
            _abort(client)
            return False
        if fault is Fault.STALL:
            self._applied(decision)
            self._hold(client, self.faults.stall_s)
            _close(client)
            return False
        request = self._read_message(client, answer=False)
        if not request.complete:
            return False  # the client gave up or sent what cannot be relayed
        if fault is Fault.GARBAGE:
            junk = garbage(decision.detail, decision.salt)
            self._applied(decision, len(junk), len(junk))
            self._send(client, junk)
            _close(client)
            return False
        if fault is Fault.ERROR:
            answer = error_503()
            self._applied(decision, len(answer), len(answer))
            self._send(client, answer)
            _close(client)
            return False
        server = self._upstream(upstream)
        if server is None:
            _close(client)  # the server is down: so is this connection
            return False
        if fault is Fault.RESET and decision.detail == "request":
            size = len(request.data)
            part = min(int(decision.fraction * size), size - 1)
            self._applied(decision, part, size)
            self._send(server, request.data[:part])
            _abort(client)
            return False
        if not self._send(server, request.data):
            _close(client)
            return False
        answer_msg = self._read_message(server, answer=True, head_request=request.method == "HEAD")
        if not answer_msg.complete:
            _close(client)
            return False
        data = answer_msg.data
        if fault is Fault.RESET:  # at `answer`
            part = min(int(decision.fraction * len(data)), len(data) - 1)
            self._applied(decision, part, len(data))
            self._send(client, data[:part])
            _abort(client)
            return False
        if fault is Fault.CUT:
            # Inside the body when there is one: the headers promised more than comes.
            low = answer_msg.head if len(data) > answer_msg.head else 1
            part = min(low + int(decision.fraction * (len(data) - low)), len(data) - 1)
            self._applied(decision, part, len(data))
            self._send(client, data[:part])
            _close(client)
            return False
        self._applied(decision, len(data), len(data))
        if not self._send(client, data):
            return False
        if answer_msg.close or request.close:
            _close(client)
            return False
        return True

    # -- socket helpers -----------------------------------------------------------------------

    def _upstream(self, holder: list[socket.socket | None]) -> socket.socket | None:
        """Return the connection to the server, (re)opened if it is not usable."""
        sock = holder[0]
        if sock is not None and not self._alive(sock):
            sock.close()
            holder[0] = sock = None
        if sock is None:
            try:
                sock = socket.create_connection(self.target, timeout=self.io_timeout)
            except OSError:
                return None
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            holder[0] = sock
            self._track(sock)
        return sock

    @staticmethod
    def _alive(sock: socket.socket) -> bool:
        """Return whether an idle kept-alive connection is still open (nothing to read)."""
        try:
            sock.setblocking(False)
            try:
                return not sock.recv(1, socket.MSG_PEEK)  # b"": closed; data: out of step
            except BlockingIOError:
                return True
            finally:
                sock.setblocking(True)
        except OSError:
            return False

    def _wait_request(self, client: socket.socket) -> bool:
        """Wait for the next request on a kept-alive connection. Return False at EOF, after
        `idle_timeout` or on stop."""
        deadline = time.monotonic() + self.idle_timeout
        for _ in range(int(self.idle_timeout / _POLL_S) + 2):
            left = deadline - time.monotonic()
            if self._stopping.is_set() or left <= 0:
                return False
            try:
                client.settimeout(min(left, _POLL_S))
                return bool(client.recv(1, socket.MSG_PEEK))
            except TimeoutError:
                continue
            except OSError:
                return False
        return False

    def _recv(self, sock: socket.socket, deadline: float) -> bytes | None:
        """Return the next bytes, b"" at EOF or a reset, None at the deadline or on stop."""
        for _ in range(int(max(deadline - time.monotonic(), 0.0) / _POLL_S) + 2):
            left = deadline - time.monotonic()
            if self._stopping.is_set() or left <= 0:
                return None
            try:
                sock.settimeout(min(left, _POLL_S))
                return sock.recv(_CHUNK)
            except TimeoutError:
                continue
            except OSError:
                return b""
        return None

    def _send(self, sock: socket.socket, data: bytes) -> bool:
        """Send all of `data` within `io_timeout`. Return whether it went."""
        if not data:
            return True
        try:
            sock.settimeout(self.io_timeout)
            sock.sendall(data)
        except OSError:
            return False
        return True

    def _hold(self, client: socket.socket, seconds: float) -> None:
        """Read and drop what the client sends, forwarding nothing, for `seconds` or until it
        closes (or stop)."""
        deadline = time.monotonic() + seconds
        for _ in range(_MAX_READS):
            chunk = self._recv(client, deadline)
            if not chunk:
                return

    def _read_message(
        self, sock: socket.socket, answer: bool, head_request: bool = False
    ) -> _Message:
        """Read one whole request or answer within `io_timeout`."""
        deadline = time.monotonic() + self.io_timeout
        buf = bytearray()
        head_end = -1
        mode, length, close, method = "", 0, False, ""
        for _ in range(_MAX_READS):
            if head_end < 0:
                found = buf.find(b"\r\n\r\n")
                if found >= 0:
                    head_end = found + 4
                    try:
                        mode, length, close, method = _framing(
                            bytes(buf[:head_end]), answer, head_request
                        )
                    except _Unframed:
                        return _Message(bytes(buf), False, True)
                elif len(buf) > _MAX_HEAD:
                    return _Message(bytes(buf), False, True)
            end: int | None = None
            if mode == "none":
                end = head_end
            elif mode == "length":
                end = head_end + length
            elif mode == "chunked":
                try:
                    end = _chunked_end(buf, head_end)
                except _Unframed:
                    return _Message(bytes(buf), False, True)
            if end is not None and len(buf) >= end:
                return _Message(bytes(buf[:end]), True, close, method, head_end)
            if len(buf) > _MAX_MESSAGE:
                return _Message(bytes(buf), False, True)
            chunk = self._recv(sock, deadline)
            if not chunk:
                complete = chunk == b"" and mode == "eof"
                return _Message(bytes(buf), complete, True, method, max(head_end, 0))
            buf += chunk
        return _Message(bytes(buf), False, True)
