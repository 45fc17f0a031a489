"""End to end: what the real daemon's JSON log says when something is set up wrong. A webhook
that refuses connections (or whose host does not resolve) is named with its `host:port` and the
kind of failure, never its credentials, path or token; a 404 from the caption API says to check
`caption.base_url` and `caption.endpoint`; every retry and pause of a caption names the image."""

from __future__ import annotations

import contextlib
import ipaddress
import platform
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from camwatch.testing import StandinCaptionAPI

from .support import API_KEY, ConfigWriter, Daemon, Tree, drop, image

StartDaemon = Callable[..., Daemon]

PASSWORD = "pw-e2e-51d0c3"
TOKEN = "tok-e2e-a8f27b"
SECRET_PATH = "/hooks/private-e2e-93b4"


def secret_url(host: str, port: int) -> str:
    """Return a webhook URL with a user, a password, a path and a query token."""
    return f"http://alice:{PASSWORD}@{host}:{port}{SECRET_PATH}?token={TOKEN}"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound on 127.0.0.1 and not listening: connections are refused."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


def local_dns_env() -> dict[str, str] | None:
    """Return the environment under which resolving a `.invalid` name fails without a query
    leaving this machine (nothing when every resolver is on loopback; glibc's
    `RES_OPTIONS=attempts:0`, which sends none, otherwise), or None if there is none."""
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


def test_undeliverable_webhooks_and_caption_retries_say_what_and_where(
    tree: Tree,
    api: StandinCaptionAPI,
    config: ConfigWriter,
    start_daemon: StartDaemon,
    closed_port: int,
) -> None:
    dns_env = local_dns_env()
    webhooks = [
        {
            "name": "ops-refused",
            "url": secret_url("127.0.0.1", closed_port),
            "secret": "${CAMWATCH_WEBHOOK_SECRET}",
        }
    ]
    if dns_env is not None:  # else resolving it would send a query off this machine
        webhooks.append({"name": "ops-nowhere", "url": secret_url("camwatch-e2e.invalid", 8080)})
    api.fail_next(1, 503)  # the first caption request: retried, then answered
    daemon = start_daemon(config.write(webhooks=webhooks), env=dns_env or {})

    down = drop(tree.frontdoor / "down.jpg", image("A man collapsed on the path."))
    retry = daemon.wait_event("caption_retry")
    assert (retry["camera"], retry["path"]) == ("frontdoor", str(down))
    assert retry["reason"].startswith("HTTP 503 from caption API")

    refused = daemon.wait_event("alert_delivery_failed", target="ops-refused")
    assert refused["kind"] == "webhook"
    assert refused["address"] == f"127.0.0.1:{closed_port}"
    assert refused["failure"] == "refused"
    assert refused["reason"] == "connection refused: nothing listens on that port"
    assert refused["level"] == "warning"
    if dns_env is not None:
        nowhere = daemon.wait_event("alert_delivery_failed", target="ops-nowhere")
        assert nowhere["address"] == "camwatch-e2e.invalid:8080"
        assert nowhere["failure"] == "dns"

    # A bad key (401): captioning pauses, and the one line that says so names the image.
    api.fail_next(1, 401)
    parcel = drop(tree.driveway / "parcel.jpg", image("A parcel at the door."))
    paused = daemon.wait_event("captioning_paused")
    assert (paused["camera"], paused["path"]) == ("driveway", str(parcel))
    daemon.wait_event("image_captioned", path=str(parcel))  # the probe a second later
    assert daemon.terminate()[0] == 0

    log = daemon.stderr_text
    for secret in (PASSWORD, TOKEN, SECRET_PATH, "alice", API_KEY):
        assert secret not in log, f"{secret!r} is in the log"


def test_a_404_from_the_caption_api_says_to_check_base_url_and_endpoint(
    tree: Tree,
    api: StandinCaptionAPI,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    data = config.data()
    data["caption"]["endpoint"] = "/v1/understand/uploadImage"  # a typo: the API has no such path
    daemon = start_daemon(config.write(data))
    snap = drop(tree.frontdoor / "snap.jpg", image("A quiet porch."))

    failed = daemon.wait_event("image_failed", path=str(snap))
    hint = (
        f"the API answered 404 Not Found for POST {api.url}/v1/understand/uploadImage:"
        " check caption.base_url (the address only, e.g. https://security.memories.ai)"
        " and caption.endpoint"
    )
    assert failed["camera"] == "frontdoor"
    assert failed["reason"].startswith("HTTP 404 from caption API")
    assert failed["reason"].endswith(hint)
    assert daemon.terminate()[0] == 0
    assert API_KEY not in daemon.stderr_text

    # The reason recorded with the image (what `status` and `retry` show) says the same.
    db = sqlite3.connect(f"file:{tree.state / 'camwatch.db'}?mode=ro", uri=True)
    try:
        (recorded,) = db.execute(
            "SELECT last_error FROM images WHERE path = ?", (str(snap),)
        ).fetchone()
    finally:
        db.close()
    assert recorded == failed["reason"]
