"""What a failure says: against real sockets on 127.0.0.1 (a closed port, a server that never
answers, one that hangs up, one whose backlog is full, a TLS server with a self-signed
certificate, a host name that cannot resolve), a webhook failure names the target, its
`host:port` and the kind of failure, never the URL's user, password, path or query; an Apprise
target names which of its URLs failed and how. And the caption API's side: a 404 says which URL
was posted to and what to check; a retry line carries what the caller bound (camera, path)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import platform
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from camwatch.caption import CaptionClient
from camwatch.config import CaptionConfig, Config, parse_config
from camwatch.dispatch import TargetWorker
from camwatch.errors import DeliveryError, DeliveryFailed, PermanentCaptionError
from camwatch.log import get_logger
from camwatch.netfail import host_port
from camwatch.prompts import Prompts
from camwatch.senders.notify import send_notify
from camwatch.senders.webhook import QuickRetry, WebhookSender, post_webhook
from camwatch.sessions import deadline_session
from camwatch.store import AlertCandidate, NewImage, Store
from camwatch.testing import StandinCaptionAPI, WebhookReceiver, jpeg_with_caption

# Not for the Apprise tests: Apprise keeps a thread pool of its own for the life of the process.
no_leaks = pytest.mark.usefixtures("no_thread_leaks")

# Parts of a webhook URL that are often credentials: none may appear in an error or a log line.
PASSWORD = "pw-9f3a61c2"
TOKEN = "tok-5be0d4a7"
SECRET_PATH = "/hooks/private-7c1e"
ONE_TRY = QuickRetry(attempts=1)


def secret_url(scheme: str, host: str, port: int) -> str:
    """Return a webhook URL with a user, a password, a path and a query token."""
    return f"{scheme}://alice:{PASSWORD}@{host}:{port}{SECRET_PATH}?token={TOKEN}"


def assert_no_secret(text: str) -> None:
    for part in (PASSWORD, TOKEN, SECRET_PATH, "alice"):
        assert part not in text, f"{part!r} leaked: {text}"


def make_config(tmp_path: Path, webhooks: list[dict[str, Any]], **extra: Any) -> Config:
    cams = tmp_path / "cams"
    cams.mkdir(exist_ok=True)
    return parse_config(
        {
            "cameras": [{"name": "front", "path": str(cams)}],
            "webhooks": webhooks,
            "delivery": {"backoff_initial": "50ms", "backoff_max": "200ms"},
            **extra,
        },
        {},
    )


def post_once(tmp_path: Path, url: str, timeout: str = "2s") -> DeliveryError:
    """POST one alert to `url` (a single try); return the error it fails with."""
    config = make_config(tmp_path, [{"name": "ops", "url": url, "timeout": timeout}])
    with deadline_session(pool_maxsize=1) as session, pytest.raises(DeliveryError) as caught:
        post_webhook(session, config.webhooks[0], "e1", "{}", threading.Event(), ONE_TRY)
    return caught.value


# -- servers that fail in one way each -------------------------------------------------------------


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound on 127.0.0.1 and not listening: connections to it are refused, and no other
    program is given it meanwhile."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel does) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.fixture
def full_port() -> Iterator[int]:
    """A port whose accept queue is full: the kernel drops new connection attempts (SYNs), so a
    client's connect times out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # room for one pending connection
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):  # takes that room
            yield port


@pytest.fixture
def hangup_port() -> Iterator[int]:
    """A server that accepts each connection and closes it without a word."""
    stop = threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.05)

        def serve() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    conn, _ = listener.accept()
                    conn.close()

        thread = threading.Thread(target=serve, name="hangup-server", daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1]
        finally:
            stop.set()
            thread.join(5)


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def tls_port(tmp_path: Path) -> Iterator[int]:
    """An HTTPS server whose certificate is self-signed (so no trust store takes it)."""
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
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    httpd.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, name="tls-server", daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def local_dns_env() -> dict[str, str] | None:
    """Return the environment under which resolving a `.invalid` name fails without a query
    leaving this machine, or None if there is none: nothing when every resolver is on loopback
    (systemd-resolved answers `.invalid` itself); glibc's `RES_OPTIONS=attempts:0` (no query is
    sent at all) otherwise."""
    servers = []
    with contextlib.suppress(OSError):
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "nameserver":
                servers.append(fields[1].split("%")[0])
    with contextlib.suppress(ValueError):
        if servers and all(ipaddress.ip_address(s).is_loopback for s in servers):
            return {}
    if platform.libc_ver()[0] == "glibc":
        return {"RES_OPTIONS": "attempts:0"}
    return None


# -- webhooks ----------------------------------------------------------------------------------


@no_leaks
def test_a_refused_connection_names_the_address_and_says_refused(
    tmp_path: Path, closed_port: int
) -> None:
    error = post_once(tmp_path, secret_url("http", "127.0.0.1", closed_port))
    assert isinstance(error, DeliveryFailed)
    assert error.fields() == {
        "failure": "refused",
        "reason": "connection refused: nothing listens on that port",
        "address": f"127.0.0.1:{closed_port}",
    }
    assert str(error) == (
        f"webhook 'ops' at 127.0.0.1:{closed_port}:"
        " connection refused: nothing listens on that port"
    )
    assert_no_secret(str(error))


@no_leaks
def test_a_server_that_never_answers_timed_out(tmp_path: Path, silent_port: int) -> None:
    started = time.monotonic()
    error = post_once(tmp_path, secret_url("http", "127.0.0.1", silent_port), timeout="300ms")
    assert time.monotonic() - started < 5
    assert (error.failure, error.reason) == ("timed out", "no answer within 0.3s")
    assert error.address == f"127.0.0.1:{silent_port}"
    assert_no_secret(str(error))


@no_leaks
def test_a_connection_never_accepted_timed_out(tmp_path: Path, full_port: int) -> None:
    error = post_once(tmp_path, secret_url("http", "127.0.0.1", full_port), timeout="300ms")
    assert (error.failure, error.reason) == ("timed out", "no connection within 0.3s")
    assert_no_secret(str(error))


@no_leaks
def test_a_server_that_hangs_up_is_a_reset(tmp_path: Path, hangup_port: int) -> None:
    error = post_once(tmp_path, secret_url("http", "127.0.0.1", hangup_port))
    assert error.failure == "reset"
    assert error.address == f"127.0.0.1:{hangup_port}"
    assert_no_secret(str(error))


@no_leaks
def test_an_untrusted_certificate_is_a_tls_failure(tmp_path: Path, tls_port: int) -> None:
    error = post_once(tmp_path, secret_url("https", "127.0.0.1", tls_port))
    assert error.failure == "tls"
    assert error.reason == "TLS certificate not trusted: self-signed certificate"
    assert error.address == f"127.0.0.1:{tls_port}"
    assert_no_secret(str(error))


@no_leaks
def test_https_to_a_plain_http_port_is_a_tls_failure(tmp_path: Path) -> None:
    with WebhookReceiver() as plain:
        error = post_once(tmp_path, secret_url("https", "127.0.0.1", plain.port))
    assert error.failure == "tls"
    assert error.reason is not None and error.reason.startswith("TLS handshake failed")


@no_leaks
def test_an_http_error_names_its_status(tmp_path: Path) -> None:
    with WebhookReceiver() as receiver:
        receiver.set_outage(503)
        error = post_once(tmp_path, secret_url("http", "127.0.0.1", receiver.port))
    assert error.fields() == {
        "failure": "http 503",
        "reason": "the server answered 503 Service Unavailable",
        "address": f"127.0.0.1:{receiver.port}",
    }
    assert_no_secret(str(error))


@no_leaks
def test_a_stop_between_quick_tries_keeps_the_last_failure(
    tmp_path: Path, closed_port: int
) -> None:
    # Shutting down: the try that failed is what is logged and kept, not "shutting down".
    config = make_config(tmp_path, [{"name": "ops", "url": f"http://127.0.0.1:{closed_port}/"}])
    stopping = threading.Event()
    stopping.set()
    with deadline_session(pool_maxsize=1) as session, pytest.raises(DeliveryFailed) as caught:
        post_webhook(session, config.webhooks[0], "e1", "{}", stopping, QuickRetry(attempts=3))
    assert caught.value.failure == "refused"


@pytest.mark.parametrize(
    ("url", "address"),
    [
        (
            f"https://alice:{PASSWORD}@hooks.example.com{SECRET_PATH}?t={TOKEN}",
            "hooks.example.com:443",
        ),
        (f"http://hooks.example.com{SECRET_PATH}", "hooks.example.com:80"),
        (f"https://[::1]:8443{SECRET_PATH}", "[::1]:8443"),
    ],
)
def test_the_address_shown_is_host_and_port_only(url: str, address: str) -> None:
    assert host_port(url) == address


_DNS_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    from camwatch.config import parse_config
    from camwatch.errors import DeliveryError
    from camwatch.senders.webhook import QuickRetry, post_webhook
    from camwatch.sessions import deadline_session

    config = parse_config({"cameras": [{"name": "front", "path": sys.argv[2]}],
                           "webhooks": [{"name": "ops", "url": sys.argv[1]}]}, {})
    try:
        with deadline_session(pool_maxsize=1) as session:
            post_webhook(session, config.webhooks[0], "e1", "{}", threading.Event(),
                         QuickRetry(attempts=1))
    except DeliveryError as exc:
        print(json.dumps({"message": str(exc), **exc.fields()}))
    """
)


@no_leaks
def test_a_host_name_that_does_not_resolve_is_a_dns_failure(tmp_path: Path) -> None:
    # In a child process: the resolver reads RES_OPTIONS when it starts, not later.
    env = local_dns_env()
    if env is None:
        pytest.skip("resolving a name here would send a query off this machine")
    (tmp_path / "cams").mkdir()
    url = secret_url("http", "camwatch-test.invalid", 8080)
    done = subprocess.run(
        [sys.executable, "-c", _DNS_SCRIPT, url, str(tmp_path / "cams")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**_child_env(), **env},
        check=True,
    )
    error = json.loads(done.stdout)
    assert error["failure"] == "dns"
    assert error["reason"].startswith("the host name does not resolve")
    assert error["address"] == "camwatch-test.invalid:8080"
    assert_no_secret(done.stdout + done.stderr)


def _child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "RES_OPTIONS"}


@no_leaks
def test_the_log_line_of_a_failed_delivery_has_the_fields_and_no_secret(
    tmp_path: Path, closed_port: int
) -> None:
    url = secret_url("http", "127.0.0.1", closed_port)
    config = make_config(tmp_path, [{"name": "ops", "url": url, "timeout": "2s"}])
    store = Store(tmp_path / "state")
    sender = WebhookSender(config.webhooks[0], ONE_TRY, threading.Event())
    try:
        event_id = queue_alert(store, "ops")
        worker = TargetWorker(sender, store, config.delivery, lambda row, sender: None)
        with capture_logs() as logs:
            worker.deliver_due()  # one try, in this thread
    finally:
        sender.close()
        store.close()
    (failed,) = [e for e in logs if e["event"] == "alert_delivery_failed"]
    assert failed["target"] == "ops"
    assert failed["kind"] == "webhook"
    assert failed["event_id"] == event_id
    assert failed["address"] == f"127.0.0.1:{closed_port}"
    assert failed["failure"] == "refused"
    assert failed["reason"] == "connection refused: nothing listens on that port"
    assert_no_secret(json.dumps(logs, default=str))


def queue_alert(store: Store, target: str, kind: str = "webhook") -> str:
    """Put one alert for `target` in the outbox as the pipeline does; return its event id."""
    path = f"/cams/front/{time.monotonic_ns()}.jpg"
    store.add_pending([NewImage("front", path, "a.jpg", 1, 1, time.time())])
    job = store.claim()
    assert job is not None
    event_id = f"ev-{time.monotonic_ns()}"
    body = json.dumps({"title": "critical: person-down on front", "body": "A person lying."})
    candidate = AlertCandidate(event_id, "person-down", "front", 0.0, [(kind, target)], body)
    store.complete(job.id, "cd" * 32, 1, 1, "caption", (1, 1, 2), [candidate])
    return event_id


# -- Apprise targets ---------------------------------------------------------------------------

MESSAGE = json.dumps({"title": "critical: person-down on front", "body": "A person lying."})


def notify_target(tmp_path: Path, urls: list[str]) -> Any:
    config = make_config(tmp_path, [], notify=[{"name": "phones", "urls": urls}])
    return config.notify[0]


def test_a_notify_url_that_cannot_connect_is_named_by_its_index(
    tmp_path: Path, closed_port: int
) -> None:
    with WebhookReceiver() as receiver:
        host = receiver.url.removeprefix("http://")
        target = notify_target(
            tmp_path,
            [f"json://{host}/ok", f"json://alice:{PASSWORD}@127.0.0.1:{closed_port}/x?t={TOKEN}"],
        )
        with pytest.raises(DeliveryFailed) as caught:
            send_notify(target, MESSAGE)
        assert receiver.wait_for(1, 5)  # the first URL got the message all the same
    error = caught.value
    assert error.fields() == {
        "failure": "connection",
        "reason": "cannot connect to the service",
        "url": "urls[1]",
    }
    assert str(error) == "notify 'phones' urls[1] (JSON): cannot connect to the service"
    assert_no_secret(str(error))


def test_a_notify_url_answered_with_an_error_names_the_status(tmp_path: Path) -> None:
    with WebhookReceiver() as receiver:
        receiver.set_outage(503)
        host = receiver.url.removeprefix("http://")
        target = notify_target(tmp_path, [f"json://{host}/x?t={TOKEN}"])
        with pytest.raises(DeliveryFailed) as caught:
            send_notify(target, MESSAGE)
    assert (caught.value.failure, caught.value.url) == ("http 503", "urls[0]")
    assert_no_secret(str(caught.value))


def test_the_notify_failure_reaches_the_log_line(tmp_path: Path, closed_port: int) -> None:
    from camwatch.senders.notify import NotifySender

    target = notify_target(tmp_path, [f"json://127.0.0.1:{closed_port}/x?t={TOKEN}"])
    store = Store(tmp_path / "state")
    try:
        queue_alert(store, "phones", kind="notify")
        delivery = make_config(tmp_path, []).delivery
        worker = TargetWorker(NotifySender(target), store, delivery, lambda row, sender: None)
        with capture_logs() as logs:
            worker.deliver_due()
    finally:
        store.close()
    (failed,) = [e for e in logs if e["event"] == "alert_delivery_failed"]
    assert (failed["target"], failed["kind"]) == ("phones", "notify")
    assert (failed["failure"], failed["url"]) == ("connection", "urls[0]")
    assert_no_secret(json.dumps(failed, default=str))


# -- the caption API -----------------------------------------------------------------------------

API_KEY = "it-api-key-0c9e5b27"
PROMPTS = Prompts("What is happening?", "You watch a house.", False)


@pytest.fixture
def caption_api() -> Iterator[StandinCaptionAPI]:
    with StandinCaptionAPI(captions={}, api_key=API_KEY) as server:
        yield server


@no_leaks
@pytest.mark.parametrize(
    ("base", "endpoint", "posted"),
    [
        ("", "/v1/understand/uploadImage", "/v1/understand/uploadImage"),  # a typo
        ("/api", "/v1/understand/uploadImg", "/api/v1/understand/uploadImg"),  # a path too many
    ],
)
def test_a_404_from_the_caption_api_says_what_to_check(
    caption_api: StandinCaptionAPI, base: str, endpoint: str, posted: str
) -> None:
    # The address is shown as posted to, without the user and password a base_url may carry.
    origin = f"http://alice:{PASSWORD}@127.0.0.1:{caption_api.port}"
    config = CaptionConfig(base_url=origin + base, endpoint=endpoint, retry={"attempts": 3})
    with (
        CaptionClient(config, API_KEY) as client,
        capture_logs() as logs,
        pytest.raises(PermanentCaptionError) as caught,
    ):
        client.caption_file(jpeg_with_caption("A quiet porch."), "a.jpg", PROMPTS)
    assert str(caught.value) == (
        "HTTP 404 from caption API: not found; the API answered 404 Not Found for POST"
        f" http://127.0.0.1:{caption_api.port}{posted}: check caption.base_url (the address"
        " only, e.g. https://security.memories.ai) and caption.endpoint"
    )
    assert caption_api.count == 1  # not retried: it would only fail the same way
    assert_no_secret(str(caught.value) + json.dumps(logs, default=str))
    assert API_KEY not in str(caught.value)


@no_leaks
def test_caption_retry_lines_carry_what_the_caller_bound(caption_api: StandinCaptionAPI) -> None:
    caption_api.fail_next(2, 503)
    config = CaptionConfig(base_url=caption_api.url, retry={"attempts": 3, "backoff_initial": 0.01})
    bound = get_logger("camwatch.pipeline").bind(camera="front", path="/cams/front/a.jpg")
    with CaptionClient(config, API_KEY) as client, capture_logs() as logs:
        result = client.caption_file(jpeg_with_caption("A quiet porch."), "a.jpg", PROMPTS, bound)
    assert result.text
    retries = [e for e in logs if e["event"] == "caption_retry"]
    assert [(e["camera"], e["path"], e["attempt"]) for e in retries] == [
        ("front", "/cams/front/a.jpg", 1),
        ("front", "/cams/front/a.jpg", 2),
    ]
