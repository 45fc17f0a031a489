"""Sessions whose whole answer has a deadline: over plain HTTP and over TLS, a normal answer
goes through unchanged, and a server trickling its headers is cut off."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from camwatch.sessions import answer_deadline, deadline_session


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/drip":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(200):  # about 20 s of header bytes, each well within the timeout
                self.wfile.write(b"X")
                self.wfile.flush()
                time.sleep(0.1)
            return
        body = b"hello " * 1000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(params=["http", "https"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, object]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    httpd.daemon_threads = True
    verify: object = True
    if request.param == "https":
        if shutil.which("openssl") is None:
            pytest.skip("openssl is not installed")
        cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
                *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
                *("-addext", "subjectAltName=IP:127.0.0.1"),
            ],
            check=True,
            capture_output=True,
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        verify = str(cert)
    thread = threading.Thread(target=httpd.serve_forever, name="tls-hello", daemon=True)
    thread.start()
    try:
        yield f"{request.param}://127.0.0.1:{httpd.server_address[1]}", verify
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_a_normal_answer_is_read_whole(server: tuple[str, object]) -> None:
    url, verify = server
    with deadline_session(pool_maxsize=2) as session:
        for _ in range(3):  # the same pooled connection, reused
            with answer_deadline(5.0):
                response = session.get(f"{url}/", timeout=5, verify=verify)  # type: ignore[arg-type]
            assert response.status_code == 200
            assert response.content == b"hello " * 1000


def test_trickled_headers_are_cut_at_the_deadline(server: tuple[str, object]) -> None:
    url, verify = server
    started = time.monotonic()
    with (
        deadline_session(pool_maxsize=2) as session,
        pytest.raises(requests.RequestException),
        answer_deadline(1.0),
    ):
        session.get(f"{url}/drip", timeout=5, verify=verify)  # type: ignore[arg-type]
    assert time.monotonic() - started < 5  # each byte came within the 5 s read timeout


def test_without_a_deadline_reads_are_bounded_by_the_timeout_only(
    server: tuple[str, object],
) -> None:
    url, verify = server
    with deadline_session(pool_maxsize=1) as session:
        response = session.get(f"{url}/", timeout=5, verify=verify)  # type: ignore[arg-type]
    assert response.status_code == 200
