"""End to end: silent cameras. With `expect_every`, a camera that sends nothing for that long
gives one `camwatch.camera_silent` webhook, and one `camwatch.camera_back` when an image comes;
the state is in the database, so a restart neither repeats nor forgets them."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from camwatch.testing import WebhookReceiver

from .support import (
    HOOK_SECRET,
    ConfigWriter,
    Daemon,
    Tree,
    drop,
    image,
    wait_until,
)

StartDaemon = Callable[..., Daemon]

SILENT = "camwatch.camera_silent"
BACK = "camwatch.camera_back"
QUIET = "An empty porch, nothing to report."  # matches no rule: only silence alerts are sent


def _config(config: ConfigWriter, expect_every: float) -> dict[str, Any]:
    data = config.data(debounce="200ms")
    data["cameras"][0]["expect_every"] = f"{expect_every:g}s"  # frontdoor only
    return data


def _of(hooks: WebhookReceiver, event: str) -> list[Any]:
    """The delivered webhooks of one kind, in order."""
    return [r for r in hooks.delivered if isinstance(r.json, dict) and r.json.get("event") == event]


def _iso(text: str) -> float:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text[:-1] + "+00:00").timestamp()


def _check(received: Any, event: str, expect_every: float) -> dict[str, Any]:
    """Check one silence webhook's body and headers; return the body."""
    body = received.json
    assert set(body) == {"id", "event", "camera", "last_image_at", "expect_every", "detected_at"}
    assert body["event"] == event
    assert body["camera"] == "frontdoor"
    assert body["expect_every"] == expect_every
    assert isinstance(body["expect_every"], int | float)
    assert received.headers.get("X-Camwatch-Event-Id") == body["id"]
    assert WebhookReceiver.verify_signature(
        received.body, received.headers.get("X-Camwatch-Signature"), HOOK_SECRET
    ), f"bad signature on {body['id']}"
    assert received.headers.get("Content-Type", "").startswith("application/json")
    _iso(body["detected_at"])
    return body


def _wait_for(hooks: WebhookReceiver, event: str, count: int, timeout: float, why: str) -> Any:
    wait_until(lambda: len(_of(hooks, event)) >= count, timeout, f"{count} x {event}: {why}")
    return _of(hooks, event)[count - 1]


def _stays(predicate: Callable[[], bool], seconds: float) -> None:
    """Check `predicate` holds all along for `seconds` (bounded)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        assert predicate()
        time.sleep(0.05)


def test_silent_then_back_then_silent_again(
    tree: Tree,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    every = 2.0
    started = time.time()
    daemon = start_daemon(config.write(_config(config, every)))

    first = _wait_for(hooks, SILENT, 1, 15, "no image since the start")
    body = _check(first, SILENT, every)
    assert body["last_image_at"] is None
    waited = _iso(body["detected_at"]) - started
    assert every - 0.1 <= waited < every + 5, f"silent after {waited:.1f}s, expect_every 2s"
    daemon.wait_event("camera_silent", camera="frontdoor")

    shot = drop(tree.frontdoor / "hello.jpg", image(QUIET))
    dropped_at = time.time()
    daemon.wait_event("image_captioned", path=str(shot))
    back = _check(_wait_for(hooks, BACK, 1, 15, "an image arrived"), BACK, every)
    assert back["last_image_at"] is not None
    assert dropped_at - 1 <= _iso(back["last_image_at"]) <= time.time()
    assert back["id"] != body["id"]
    assert len(_of(hooks, SILENT)) == 1

    # Silent again: a new silence, counted from that image.
    again = _check(_wait_for(hooks, SILENT, 2, 15, "silent again after the image"), SILENT, every)
    assert again["last_image_at"] == back["last_image_at"]
    assert _iso(again["detected_at"]) - _iso(again["last_image_at"]) >= every - 0.1
    assert again["id"] not in {body["id"], back["id"]}
    assert len(_of(hooks, BACK)) == 1
    # Only the camera with expect_every is watched for silence.
    assert {r.json["camera"] for r in hooks.delivered} == {"frontdoor"}
    assert daemon.terminate()[0] == 0


def test_a_restart_neither_repeats_nor_forgets_a_silence(
    tree: Tree,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    every = 2.0
    path = config.write(_config(config, every))
    first = start_daemon(path)
    silent = _check(_wait_for(hooks, SILENT, 1, 15, "no image since the start"), SILENT, every)
    first.wait_event("alert_delivered")
    assert first.terminate()[0] == 0

    second = start_daemon(path)
    # Three periods of the same silence: no second camera_silent.
    _stays(lambda: len(_of(hooks, SILENT)) == 1, 3 * every)
    assert not second.named("camera_silent")

    shot = drop(tree.frontdoor / "back.jpg", image(QUIET))
    second.wait_event("image_captioned", path=str(shot))
    back = _check(_wait_for(hooks, BACK, 1, 15, "the image after the restart"), BACK, every)
    assert back["last_image_at"] is not None
    # The next silence is a new one; by then camera_back was not sent twice.
    again = _wait_for(hooks, SILENT, 2, 15, "silent again after the image")
    assert again.json["id"] != silent["id"]
    assert len(_of(hooks, BACK)) == 1
    assert len({r.json["id"] for r in hooks.delivered}) == len(hooks.delivered)
    assert second.terminate()[0] == 0


def test_silence_counts_from_the_last_image_across_a_restart(
    tree: Tree,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    every = 4.0
    path = config.write(_config(config, every))
    first = start_daemon(path)
    shot = drop(tree.frontdoor / "last.jpg", image(QUIET))
    dropped_at = time.time()
    first.wait_event("image_captioned", path=str(shot))
    assert first.terminate()[0] == 0
    stopped_at = time.time()
    assert stopped_at - dropped_at < every - 1, "too slow: the first run itself went silent"
    assert not _of(hooks, SILENT)

    # Stopped past expect_every since that image.
    wait_until(lambda: time.time() > dropped_at + every + 0.5, every + 5, "expect_every to pass")
    second = start_daemon(path)
    ready_at = time.time()
    received = _wait_for(hooks, SILENT, 1, 15, "silent since the image before the restart")
    body = _check(received, SILENT, every)
    assert body["last_image_at"] is not None
    assert dropped_at - 1 <= _iso(body["last_image_at"]) <= stopped_at
    # Counted from that image, not from this start.
    assert received.wall_time - ready_at < every - 1, (
        f"camera_silent {received.wall_time - ready_at:.1f}s after ready\n{second.tail()}"
    )
    assert not _of(hooks, BACK)
    assert second.terminate()[0] == 0
