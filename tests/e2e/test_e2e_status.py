"""`camwatch status` on the database a real run left, and the read-only commands that never
create a state_dir or a database."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from camwatch.testing import StandinCaptionAPI, WebhookReceiver

from .support import ConfigWriter, Daemon, Tree, drop, image, run_cli

MAX_BYTES = 20_000


def _tokens(api: StandinCaptionAPI) -> int:
    """Return the tokens the stand-in answered for its successful requests: its answer is
    `input` 258 + a quarter of the prompts' length, `output` 1 + a quarter of the caption's."""
    total = 0
    for request in api.requests:
        if request.status == 200:
            assert request.json is not None and request.caption is not None
            prompt = f"{request.json['user_prompt']} {request.json['system_prompt']}"
            total += 258 + len(prompt) // 4 + 1 + len(request.caption) // 4
    return total


def _iso_ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_status_after_a_real_run_with_the_daemon_stopped(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    hooks2: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: Callable[..., Daemon],
) -> None:
    hooks.set_outage(500)  # "main" is down: its alerts stay in the outbox
    hooks2.set_outage(410)  # "gone" refuses for good: dead letters
    data = config.data()
    data["caption"]["max_image_bytes"] = MAX_BYTES
    data["webhooks"].append({"name": "gone", "url": hooks2.url})
    path = config.write(data)
    started = time.time()
    daemon = start_daemon(path)

    # One failure first, alone, so that the scripted 400 meets this image and no other.
    api.fail_next(1, 400)
    drop(tree.frontdoor / "bad.jpg", image("A blurry frame."))
    failed = daemon.wait_event("image_failed")
    person = image("A man is lying on the ground by the door.")
    drop(tree.frontdoor / "down.jpg", person)
    drop(tree.driveway / "car.jpg", image("A red car is parked on the driveway."))
    drop(tree.frontdoor / "big.jpg", image("Too big to send.") + b"\0" * MAX_BYTES)
    daemon.wait_event("image_captioned", count=2)
    daemon.wait_event("image_skipped", predicate=lambda e: "max_image_bytes" in str(e))
    # The same bytes written again at the same path: read, recognised, not sent again.
    drop(tree.frontdoor / "down.jpg", person)
    daemon.wait_event("image_skipped", predicate=lambda e: e.get("outcome") == "duplicate")
    daemon.wait_event("alert_decided", count=2)
    daemon.wait_event("alert_dead_lettered", count=2)

    # While the daemon runs, status reads the same database alongside it.
    running = run_cli("status", "-c", str(path), "--json")
    assert running.returncode == 0, running.stderr
    assert json.loads(running.stdout)["outbox"]["main"]["pending"] == 2

    assert daemon.terminate()[0] == 0
    files = sorted(os.listdir(tree.state))

    result = run_cli("status", "-c", str(path), "--json")
    asked = time.time()
    assert result.returncode == 0, result.stderr
    got: dict[str, Any] = json.loads(result.stdout)
    front, drive = got["cameras"]["frontdoor"], got["cameras"]["driveway"]
    assert front["today"] == {"captioned": 1, "skipped": 1, "failed": 1, "deduped": 1}
    assert drive["today"] == {"captioned": 1, "skipped": 0, "failed": 0, "deduped": 0}
    for camera in (front, drive):
        assert started - 1 <= _iso_ts(camera["last_image_at"]) <= asked
    assert got["queue"] == 0
    assert [(f["camera"], f["path"]) for f in got["failures"]] == [
        ("frontdoor", str(tree.cam("frontdoor") / "bad.jpg"))
    ]
    assert "400" in got["failures"][0]["reason"]
    assert got["failures"][0]["reason"] == failed["reason"]
    assert started - 1 <= _iso_ts(got["failures"][0]["at"]) <= asked
    # Two alerts (person-down on frontdoor, vehicle on driveway) wait for "main".
    main = got["outbox"]["main"]
    assert main["pending"] == 2 and main["kind"] == "webhook"
    first_alert = _iso_ts(daemon.named("alert_decided")[0]["timestamp"])
    assert asked - first_alert - 1 <= main["oldest_seconds"] <= asked - started + 1
    assert got["outbox"]["gone"]["pending"] == 0
    assert got["dead_letters"]["gone"]["count"] == 2
    assert "410" in got["dead_letters"]["gone"]["reason"]
    tokens = _tokens(api)
    assert tokens > 0
    assert front["tokens_today"] + drive["tokens_today"] == tokens
    assert got["tokens"] == {"today": tokens, "month": tokens}

    text = run_cli("status", "-c", str(path))
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert re.search(r"^frontdoor +\d\d:\d\d:\d\d \(\d+ s ago\) +1 +1 +1 +1 +[\d,]+$", out, re.M)
    assert re.search(r"^driveway +\d\d:\d\d:\d\d \(\d+ s ago\) +1 +0 +0 +0 +[\d,]+$", out, re.M)
    assert re.search(r"^  main +webhook +2 +\d\d:\d\d:\d\d \(\d+ s ago\)$", out, re.M)
    assert re.search(r"^  gone +webhook +2 +.*410", out, re.M)
    assert f"tokens: {tokens:,} today, {tokens:,} this month" in out
    assert "queue: 0 image(s)" in out
    assert re.search(rf"frontdoor +{re.escape(str(tree.cam('frontdoor') / 'bad.jpg'))} +.*400", out)

    # Looking changed nothing in the state_dir (no -wal or -shm left by a read-only reader).
    assert sorted(os.listdir(tree.state)) == files


def test_read_only_commands_never_create_a_state_dir(
    tree: Tree, config: ConfigWriter, tmp_path: Path
) -> None:
    state = tmp_path / "not-yet" / "state"
    path = config.write(state_dir=str(state))
    message = f"no state database yet at {str(state / 'camwatch.db')!r}"

    text = run_cli("status", "-c", str(path))
    assert text.returncode == 0, text.stderr
    assert message in text.stderr and "the daemon creates it when it first runs" in text.stderr
    assert text.stdout == ""

    as_json = run_cli("status", "-c", str(path), "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert message in as_json.stderr
    got = json.loads(as_json.stdout)
    assert got["database"] is None
    assert got["cameras"]["frontdoor"]["last_image_at"] is None
    assert got["outbox"]["main"] == {
        "kind": "webhook",
        "pending": 0,
        "oldest_seconds": None,
        "configured": True,
    }

    replay = run_cli("replay", "-c", str(path), "--since", "1h")
    assert replay.returncode == 0, replay.stderr
    assert message in replay.stderr
    assert "0 caption(s) replayed" in replay.stderr

    rules = run_cli("test-rules", "-c", str(path), "A man is lying on the ground.")
    assert rules.returncode == 0, rules.stderr
    assert "person-down" in rules.stdout

    assert not (tmp_path / "not-yet").exists()
