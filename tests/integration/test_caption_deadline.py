"""A caption API that trickles its answer cannot hold a worker past `caption.timeout`."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from camwatch.caption import CaptionClient
from camwatch.config import CaptionConfig
from camwatch.errors import TransientCaptionError
from camwatch.prompts import Prompts
from camwatch.testing import sample_images


class Trickler:
    """Answers every request with headers, then one body byte every `pace` seconds; with
    `headers_too`, the status line and headers themselves come a byte at a time."""

    def __init__(self, pace: float = 0.1, headers_too: bool = False) -> None:
        self.pace = pace
        self.headers_too = headers_too
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, name="trickler", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            thread = threading.Thread(target=self._dribble, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _dribble(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(1.0)
            try:
                conn.recv(1 << 20)
                head = (
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100000\r\n"
                )
                if self.headers_too:
                    # A header line that never ends, each byte well within the read timeout.
                    head += b"X-Drip: " + b"a" * 100_000
                for byte in range(len(head)) if self.headers_too else ():
                    if self.stop.wait(self.pace):
                        return
                    conn.sendall(head[byte : byte + 1])
                conn.sendall(head + b"\r\n")
                for _ in range(100_000):
                    if self.stop.wait(self.pace):
                        return
                    conn.sendall(b" ")
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        for thread in self.threads:
            thread.join(2)
        self.sock.close()


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    server = Trickler()
    yield server
    server.close()


def test_a_trickled_answer_times_out_as_a_transient_error(trickler: Trickler) -> None:
    config = CaptionConfig(
        base_url=f"http://127.0.0.1:{trickler.port}",
        timeout=0.6,
        retry={"attempts": 2, "backoff_initial": 0.01, "backoff_max": 0.02},
    )
    _, data, _ = sample_images()[0]
    started = time.monotonic()
    with CaptionClient(config, "key-for-tests") as client, pytest.raises(TransientCaptionError):
        client.caption_file(data, "a.jpg", Prompts("u", "s", False))
    # Two tries of at most timeout each (plus a little): not the 10,000 s the trickle would take.
    assert time.monotonic() - started < 10
    assert trickler.accepted == 2


@pytest.fixture
def header_trickler() -> Iterator[Trickler]:
    server = Trickler(headers_too=True)
    yield server
    server.close()


def test_trickled_headers_time_out_too(header_trickler: Trickler) -> None:
    config = CaptionConfig(
        base_url=f"http://127.0.0.1:{header_trickler.port}",
        timeout=0.6,
        retry={"attempts": 1, "backoff_initial": 0.01, "backoff_max": 0.02},
    )
    _, data, _ = sample_images()[0]
    started = time.monotonic()
    with CaptionClient(config, "key-for-tests") as client, pytest.raises(TransientCaptionError):
        client.caption_file(data, "a.jpg", Prompts("u", "s", False))
    # The status line and headers never end: only a deadline on the whole answer stops it.
    assert time.monotonic() - started < 10
