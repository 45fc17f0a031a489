"""The HTTP listener of the real daemon: `/metrics` scraped over HTTP and read with
prometheus-client's own parser against what a run did, `/healthz`, the token on every path, the
configuration error, and a re-bind on SIGHUP."""

from __future__ import annotations

import base64
import shutil
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import camwatch
from camwatch.testing import StandinCaptionAPI, WebhookReceiver

from .support import ConfigWriter, Daemon, Tree, drop, image, run_cli, wait_until

TOKEN = "e2e-http-token-5c1f8a2b9d"
MAX_BYTES = 20_000
PATHS = ("/", "/metrics", "/healthz", "/thumb/1", "/nonexistent")

Families = dict[str, Any]


def _start(
    config: ConfigWriter,
    start_daemon: Callable[..., Daemon],
    data: dict[str, Any] | None = None,
    token: str | None = TOKEN,
) -> tuple[Daemon, str]:
    """Start the daemon with a listener on a free loopback port; return it and its base URL."""
    data = data or config.data()
    data["http"] = {"listen": "127.0.0.1:0", **({"token": token} if token else {})}
    daemon = start_daemon(config.write(data))
    port = daemon.wait_event("http_listening")["port"]
    return daemon, f"http://127.0.0.1:{port}"


def _get(url: str, token: str | None = TOKEN, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kwargs.setdefault("timeout", 10)
    return requests.get(url, headers=headers, **kwargs)


def scrape(base: str) -> Families:
    """Return the metric families `/metrics` exposes, parsed by prometheus-client's parser."""
    answer = _get(base + "/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(answer.text)}


def value(families: Families, sample: str, **labels: str) -> float | None:
    """Return the value of the sample called `sample` with exactly `labels`, or None."""
    for family in families.values():
        for s in family.samples:
            if s.name == sample and s.labels == labels:
                return float(s.value)
    return None


def _tokens(api: StandinCaptionAPI, camera_images: set[str]) -> tuple[int, int]:
    """Return the input and output tokens the stand-in answered for the successful uploads of
    the files named in `camera_images`: `input` is 258 + a quarter of the prompts' length,
    `output` 1 + a quarter of the caption's."""
    tokens_in = tokens_out = 0
    for request in api.requests:
        if request.status == 200 and request.file_name in camera_images:
            assert request.json is not None and request.caption is not None
            prompt = f"{request.json['user_prompt']} {request.json['system_prompt']}"
            tokens_in += 258 + len(prompt) // 4
            tokens_out += 1 + len(request.caption) // 4
    return tokens_in, tokens_out


def test_metrics_count_what_a_run_did(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    hooks2: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: Callable[..., Daemon],
) -> None:
    data = config.data()
    data["caption"]["max_image_bytes"] = MAX_BYTES
    data["webhooks"].append({"name": "backup", "url": hooks2.url})
    # "backup" fails once (three 500s: the sender's quick tries within one delivery attempt;
    # the alert is tried again later), then refuses an alert for good (a dead letter).
    hooks2.fail_next(3, 500)
    hooks2.fail_next(1, 410)
    started = time.time()
    daemon, base = _start(config, start_daemon, data)

    # At start, before any image: every known series is there, at 0.
    first = scrape(base)
    for camera in ("frontdoor", "driveway"):
        for outcome in ("captioned", "skipped", "failed", "deduped"):
            assert value(first, "camwatch_images_total", camera=camera, outcome=outcome) == 0
        assert value(first, "camwatch_camera_up", camera=camera) == 1
        assert value(first, "camwatch_tokens_total", camera=camera, direction="input") == 0
    assert value(first, "camwatch_alerts_total", rule="package", camera="driveway") == 0
    assert value(first, "camwatch_alerts_total", rule="vehicle", camera="frontdoor") is None
    for result in ("delivered", "failed", "dropped"):
        assert value(first, "camwatch_deliveries_total", target="backup", result=result) == 0
    assert value(first, "camwatch_caption_requests_total", result="retry") == 0
    assert value(first, "camwatch_queue_depth") == 0
    assert value(first, "camwatch_captioning_paused") == 0
    assert first["camwatch_build_info"].samples[0].labels["version"] == camwatch.__version__

    # One retry alone (503, then the caption), then one failure alone (422): each scripted
    # answer meets the one image in flight.
    api.fail_next(1, 503)
    drop(tree.driveway / "retry.jpg", image("A cat walks past."))
    daemon.wait_event("image_captioned", path=str(tree.cam("driveway") / "retry.jpg"))
    api.fail_next(1, 422)
    drop(tree.frontdoor / "bad.jpg", image("A blurry frame."))
    daemon.wait_event("image_failed")

    person = image("A man is lying on the ground by the door.")
    drop(tree.frontdoor / "down.jpg", person)
    drop(tree.driveway / "car.jpg", image("A red car is parked on the driveway."))
    drop(tree.frontdoor / "big.jpg", image("Too big to send.") + b"\0" * MAX_BYTES)
    daemon.wait_event("image_captioned", count=3)
    daemon.wait_event("image_skipped", predicate=lambda e: "max_image_bytes" in str(e))
    drop(tree.frontdoor / "down.jpg", person)  # the same bytes again: deduped
    daemon.wait_event("image_skipped", outcome="duplicate")
    assert hooks.wait_for_delivered(2, 30)
    daemon.wait_event("alert_dead_lettered")
    daemon.wait_event("alert_delivered", target="backup")

    got = scrape(base)

    def images(camera: str, outcome: str) -> float | None:
        return value(got, "camwatch_images_total", camera=camera, outcome=outcome)

    assert images("frontdoor", "captioned") == 1
    assert images("frontdoor", "failed") == 1
    assert images("frontdoor", "skipped") == 1
    assert images("frontdoor", "deduped") == 1
    assert images("driveway", "captioned") == 2
    assert images("driveway", "failed") == images("driveway", "skipped") == 0

    requests_ok = len([r for r in api.requests if r.status == 200])
    assert requests_ok == 3
    assert value(got, "camwatch_caption_requests_total", result="ok") == requests_ok
    assert value(got, "camwatch_caption_requests_total", result="retry") == 1
    assert value(got, "camwatch_caption_requests_total", result="failed") == 1
    assert value(got, "camwatch_caption_duration_seconds_count") == requests_ok
    assert value(got, "camwatch_caption_duration_seconds_bucket", le="+Inf") == requests_ok
    assert 0 < value(got, "camwatch_caption_duration_seconds_sum") < 10  # type: ignore[operator]

    for camera, names in (("frontdoor", {"down.jpg"}), ("driveway", {"retry.jpg", "car.jpg"})):
        tokens_in, tokens_out = _tokens(api, names)
        assert tokens_in > 0 and tokens_out > 0
        assert value(got, "camwatch_tokens_total", camera=camera, direction="input") == tokens_in
        assert value(got, "camwatch_tokens_total", camera=camera, direction="output") == tokens_out

    assert value(got, "camwatch_alerts_total", rule="person-down", camera="frontdoor") == 1
    assert value(got, "camwatch_alerts_total", rule="vehicle", camera="driveway") == 1
    assert value(got, "camwatch_alerts_total", rule="package", camera="frontdoor") == 0

    def deliveries(target: str, result: str) -> float | None:
        return value(got, "camwatch_deliveries_total", target=target, result=result)

    assert deliveries("main", "delivered") == len(hooks.delivered) == 2
    assert deliveries("main", "failed") == deliveries("main", "dropped") == 0
    assert deliveries("backup", "failed") == 1
    assert deliveries("backup", "dropped") == 1
    assert deliveries("backup", "delivered") == len(hooks2.delivered) == 1

    assert value(got, "camwatch_queue_depth") == 0
    assert value(got, "camwatch_outbox_oldest_seconds") == 0
    assert value(got, "camwatch_outbox_pending", target="backup") == 0
    assert value(got, "camwatch_dead_letters", target="backup") == 1
    assert value(got, "camwatch_dead_letters", target="main") == 0
    for camera in ("frontdoor", "driveway"):
        last = value(got, "camwatch_last_image_timestamp_seconds", camera=camera)
        assert last is not None and started - 1 <= last <= time.time()
        assert value(got, "camwatch_watch_mode", camera=camera, mode="inotify") == 1
    assert value(got, "camwatch_caption_gate", state="closed") == 1
    assert value(got, "process_resident_memory_bytes") is not None

    health = _get(base + "/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "problems": []}


def test_paused_api_and_a_camera_gone_degrade_health(
    tree: Tree,
    api: StandinCaptionAPI,
    config: ConfigWriter,
    start_daemon: Callable[..., Daemon],
) -> None:
    daemon, base = _start(config, start_daemon)
    api.set_outage(401)  # the key is refused: captioning pauses
    drop(tree.frontdoor / "a.jpg", image("A parcel on the step."))
    daemon.wait_event("captioning_paused")

    got = scrape(base)
    assert value(got, "camwatch_captioning_paused") == 1
    assert value(got, "camwatch_caption_gate", state="paused") == 1
    assert value(got, "camwatch_caption_requests_total", result="failed") >= 1  # type: ignore[operator]
    assert value(got, "camwatch_queue_depth") == 1  # the image waits, it is not failed
    health = _get(base + "/healthz")
    assert health.status_code == 503
    assert health.json()["status"] == "degraded"
    assert [p for p in health.json()["problems"] if p.startswith("captioning paused: HTTP 401")]

    shutil.rmtree(tree.driveway)  # a camera's folder goes away
    daemon.wait_event("camera_unavailable", camera="driveway")
    got = scrape(base)
    assert value(got, "camwatch_camera_up", camera="driveway") == 0
    assert value(got, "camwatch_camera_up", camera="frontdoor") == 1
    assert value(got, "camwatch_watch_mode", camera="driveway", mode="inotify") == 0
    problems = _get(base + "/healthz").json()["problems"]
    assert len(problems) == 2
    assert problems[1].startswith("camera driveway unavailable: ")

    # Both fixed: the probe captions the image, the folder is watched again.
    api.set_outage(None)
    tree.driveway.mkdir()
    daemon.wait_event("image_captioned")
    daemon.wait_event("camera_watched", camera="driveway", count=2)

    def healthy() -> bool:
        return _get(base + "/healthz").status_code == 200

    wait_until(healthy, message="healthz ok again")
    got = scrape(base)
    assert value(got, "camwatch_captioning_paused") == 0
    assert value(got, "camwatch_camera_up", camera="driveway") == 1
    assert value(got, "camwatch_images_total", camera="frontdoor", outcome="captioned") == 1


def test_the_token_is_asked_on_every_path(
    config: ConfigWriter, start_daemon: Callable[..., Daemon]
) -> None:
    data = config.data()
    data["log"]["level"] = "debug"  # the access log too: it must never show the token
    daemon, base = _start(config, start_daemon, data)
    for path in PATHS:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-0000000000"},
            {"Authorization": "Basic " + base64.b64encode(b"me:wrong-token-00000").decode()},
            {"Authorization": f"Token {TOKEN}"},
            {"Authorization": "Basic !!not-base64!!"},
        ):
            answer = requests.get(base + path, headers=headers, timeout=10)
            assert answer.status_code == 401, (path, headers)
            assert answer.headers["WWW-Authenticate"].startswith('Basic realm="camwatch"')
        assert requests.post(base + path, timeout=10).status_code == 401

    assert _get(base + "/metrics").status_code == 200
    assert _get(base + "/healthz").json()["status"] == "ok"
    assert requests.get(base + "/metrics", auth=("anyone", TOKEN), timeout=10).status_code == 200
    assert requests.get(base + "/healthz", auth=("", TOKEN), timeout=10).status_code == 200
    assert _get(base + "/nonexistent").status_code == 404
    page = _get(base + "/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "script-src" not in page.headers["Content-Security-Policy"]  # none may run
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert _get(base + "/thumb/1").status_code == 404  # no such image
    head = requests.head(base + "/metrics", auth=("", TOKEN), timeout=10)
    assert head.status_code == 200 and not head.content
    post = requests.post(base + "/metrics", auth=("", TOKEN), timeout=10)
    assert post.status_code == 405 and post.headers["Allow"] == "GET, HEAD"

    # A request head larger than the listener takes is refused, not read on.
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 431")

    logged = daemon.named("http_request")
    assert {e["status"] for e in logged} >= {200, 401, 404, 405}
    assert TOKEN not in daemon.stderr_text


def test_a_listener_off_loopback_needs_a_token(config: ConfigWriter) -> None:
    data = config.data()
    data["http"] = {"listen": "0.0.0.0:9108"}
    path = config.write(data)
    for command in ("check-config", "run"):
        result = run_cli(command, "-c", str(path))
        assert result.returncode == 78, result.stderr
        assert "http.token: required when listen (0.0.0.0:9108) is not a loopback" in (
            result.stderr
        )


def test_sighup_rebinds_with_the_new_token(
    config: ConfigWriter, start_daemon: Callable[..., Daemon]
) -> None:
    daemon, base = _start(config, start_daemon)
    session = requests.Session()  # a kept-alive connection must not outlive the old token
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert session.get(base + "/healthz", headers=auth, timeout=5).ok

    # A reload that leaves `http` as it was keeps the listener and its connections.
    daemon.hup()
    daemon.wait_event("reloaded")
    assert session.get(base + "/healthz", headers=auth, timeout=5).ok
    assert len(daemon.named("http_listening")) == 1

    data = config.data()
    new_token = "e2e-http-new-token-77aa31"
    data["http"] = {"listen": "127.0.0.1:0", "token": new_token}
    config.write(data)
    daemon.hup()
    port = daemon.wait_event("http_listening", count=2)["port"]
    daemon.wait_event("reloaded", count=2)
    new_base = f"http://127.0.0.1:{port}"
    assert _get(new_base + "/healthz", token=TOKEN).status_code == 401
    assert _get(new_base + "/healthz", token=new_token).status_code == 200
    with pytest.raises(requests.ConnectionError):
        session.get(base + "/healthz", headers=auth, timeout=5)
    session.close()

    # Without `http`, no listener.
    config.write(config.data())
    daemon.hup()
    daemon.wait_event("reloaded", count=3)
    with pytest.raises(requests.ConnectionError):
        _get(new_base + "/healthz", token=new_token, timeout=5)


def test_an_address_in_use_leaves_the_daemon_running(
    tree: Tree, config: ConfigWriter, start_daemon: Callable[..., Daemon]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data = config.data()
        data["http"] = {"listen": f"127.0.0.1:{port}"}
        daemon = start_daemon(config.write(data))
        failed = daemon.wait_event("http_listen_failed")
        assert failed["listen"] == f"127.0.0.1:{port}" and failed["error"]
        # Alerts matter more than the listener: the daemon goes on without it.
        drop(tree.frontdoor / "a.jpg", image("A parcel on the step."))
        daemon.wait_event("image_captioned")
    # Once the address is free, a reload binds it.
    daemon.hup()
    assert daemon.wait_event("http_listening")["port"] == port
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
