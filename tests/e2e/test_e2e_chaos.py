"""End to end under chaos: the real daemon captions a burst while a seeded fault-injecting proxy
(`camwatch.testing.chaos.ChaosProxy`) sits in front of the stand-in caption API and another in
front of the webhook receiver, resetting, stalling, cutting, garbling and failing about 30% of
the exchanges. Nothing may be lost: every image ends captioned, or failed with its reason; every
alert of every captioned image reaches the receiver at least once (its event id); no traceback.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from camwatch.testing import StandinCaptionAPI, WebhookReceiver
from camwatch.testing.chaos import FAULTS, ChaosProxy, Faults

from .support import HOOK_SECRET, ConfigWriter, Daemon, Tree, drop, image, sha256

StartDaemon = Callable[..., Daemon]

SEED = 11
IMAGES = 60
FAULT_RATE = 0.3
CAPTION_TIMEOUT = 1.0  # seconds; a stall holds a connection 3x this at most
HOOK_TIMEOUT = 1.0
CHAOS_DEADLINE = 75.0  # every image settled, faults on
DRAIN_DEADLINE = 30.0  # every alert delivered, faults off
POLL_S = 0.1
UNDELIVERED = "SELECT event_id, state FROM alerts WHERE state != 'delivered'"


def _chaos_config(config: ConfigWriter, api_url: str, hook_url: str) -> Path:
    data = config.data()
    data["caption"].update(
        {
            "base_url": api_url,
            "timeout": f"{CAPTION_TIMEOUT:g}s",
            "concurrency": 4,
            "retry": {
                "attempts": 4,
                "backoff_initial": "50ms",
                "backoff_max": "300ms",
                "retry_after_max": "1s",
            },
            "pause_probe": "1s",
        }
    )
    data["rules"] = [{"name": "burst", "any": ["parcel"], "severity": "info"}]
    data["webhooks"][0].update({"url": hook_url + "/hook", "timeout": f"{HOOK_TIMEOUT:g}s"})
    data["delivery"] = {"backoff_initial": "50ms", "backoff_max": "500ms"}
    return config.write(data)


def _rows(state: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{state / 'camwatch.db'}?mode=ro", uri=True, timeout=5.0)
    try:
        return list(db.execute(sql))
    finally:
        db.close()


def _within(predicate: Callable[[], bool], deadline: float) -> bool:
    """Poll `predicate` every POLL_S until true or until the monotonic `deadline`; return it."""
    for _ in range(int(max(deadline - time.monotonic(), 0.0) / POLL_S) + 2):
        if predicate():
            return True
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    return bool(predicate())


def _poll(predicate: Callable[[], bool], timeout: float, message: Callable[[], str]) -> None:
    """Poll `predicate` until true; fail the test with `message()` after `timeout` seconds."""
    if not _within(predicate, time.monotonic() + timeout):
        pytest.fail(f"timed out after {timeout:g}s waiting for {message()}")


def test_burst_through_chaos_loses_nothing(
    no_thread_leaks: None,
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    started = time.monotonic()
    faults = Faults.spread(FAULT_RATE, stall_s=3 * CAPTION_TIMEOUT)
    with (
        ChaosProxy("127.0.0.1", api.port, SEED, faults) as api_chaos,
        ChaosProxy("127.0.0.1", hooks.port, SEED + 1, faults) as hook_chaos,
    ):
        api_chaos.name, hook_chaos.name = "api-chaos", "hook-chaos"

        def counts() -> str:
            return f"fault counts: {api_chaos.summary()}; {hook_chaos.summary()}"

        daemon = start_daemon(_chaos_config(config, api_chaos.url, hook_chaos.url))
        dropped: dict[str, bytes] = {}
        for i in range(IMAGES):
            folder = tree.frontdoor if i % 2 == 0 else tree.driveway
            data = image(f"Chaos frame {i}: a parcel on the step.")
            dropped[str(drop(folder / f"chaos-{i:02d}.jpg", data))] = data
        assert len({sha256(b) for b in dropped.values()}) == IMAGES

        def settled() -> set[str]:
            return {
                e["path"]
                for e in daemon.events
                if e.get("event") in ("image_captioned", "image_failed")
            }

        # Under chaos: every image captioned or given up on.
        _poll(
            lambda: settled() >= set(dropped),
            CHAOS_DEADLINE,
            lambda: (
                f"{IMAGES - len(settled() & set(dropped))} images to settle; {counts()}"
                f"\n{daemon.tail()}"
            ),
        )

        def undelivered() -> list[tuple[Any, ...]]:
            return _rows(tree.state, UNDELIVERED)

        # Still under chaos, give the alerts the rest of the deadline; whatever is left then is
        # the tail, which drains with the faults off.
        all_under_chaos = _within(lambda: not undelivered(), started + CHAOS_DEADLINE)
        under_chaos = counts()
        print(
            f"\nunder chaos ({time.monotonic() - started:.1f}s, every alert delivered:"
            f" {all_under_chaos}): {under_chaos}"
        )
        api_chaos.set_faults(Faults())
        hook_chaos.set_faults(Faults())

        _poll(
            lambda: not undelivered(),
            DRAIN_DEADLINE,
            lambda: f"alerts to deliver {undelivered()}; {counts()}\n{daemon.tail()}",
        )
        code, _ = daemon.terminate()
        assert code == 0, daemon.tail()
        final = counts()
        print(f"drained ({time.monotonic() - started:.1f}s): {final}")

    # Every image is accounted for in the database, and nothing is left in flight.
    images = _rows(tree.state, "SELECT id, path, state, last_error FROM images")
    states: dict[str, set[str]] = {}
    for _id, path, state, _error in images:
        states.setdefault(path, set()).add(state)
    stuck = [row for row in images if row[2] in ("pending", "captioning")]
    assert not stuck, f"left in the queue: {stuck}; {final}"
    assert set(states) == set(dropped), f"unknown or missing paths; {final}"
    unsettled = {p: s for p, s in states.items() if not s & {"done", "failed"}}
    assert not unsettled, f"neither captioned nor failed: {unsettled}; {final}"
    failed = [row for row in images if row[2] == "failed"]
    assert all(row[3] for row in failed), f"failed without a reason: {failed}; {final}"
    done = {row[0]: row[1] for row in images if row[2] == "done"}
    assert len(done) >= IMAGES // 2, f"only {len(done)} of {IMAGES} captioned: {failed}; {final}"

    # Every alert of every captioned image, delivered at least once (deduplicated by event id).
    alerts = _rows(tree.state, "SELECT event_id, image_id, rule, state FROM alerts")
    per_image: dict[int, list[str]] = {}
    for event_id, image_id, rule, state in alerts:
        assert rule == "burst" and state == "delivered", (event_id, rule, state, final)
        per_image.setdefault(image_id, []).append(event_id)
    assert set(per_image) == set(done), f"images without their one alert; {final}"
    assert all(len(ids) == 1 for ids in per_image.values()), f"{per_image}; {final}"
    expected = {ids[0] for ids in per_image.values()}
    # A request reset inside its header block reaches the stand-in as a complete POST with
    # the headers it got (http.server stops reading headers at EOF): a record with no body, or
    # a cut event id. No alert was delivered by it, and its event id is not the alert's.
    received: dict[str, Any] = {}
    torn = []
    duplicates = 0
    for record in hooks.delivered:
        if isinstance(record.json, dict) and record.json.get("id") == record.event_id:
            duplicates += record.event_id in received
            received.setdefault(record.event_id, record)
        else:
            torn.append((record.event_id, record.body))
    # Content-Length is the last header requests sends: a torn header block has no body.
    assert all(body == b"" for _, body in torn), f"{torn}; {final}"
    missing = expected - set(received)
    assert not missing, f"{len(missing)} alerts never reached the receiver: {missing}; {final}"
    assert set(received) <= expected, f"alerts the database does not know; {final}"
    print(
        f"{duplicates} alerts received again (same event id);"
        f" requests torn inside their headers, recorded by the receiver anyway: {torn}"
    )
    for event_id, record in received.items():
        assert record.json["id"] == event_id, final
        assert record.json["image"] in {done[i] for i in per_image}, final
        assert record.json["sha256"] == sha256(dropped[record.json["image"]]), final
        assert WebhookReceiver.verify_signature(record.body, record.signature, HOOK_SECRET), (
            f"bad signature on {event_id}; {final}"
        )

    # The chaos was real: each kind of fault was injected, on both connections together.
    for fault in FAULTS:
        total = api_chaos.counts[fault] + hook_chaos.counts[fault]
        assert total > 0, f"no {fault} was injected; {under_chaos}"
    took = time.monotonic() - started
    print(f"took {took:.1f}s; {len(done)} captioned, {len(failed)} failed; {final}")
