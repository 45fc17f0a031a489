"""End to end: nothing is lost. The real daemon against kill -9, restarts, API and webhook
outages, a bad key, reloads and SIGTERM; counts of uploads and alerts are checked against what
was dropped."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from camwatch.testing import StandinCaptionAPI, WebhookReceiver

from .support import (
    API_KEY,
    ConfigWriter,
    Daemon,
    Tree,
    alert_keys,
    assert_alert,
    drop,
    image,
    run_cli,
    sha256,
    uploads_of,
    wait_until,
)

StartDaemon = Callable[..., Daemon]


def _captioned_paths(*daemons: Daemon) -> set[str]:
    return {e["path"] for d in daemons for e in d.named("image_captioned")}


def _done_paths(state: Path) -> set[str]:
    """Return the paths the state database records as captioned. After a kill -9 this, not the
    log, is the truth: the daemon may die between committing a caption and logging it."""
    db = sqlite3.connect(f"file:{state / 'camwatch.db'}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT path FROM images WHERE state = 'done'")}
    finally:
        db.close()


def test_kill9_in_the_middle_of_a_burst_then_restart_loses_nothing(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    concurrency = 4
    api.latency = 0.3
    data = config.data()
    data["caption"]["concurrency"] = concurrency
    path = config.write(data)
    first = start_daemon(path)

    dropped: dict[str, bytes] = {}
    alerting: set[str] = set()
    for i in range(40):
        folder = tree.frontdoor if i % 2 == 0 else tree.driveway
        if i % 3 == 0:
            caption = f"Frame {i}: a parcel on the step."
        else:
            caption = f"Frame {i}: an empty step."
        target = drop(folder / f"burst-{i:02d}.jpg", image(caption))
        dropped[str(target)] = target.read_bytes()
        if i % 3 == 0:
            alerting.add(str(target))
    assert len({sha256(b) for b in dropped.values()}) == 40

    # Some images done, more in flight: kill -9 now.
    assert api.wait_for(10, 60), first.tail()
    assert api.wait_in_flight(1, 30), first.tail()
    first.kill9()
    assert len(_captioned_paths(first)) < 40, "the burst was over before the kill"

    second = start_daemon(path)

    def all_captioned() -> bool:
        return set(dropped) <= _done_paths(tree.state)

    wait_until(all_captioned, 90, "every image captioned")
    wait_until(
        lambda: {r.json["image"] for r in hooks.delivered} >= alerting,
        60,
        "every alert delivered",
    )

    uploads = uploads_of(api, None)
    assert {r.sha256 for r in uploads if r.status == 200} >= {sha256(b) for b in dropped.values()}
    duplicates = len(uploads) - 40
    assert 0 <= duplicates <= concurrency + 2, f"{duplicates} duplicate uploads"

    # At least once per alert, and a re-sent alert keeps its event id.
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    for received in hooks.delivered:
        ids[(received.json["image"], received.json["rule"])].add(received.json["id"])
    assert set(ids) == {(p, "package") for p in alerting}
    assert all(len(v) == 1 for v in ids.values()), ids
    for received in hooks.delivered:
        image_path = Path(received.json["image"])
        assert_alert(
            received,
            rule="package",
            camera=image_path.parent.name,
            image=image_path,
            matched=["parcel"],
            data=dropped[str(image_path)],
        )
    assert second.terminate()[0] == 0


def test_webhook_receiver_down_then_up_gets_every_alert_with_its_event_id(
    tree: Tree,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    hooks.go_down()
    daemon = start_daemon(config.write())
    down_data = image("A man collapsed on the path.")
    down = drop(tree.frontdoor / "down.jpg", down_data)
    car_data = image("A parcel next to a car.")
    car = drop(tree.driveway / "car.jpg", car_data)
    daemon.wait_event("alert_decided", count=3)
    decided = {e["event_id"] for e in daemon.named("alert_decided")}
    # Every try fails while it is down; the dispatcher keeps trying.
    failed = daemon.wait_event("alert_delivery_failed", count=2)
    assert failed["event_id"] in decided

    hooks.fail_next(1, 503)  # the first POST after it comes back fails too
    hooks.come_up()
    assert hooks.wait_for_delivered(3, 30), daemon.tail()
    daemon.wait_event("alert_delivered", count=3)

    by_id: dict[str, list] = defaultdict(list)
    for received in hooks.received:
        by_id[received.event_id].append(received)
    assert set(by_id) == decided
    for tries in by_id.values():
        assert [t.status for t in tries].count(200) == 1
        # Every try of one alert: byte-identical body and the same signed headers.
        assert len({t.body for t in tries}) == 1
        # (but the Standard Webhooks timestamp and signature, made anew for each attempt).
        fresh = {"webhook-timestamp", "webhook-signature"}
        same = [{k: v for k, v in t.headers.items() if k.lower() not in fresh} for t in tries]
        assert all(headers == same[0] for headers in same)
        assert tries[0].signature is not None
        assert tries[0].json["id"] == tries[0].event_id
    assert max(len(t) for t in by_id.values()) == 2  # the 503, then the delivery
    assert alert_keys(hooks.delivered) == sorted(
        [
            ("person-down", "frontdoor", str(down)),
            ("package", "driveway", str(car)),
            ("vehicle", "driveway", str(car)),
        ]
    )
    for received in hooks.delivered:
        data = down_data if received.json["image"] == str(down) else car_data
        assert_alert(
            received,
            rule=received.json["rule"],
            camera=received.json["camera"],
            image=Path(received.json["image"]),
            matched=received.json["matched"],
            data=data,
        )
    assert daemon.terminate()[0] == 0


def test_undelivered_alert_survives_a_restart_with_its_event_id(
    tree: Tree,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    hooks.go_down()
    path = config.write()
    first = start_daemon(path)
    data = image("A parcel on the step.")
    parcel = drop(tree.frontdoor / "parcel.jpg", data)
    decided = first.wait_event("alert_decided", path=str(parcel))
    first.wait_event("alert_delivery_failed", event_id=decided["event_id"])
    assert first.terminate()[0] == 0

    second = start_daemon(path)
    assert second.wait_event("ready")["alerts_pending"] == 1
    hooks.come_up()
    assert hooks.wait_for_delivered(1, 30), second.tail()
    second.wait_event("alert_delivered", event_id=decided["event_id"])
    body = assert_alert(
        hooks.delivered[0],
        rule="package",
        camera="frontdoor",
        image=parcel,
        matched=["parcel"],
        data=data,
    )
    assert body["id"] == decided["event_id"]
    assert captioned_count(second) == 0  # not captioned again
    assert second.terminate()[0] == 0


def captioned_count(daemon: Daemon) -> int:
    """Return how many images this daemon captioned."""
    return len(daemon.named("image_captioned"))


def test_api_outage_then_healthy_marks_nothing_failed(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    api.set_outage(503)
    daemon = start_daemon(config.write())
    dropped = {}
    for i, caption in enumerate(
        ["A parcel at the door.", "An empty porch.", "A man collapsed.", "Rain on the steps."]
    ):
        target = drop(tree.frontdoor / f"out-{i}.jpg", image(caption))
        dropped[str(target)] = target.read_bytes()
    daemon.wait_event("caption_api_unavailable")
    # Several rounds of retries and probes through the outage.
    assert api.wait_for(15, 60), daemon.tail()
    assert not daemon.named("image_failed")

    api.set_outage(None)
    wait_until(lambda: set(dropped) <= _captioned_paths(daemon), 60, "every image captioned")
    assert hooks.wait_for_delivered(2, 30), daemon.tail()
    daemon.wait_event("captioning_resumed")
    assert not daemon.named("image_failed")
    good = {r.sha256 for r in api.requests if r.status == 200}
    assert good == {sha256(b) for b in dropped.values()}
    assert alert_keys(hooks.delivered) == sorted(
        [
            ("package", "frontdoor", str(tree.frontdoor / "out-0.jpg")),
            ("person-down", "frontdoor", str(tree.frontdoor / "out-2.jpg")),
        ]
    )
    assert daemon.terminate()[0] == 0


def test_bad_key_pauses_captioning_once_without_a_storm_and_sighup_resumes(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    wrong = "e2e-wrong-key-31f0aa"
    data = config.data()
    data["caption"]["api_key"] = wrong
    concurrency = data["caption"]["concurrency"]
    probe_every = 1.0  # pause_probe in the tests' config
    daemon = start_daemon(config.write(data))
    dropped = [
        drop(tree.frontdoor / f"key-{i}.jpg", image(f"Picture {i}: a parcel on the mat."))
        for i in range(3)
    ]
    daemon.wait_event("captioning_paused")
    # Wait out two probe periods, then count: the first wave (the workers already past the gate
    # when the first 401 came: at most two per request slot), then one probe per pause_probe.
    wait_until(
        lambda: api.requests[-1].time - api.requests[0].time >= 1.5 * probe_every,
        30,
        "two probes",
    )
    requests = api.requests
    elapsed = requests[-1].time - requests[0].time
    assert all(r.status == 401 for r in requests)
    assert len(requests) <= 2 * concurrency + elapsed / probe_every + 1, (
        f"{len(requests)} requests in {elapsed:.1f}s"
    )
    assert len(daemon.named("captioning_paused")) == 1
    assert not daemon.named("image_failed")
    assert not daemon.named("image_captioned")

    config.write()  # the right key (${CAMWATCH_API_KEY}) ...
    daemon.hup()  # ... and a reload resumes at once
    daemon.wait_event("reloaded")
    for target in dropped:
        daemon.wait_event("image_captioned", path=str(target))
    assert hooks.wait_for_delivered(3, 30), daemon.tail()
    assert alert_keys(hooks.delivered) == sorted(("package", "frontdoor", str(p)) for p in dropped)
    assert len(daemon.named("captioning_paused")) == 1
    assert not daemon.named("image_failed")
    assert daemon.terminate()[0] == 0
    assert wrong not in daemon.stderr_text
    assert API_KEY not in daemon.stderr_text


def test_credits_exhausted_pauses_and_a_probe_resumes_once_they_are_back(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    # The provider's other spelling: HTTP 200 with code "0402".
    api.set_outage(200, body={"code": "0402", "msg": "insufficient credits", "data": None})
    daemon = start_daemon(config.write())
    dropped = [
        drop(tree.frontdoor / f"credit-{i}.jpg", image(f"Credit {i}: a parcel on the mat."))
        for i in range(3)
    ]
    paused = daemon.wait_event("captioning_paused")
    assert "0402" in paused["reason"]
    before = api.count
    assert api.wait_for(before + 1, 30), daemon.tail()  # a probe came; the queue was kept
    assert not daemon.named("image_failed")

    api.set_outage(None)  # credits bought: the next probe succeeds, no reload needed
    daemon.wait_event("captioning_resumed")
    for target in dropped:
        daemon.wait_event("image_captioned", path=str(target))
    assert hooks.wait_for_delivered(3, 30), daemon.tail()
    assert len(daemon.named("captioning_paused")) == 1
    assert not daemon.named("reloaded")
    assert not daemon.named("image_failed")
    assert daemon.terminate()[0] == 0


def test_restart_after_everything_is_done_sends_nothing(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    path = config.write()
    first = start_daemon(path)
    paths = [
        drop(tree.frontdoor / "a.jpg", image("A parcel at the door.")),
        drop(tree.driveway / "sub" / "b.jpg", image("A car on the driveway.")),
        drop(tree.driveway / "c.jpg", image("Nothing at all.")),
    ]
    for target in paths:
        first.wait_event("image_captioned", path=str(target))
    assert hooks.wait_for_delivered(2, 30)
    first.wait_event("alert_delivered", count=2)
    assert first.terminate()[0] == 0
    uploads, posts = api.count, hooks.count

    second = start_daemon(path)
    front = second.wait_event("scan_finished", camera="frontdoor")
    drive = second.wait_event("scan_finished", camera="driveway")
    assert (front["already_done"], front["queued"], front["settling"]) == (1, 0, 0)
    assert (drive["already_done"], drive["queued"], drive["settling"]) == (2, 0, 0)
    assert second.wait_event("ready")["alerts_pending"] == 0
    # A new image after the scan: once it is through, nothing else was sent.
    sentinel = drop(tree.frontdoor / "sentinel.jpg", image("A parcel, the last one."))
    second.wait_event("alert_delivered")
    assert hooks.wait_for_delivered(3, 30)
    assert [r.file_name for r in api.requests[uploads:]] == ["sentinel.jpg"]
    assert [r.json["image"] for r in hooks.received[posts:]] == [str(sentinel)]
    assert second.terminate()[0] == 0


def test_files_dropped_while_stopped_are_processed_on_start(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    path = config.write()
    first = start_daemon(path)
    done = drop(tree.frontdoor / "done.jpg", image("An empty porch."))
    rewritten = drop(tree.frontdoor / "rewritten.jpg", image("Another empty porch."))
    first.wait_event("image_captioned", path=str(done))
    first.wait_event("image_captioned", path=str(rewritten))
    assert first.terminate()[0] == 0
    assert api.count == 2

    # While it is stopped: new files (old and fresh), a file touched without a change, and a
    # file rewritten with other bytes.
    old_data = image("A parcel left overnight.")
    old = drop(tree.frontdoor / "night" / "old.jpg", old_data)
    os.utime(old, (1_700_000_000, 1_700_000_000))
    fresh_data = image("A truck at the gate.")
    fresh = drop(tree.driveway / "fresh.jpg", fresh_data)
    os.utime(done, None)  # same bytes, new mtime: not sent again
    new_bytes = image("A man collapsed on the porch.")
    drop(rewritten, new_bytes)  # other bytes at the same path: another image

    second = start_daemon(path)
    for target in (old, fresh, rewritten):
        second.wait_event("image_captioned", path=str(target))
    second.wait_event("image_skipped", path=str(done), outcome="duplicate")
    assert hooks.wait_for_delivered(3, 30)
    second.wait_event("alert_delivered", count=3)
    assert alert_keys(hooks.delivered) == sorted(
        [
            ("package", "frontdoor", str(old)),
            ("vehicle", "driveway", str(fresh)),
            ("person-down", "frontdoor", str(rewritten)),
        ]
    )
    assert sorted(r.file_name for r in api.requests[2:]) == [
        "fresh.jpg",
        "old.jpg",
        "rewritten.jpg",
    ]
    by_image = {r.json["image"]: r for r in hooks.delivered}
    assert_alert(
        by_image[str(old)],
        rule="package",
        camera="frontdoor",
        image=old,
        matched=["parcel"],
        data=old_data,
    )
    assert_alert(
        by_image[str(rewritten)],
        rule="person-down",
        camera="frontdoor",
        image=rewritten,
        matched=["collapsed"],
        data=new_bytes,
    )
    assert second.terminate()[0] == 0


def test_sighup_with_a_valid_config_applies_a_new_rule_and_camera(
    tree: Tree,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(config.write())
    before = drop(tree.frontdoor / "ladder-1.jpg", image("A man on a ladder by the window."))
    assert daemon.wait_event("image_captioned", path=str(before))["rules"] == []
    garage = tree.root / "cams" / "garage"
    waiting_data = image("A ladder leaning on the garage door.")
    waiting = drop(garage / "waiting.jpg", waiting_data)  # there before its camera is

    data = config.data()
    data["rules"].append({"name": "ladder", "any": ["ladder"], "severity": "critical"})
    data["cameras"].append({"name": "garage", "path": str(garage)})
    config.write(data)
    daemon.hup()
    reloaded = daemon.wait_event("reloaded")
    assert (reloaded["rules"], reloaded["cameras"]) == (4, ["frontdoor", "driveway", "garage"])
    after_data = image("A man on a ladder by the back door.")
    after = drop(tree.frontdoor / "ladder-2.jpg", after_data)
    daemon.wait_event("alert_decided", rule="ladder", path=str(after))
    daemon.wait_event("alert_decided", rule="ladder", path=str(waiting))
    live = drop(garage / "live.jpg", image("An empty garage."))  # and it is watched
    daemon.wait_event("image_captioned", path=str(live))
    assert hooks.wait_for_delivered(2, 30)
    by_image = {r.json["image"]: r for r in hooks.delivered}
    assert_alert(
        by_image[str(after)],
        rule="ladder",
        camera="frontdoor",
        image=after,
        matched=["ladder"],
        data=after_data,
        severity="critical",
    )
    assert_alert(
        by_image[str(waiting)],
        rule="ladder",
        camera="garage",
        image=waiting,
        matched=["ladder"],
        data=waiting_data,
    )
    assert len(hooks.received) == 2  # the image captioned before the reload did not alert
    assert daemon.terminate()[0] == 0


def test_sighup_with_an_invalid_config_is_refused_and_the_old_rules_keep_working(
    tree: Tree,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(config.write())
    data = config.data()
    data["rules"][0]["cooldown"] = "soon"
    data["rules"][1]["any"] = ["ladder"]  # would change `package`, if it were accepted
    config.write(data)
    daemon.hup()
    refused = daemon.wait_event("reload_refused")
    assert refused["level"] == "error"
    assert any(
        p.startswith("rules[0].cooldown: expected a duration, got 'soon'")
        for p in refused["problems"]
    )
    assert not daemon.named("reloaded")

    parcel_data = image("A parcel on the step.")
    parcel = drop(tree.frontdoor / "parcel.jpg", parcel_data)
    daemon.wait_event("alert_decided", rule="package", path=str(parcel))
    assert hooks.wait_for_delivered(1, 30)
    assert_alert(
        hooks.delivered[0],
        rule="package",
        camera="frontdoor",
        image=parcel,
        matched=["parcel"],
        data=parcel_data,
    )
    assert daemon.running()
    assert daemon.terminate()[0] == 0


def test_sigterm_with_work_in_flight_exits_0_within_10s_and_loses_nothing(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    api.latency = 1.5
    path = config.write()
    first = start_daemon(path)
    dropped = [
        drop(tree.frontdoor / f"slow-{i}.jpg", image(f"Shot {i}: a parcel on the mat."))
        for i in range(5)
    ]
    assert api.wait_in_flight(2, 30), first.tail()
    code, seconds = first.terminate()
    assert code == 0
    assert seconds < 10
    assert first.named("stopped")

    api.latency = 0.0
    second = start_daemon(path)
    wait_until(
        lambda: {str(p) for p in dropped} <= _captioned_paths(first, second),
        60,
        "every image captioned",
    )
    assert hooks.wait_for_delivered(5, 30), second.tail()
    assert sorted({r.json["image"] for r in hooks.delivered}) == sorted(str(p) for p in dropped)
    code, seconds = second.terminate()
    assert (code, seconds < 10) == (0, True)


def test_sigterm_during_a_request_longer_than_10s_saves_it_and_exits_0_in_time(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    api.latency = 60.0  # answers only when the stand-in stops, long after the daemon is gone
    data = config.data()
    data["caption"]["timeout"] = "120s"
    path = config.write(data)
    first = start_daemon(path)
    dropped = [
        drop(tree.frontdoor / f"stuck-{i}.jpg", image(f"Stuck {i}: a parcel on the mat."))
        for i in range(2)
    ]
    assert api.wait_in_flight(2, 30), first.tail()
    code, seconds = first.terminate()
    assert (code, seconds < 10) == (0, True)
    assert first.named("stopped")[0]["in_flight_saved"] is True

    api.latency = 0.0
    second = start_daemon(path)
    assert second.wait_event("ready")["recovered"] == 2
    for target in dropped:
        second.wait_event("image_captioned", path=str(target))
    assert hooks.wait_for_delivered(2, 30), second.tail()
    assert second.terminate()[0] == 0


def test_sigint_also_stops_cleanly(config: ConfigWriter, start_daemon: StartDaemon) -> None:
    daemon = start_daemon(config.write())
    started = time.monotonic()
    daemon.send(signal.SIGINT)
    assert daemon.wait_exit(15) == 0
    assert time.monotonic() - started < 10
    assert daemon.named("stopped")


def test_after_move_archives_without_overwriting(
    tree: Tree,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    existing = drop(tree.archive / "frontdoor" / "sub" / "snap.jpg", b"an older archived file")
    daemon = start_daemon(config.write(after="move", archive_dir=str(tree.archive)))

    first_data = image("A parcel on the step.")
    first = drop(tree.frontdoor / "sub" / "snap.jpg", first_data)
    moved = daemon.wait_event("image_moved", path=str(first))
    assert moved["to"] == str(tree.archive / "frontdoor" / "sub" / "snap-1.jpg")
    assert Path(moved["to"]).read_bytes() == first_data
    assert existing.read_bytes() == b"an older archived file"

    second_data = image("Another parcel on the step.")
    drop(first, second_data)
    moved = daemon.wait_event("image_moved", path=str(first), count=2)
    assert moved["to"] == str(tree.archive / "frontdoor" / "sub" / "snap-2.jpg")
    assert Path(moved["to"]).read_bytes() == second_data
    assert not first.exists()
    assert existing.read_bytes() == b"an older archived file"

    assert hooks.wait_for_delivered(2, 30)
    bodies = [
        assert_alert(
            received,
            rule="package",
            camera="frontdoor",
            image=first,  # the path as read, not the archive's
            matched=["parcel"],
            data=data,
        )
        for received, data in zip(hooks.delivered, (first_data, second_data), strict=True)
    ]
    assert bodies[0]["id"] != bodies[1]["id"]
    assert daemon.terminate()[0] == 0


def test_retry_command_requeues_a_failed_image(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    path = config.write()
    api.fail_next(1, 400)
    daemon = start_daemon(path)
    data = image("A parcel the API refused once.")
    refused = drop(tree.frontdoor / "refused.jpg", data)
    failed = daemon.wait_event("image_failed", path=str(refused))
    assert "HTTP 400" in failed["reason"]
    assert api.count == 1  # a 400 is not retried

    other = run_cli("retry", "-c", str(path), "--camera", "driveway")
    assert other.returncode == 0, other.stderr
    assert "queued 0 failed image(s) again" in other.stdout
    result = run_cli("retry", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert "queued 1 failed image(s) again" in result.stdout

    daemon.wait_event("image_captioned", path=str(refused))
    assert hooks.wait_for_delivered(1, 30), daemon.tail()
    assert_alert(
        hooks.delivered[0],
        rule="package",
        camera="frontdoor",
        image=refused,
        matched=["parcel"],
        data=data,
    )
    assert [r.status for r in api.requests] == [400, 200]
    assert daemon.terminate()[0] == 0


def test_cooldown_survives_a_restart(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    data = config.data()
    data["rules"][1]["cooldown"] = "1h"  # package
    path = config.write(data)
    first = start_daemon(path)
    one = drop(tree.frontdoor / "one.jpg", image("A parcel on the step."))
    first.wait_event("alert_decided", rule="package", path=str(one))
    assert hooks.wait_for_delivered(1, 30)
    first.wait_event("alert_delivered")
    assert first.terminate()[0] == 0

    second = start_daemon(path)
    two = drop(tree.frontdoor / "two.jpg", image("Another parcel on the step."))
    suppressed = second.wait_event("alert_suppressed", path=str(two))
    assert suppressed["rule"] == "package"
    assert not second.named("alert_decided")
    assert second.terminate()[0] == 0
    assert alert_keys(hooks.received) == [("package", "frontdoor", str(one))]
    assert api.count == 2


def test_a_storm_of_sighups_then_sigterm_stops_cleanly(
    config: ConfigWriter, start_daemon: StartDaemon
) -> None:
    """Signals arrive at any moment of the main loop; none may wedge it (a handler that takes a
    lock the loop holds would)."""
    daemon = start_daemon(config.write())
    for _ in range(300):
        daemon.hup()
        time.sleep(0.002)  # signals a few ms apart, landing all over the loop
    daemon.wait_event("reloaded", timeout=30)
    code, seconds = daemon.terminate()
    assert code == 0 and seconds < 10, daemon.tail()
