"""The HTTP listener's bounds, in-process on 127.0.0.1: what a slow, idle, greedy or malformed
client gets, pipelined requests, and a stop that closes every connection and leaves no thread."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from camwatch import http_server
from camwatch.config import Config, parse_config
from camwatch.gate import CaptionGate
from camwatch.http_server import App, HttpListener
from camwatch.metrics import Metrics
from camwatch.state_view import Parts, ServiceView
from camwatch.store import Store
from camwatch.timeline import Timeline

pytestmark = pytest.mark.usefixtures("no_thread_leaks")


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[HttpListener]:
    """A listener without a token on a free loopback port, over a real (empty) database."""
    config: Config = parse_config(
        {
            "cameras": [{"name": "front", "path": str(tmp_path)}],
            "state_dir": str(tmp_path / "state"),
            "http": {"listen": "127.0.0.1:0"},
        }
    )
    assert config.http is not None
    store = Store(config.state_dir)
    view = ServiceView(
        Parts(
            state_dir=config.state_dir,
            config=lambda: config,
            gate=CaptionGate.for_config(config.caption),
            watching=lambda: {"front": ("inotify", None)},
            busy=lambda: 0,
            settling=lambda: 0,
        )
    )
    metrics = Metrics()
    metrics.watch(view)
    server = HttpListener(config.http, App(metrics, view, Timeline(config.state_dir, config)))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        view.close()
        store.close()


def _connect(listener: HttpListener) -> socket.socket:
    return socket.create_connection(("127.0.0.1", listener.port), timeout=5)


def _read_all(sock: socket.socket) -> bytes:
    """Read until the server closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_pipelined_requests_are_answered_in_order(listener: HttpListener) -> None:
    with _connect(listener) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /nonexistent HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        answers = _read_all(sock)
    assert answers.startswith(b"HTTP/1.1 200 ")
    assert answers.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 404 " in answers


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n", b"414"),
        (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 3000 + b"\r\n", b"431"),
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"BREW /pot HTTP/1.1\r\nConnection: close\r\n\r\n", b"405"),
        (b"DELETE /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", b"405"),
    ],
)
def test_bad_requests_get_an_answer_and_the_connection_closes(
    listener: HttpListener, head: bytes, status: bytes
) -> None:
    with _connect(listener) as sock:
        sock.sendall(head)
        answer = _read_all(sock)
    assert answer.split(b" ", 2)[1] == status, answer[:200]
    assert b"Traceback" not in answer


def test_a_request_with_a_body_closes_its_connection(listener: HttpListener) -> None:
    # The body is never read: on a kept-alive connection it would pass for the next request.
    with _connect(listener) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nContent-Length: 20\r\n\r\nGET /metrics HTTP/1.1")
        answer = _read_all(sock)
    assert answer.count(b"HTTP/1.1 ") == 1 and b"Connection: close" in answer


def test_idle_and_slow_clients_are_dropped(
    listener: HttpListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_server, "IDLE_TIMEOUT_S", 0.3)
    monkeypatch.setattr(http_server, "HEAD_TIMEOUT_S", 0.3)
    with _connect(listener) as idle:
        started = time.monotonic()
        assert _read_all(idle) == b""
        assert time.monotonic() - started < 3
    with _connect(listener) as slow:
        slow.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never the rest
        started = time.monotonic()
        assert _read_all(slow) == b""
        assert time.monotonic() - started < 3


def test_connections_beyond_the_limit_are_turned_away(
    listener: HttpListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The limit is read when a listener starts: a second one with a limit of 2.
    monkeypatch.setattr(http_server, "MAX_CONNECTIONS", 2)
    small = HttpListener(listener.http, listener.app)
    small.start()
    try:
        held = [socket.create_connection(("127.0.0.1", small.port), timeout=5) for _ in range(2)]
        try:
            for sock in held:  # each is being served: its thread waits for a request
                sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
                assert sock.recv(12) == b"HTTP/1.1 200"
            with socket.create_connection(("127.0.0.1", small.port), timeout=5) as third:
                assert _read_all(third).startswith(b"HTTP/1.1 503")
        finally:
            for sock in held:
                sock.close()
    finally:
        small.stop()


def test_stop_closes_kept_alive_connections(listener: HttpListener) -> None:
    session = requests.Session()
    url = f"http://127.0.0.1:{listener.port}/healthz"
    assert session.get(url, timeout=5).status_code == 200
    listener.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(url, timeout=5)
    session.close()
