"""End to end: the real `camwatch run` watching camera folders, the stand-in caption API and
webhook receivers on 127.0.0.1. Images are dropped the ways cameras write them; the tests assert
the exact uploads the API saw and the exact alerts the receivers got."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from camwatch.files import is_complete_image
from camwatch.testing import StandinCaptionAPI, WebhookReceiver, sample_images

from .support import (
    API_KEY,
    HOOK_SECRET,
    OTHER_SECRET,
    ConfigWriter,
    Daemon,
    Tree,
    alert_keys,
    assert_alert,
    drop,
    image,
    sha256,
)

StartDaemon = Callable[..., Daemon]


def _by_image(received: list, path: Path) -> list:
    return [r for r in received if r.json["image"] == str(path)]


def test_images_dropped_every_way_give_exactly_the_expected_alerts(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    outside = drop(tree.outside / "secret.jpg", image("Someone collapsed behind the shed."))
    daemon = start_daemon(config.write())

    # Files that must never be read: hidden, temporary, a symlink leading out of the camera.
    hidden = drop(tree.frontdoor / ".hidden.jpg", image("A man collapsed in the hidden file."))
    thumbs = drop(tree.frontdoor / ".thumbs" / "t.jpg", image("A man collapsed, a thumbnail."))
    tmp = drop(tree.frontdoor / "upload.jpg.tmp", image("A parcel in a temporary file."))
    link = tree.frontdoor / "link.jpg"
    os.symlink(outside, link)

    # Plainly written.
    plain_data = image("A person lying on the ground near the door, not moving.")
    plain = drop(tree.frontdoor / "2026-11-23" / "12-00-01.jpg", plain_data)

    # Written slowly in chunks, each pause shorter than the debounce (250 ms).
    slow_data = image("A courier leaves a parcel on the doorstep.")
    slow = tree.frontdoor / "slow.jpg"
    step = len(slow_data) // 4 + 1
    with open(slow, "wb") as handle:
        for start in range(0, len(slow_data), step):
            handle.write(slow_data[start : start + step])
            handle.flush()
            time.sleep(0.08)  # the camera's pace between chunks, not a wait for the daemon
    last_chunk_at = time.time()

    # Written under a temporary name, then renamed.
    renamed_data = image("A red car parked on the driveway.")
    part = drop(tree.driveway / "cam2.jpg.part", renamed_data)
    renamed = tree.driveway / "cam2.jpg"
    part.rename(renamed)

    # Half a JPEG that never completes (complete_timeout is 2 s in the tests' config).
    whole = image("This image was cut in half.")
    truncated = drop(tree.frontdoor / "truncated.jpg", whole[: len(whole) // 2])
    assert not is_complete_image(truncated.read_bytes())

    # An image with no rule matching: captioned, no alert.
    quiet_data = image("An empty porch in the afternoon sun.")
    quiet = drop(tree.driveway / "quiet.jpg", quiet_data)

    for path in (plain, slow, renamed, quiet):
        daemon.wait_event("image_captioned", path=str(path))
    skipped = daemon.wait_event(
        "file_incomplete_skipped",
        lambda e: e.get("level") == "warning",
        path=str(truncated),
    )
    assert "complete" in skipped["reason"]

    # The daemon goes on after the skip: a later image is captioned and alerts; the same bytes
    # at another path are another image.
    later_data = image("Another parcel by the gate.")
    later = drop(tree.frontdoor / "later.jpg", later_data)
    copy = drop(tree.driveway / "copy.jpg", later_data)
    daemon.wait_event("image_captioned", path=str(later))
    daemon.wait_event("image_captioned", path=str(copy))
    # The skipped file is considered again once it changes, and is now whole.
    drop(truncated, whole)
    daemon.wait_event("image_captioned", path=str(truncated))
    assert hooks.wait_for_delivered(5, 30)
    daemon.wait_event("alert_delivered", count=5)

    got = hooks.received
    assert alert_keys(got) == sorted(
        [
            ("package", "driveway", str(copy)),
            ("package", "frontdoor", str(later)),
            ("package", "frontdoor", str(slow)),
            ("person-down", "frontdoor", str(plain)),
            ("vehicle", "driveway", str(renamed)),
        ]
    )
    assert_alert(
        _by_image(got, plain)[0],
        rule="person-down",
        camera="frontdoor",
        image=plain,
        matched=["lying on the ground"],
        data=plain_data,
        severity="critical",
    )
    assert_alert(
        _by_image(got, slow)[0],
        rule="package",
        camera="frontdoor",
        image=slow,
        matched=["parcel"],
        data=slow_data,
        severity="info",
    )
    assert_alert(
        _by_image(got, renamed)[0],
        rule="vehicle",
        camera="driveway",
        image=renamed,
        matched=["car"],
        data=renamed_data,
        severity="warning",
    )
    assert_alert(
        _by_image(got, later)[0],
        rule="package",
        camera="frontdoor",
        image=later,
        matched=["parcel"],
        data=later_data,
    )
    assert _by_image(got, plain)[0].json["caption"] == (
        "A person lying on the ground near the door, not moving."
    )

    # Exactly one upload per image, the slow one only after its last chunk.
    uploads = api.requests
    names = sorted(r.file_name for r in uploads)
    expected = ["12-00-01.jpg", "slow.jpg", "cam2.jpg", "quiet.jpg", "later.jpg", "copy.jpg"]
    assert names == sorted([*expected, "truncated.jpg"])  # the truncated one once, when whole
    assert all(r.status == 200 for r in uploads)
    slow_upload = next(r for r in uploads if r.file_name == "slow.jpg")
    assert slow_upload.sha256 == sha256(slow_data)
    assert slow_upload.wall_time >= last_chunk_at
    never = {sha256(p.read_bytes()) for p in (outside, hidden, thumbs, tmp)}
    assert not never & {r.sha256 for r in uploads}
    assert next(r for r in uploads if r.file_name == "truncated.jpg").sha256 == sha256(whole)
    for path in (hidden, thumbs, tmp, link, part):
        assert not [e for e in daemon.events if e.get("path") == str(path)], path

    code, seconds = daemon.terminate()
    assert code == 0
    assert seconds < 10


def test_upload_wire_format_and_per_camera_prompt(
    tree: Tree,
    api: StandinCaptionAPI,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    data = config.data()
    data["cameras"][1]["user_prompt"] = "Is there a vehicle on the driveway?"
    daemon = start_daemon(config.write(data))
    jpeg = drop(tree.frontdoor / "front.jpg", image("A quiet door."))
    png_name, png_data, png_caption = next(s for s in sample_images() if s[0].endswith(".png"))
    api.captions[png_name] = png_caption
    png = drop(tree.driveway / png_name, png_data)
    daemon.wait_event("image_captioned", path=str(jpeg))
    captioned = daemon.wait_event("image_captioned", path=str(png))
    assert captioned["caption"] == png_caption

    by_name = {r.file_name: r for r in api.requests}
    assert sorted(by_name) == sorted(["front.jpg", png_name])
    for name, kind, prompt, raw in (
        ("front.jpg", "image/jpeg", "What is happening here?", jpeg.read_bytes()),
        (png_name, "image/png", "Is there a vehicle on the driveway?", png_data),
    ):
        request = by_name[name]
        assert request.method == "POST"
        assert request.path == "/v1/understand/uploadImg"
        assert request.authorization == API_KEY  # the raw key, no "Bearer"
        assert request.content_type.startswith("multipart/form-data; boundary=")
        assert request.parts == ["req", "file"]
        assert request.part_filenames == ["req.json", name]
        assert request.part_types[0] == "application/json"
        assert request.part_types[1] == kind
        assert request.json == {
            "user_prompt": prompt,
            "system_prompt": "You watch a house.",
            "thinking": False,
        }
        assert request.sha256 == sha256(raw)
        assert request.file_size == len(raw)
        assert request.status == 200, request.error
    assert daemon.terminate()[0] == 0


def test_cooldown_suppresses_per_rule_and_camera(
    tree: Tree,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    data = config.data()
    data["rules"][1]["cooldown"] = "1h"  # package
    daemon = start_daemon(config.write(data))
    first = drop(tree.frontdoor / "a.jpg", image("A parcel on the step."))
    daemon.wait_event("alert_decided", rule="package", path=str(first))
    second = drop(tree.frontdoor / "b.jpg", image("A second parcel on the step."))
    suppressed = daemon.wait_event("alert_suppressed", path=str(second))
    assert suppressed["rule"] == "package"
    assert suppressed["matched"] == ["parcel"]
    # Another camera has its own cooldown.
    other = drop(tree.driveway / "c.jpg", image("A package by the car."))
    daemon.wait_event("alert_decided", rule="package", path=str(other))
    assert hooks.wait_for_delivered(3, 30)
    daemon.wait_event("alert_delivered", count=3)
    assert alert_keys(hooks.received) == sorted(
        [
            ("package", "frontdoor", str(first)),
            ("package", "driveway", str(other)),
            ("vehicle", "driveway", str(other)),
        ]
    )
    assert daemon.terminate()[0] == 0


def test_webhooks_route_each_rule_to_its_receivers(
    tree: Tree,
    hooks: WebhookReceiver,
    hooks2: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAMWATCH_OTHER_SECRET", OTHER_SECRET)
    data = config.data()
    data["webhooks"] = [
        {"name": "ops", "url": hooks.url, "secret": "${CAMWATCH_WEBHOOK_SECRET}"},
        {
            "name": "home",
            "url": hooks2.url + "/hook",
            "secret": "${CAMWATCH_OTHER_SECRET}",
            "headers": {"X-Team": "night-shift"},
        },
        {"name": "unsigned", "url": hooks2.url + "/plain"},
    ]
    data["rules"][0]["webhooks"] = ["ops"]  # person-down
    data["rules"][1]["webhooks"] = ["home", "unsigned"]  # package
    # vehicle: no `webhooks`, so every webhook
    daemon = start_daemon(config.write(data))
    down_data = image("A man collapsed on the path.")
    down = drop(tree.frontdoor / "down.jpg", down_data)
    parcel_data = image("A parcel on the mat.")
    parcel = drop(tree.frontdoor / "parcel.jpg", parcel_data)
    car_data = image("A truck reversing into the driveway.")
    car = drop(tree.driveway / "car.jpg", car_data)
    assert hooks.wait_for_delivered(2, 30)
    assert hooks2.wait_for_delivered(4, 30)
    daemon.wait_event("alert_delivered", count=6)

    assert alert_keys(hooks.received) == sorted(
        [("person-down", "frontdoor", str(down)), ("vehicle", "driveway", str(car))]
    )
    on_home = [r for r in hooks2.received if r.path == "/hook"]
    on_plain = [r for r in hooks2.received if r.path == "/plain"]
    expected_2 = sorted([("package", "frontdoor", str(parcel)), ("vehicle", "driveway", str(car))])
    assert alert_keys(on_home) == expected_2
    assert alert_keys(on_plain) == expected_2
    assert_alert(
        _by_image(hooks.received, down)[0],
        rule="person-down",
        camera="frontdoor",
        image=down,
        matched=["collapsed"],
        data=down_data,
    )
    home_parcel = assert_alert(
        _by_image(on_home, parcel)[0],
        rule="package",
        camera="frontdoor",
        image=parcel,
        matched=["parcel"],
        data=parcel_data,
        secret=OTHER_SECRET,
    )
    plain_parcel = assert_alert(
        _by_image(on_plain, parcel)[0],
        rule="package",
        camera="frontdoor",
        image=parcel,
        matched=["parcel"],
        data=parcel_data,
        secret=None,
    )
    assert home_parcel["id"] == plain_parcel["id"]  # one alert, two targets
    assert _by_image(on_home, parcel)[0].headers.get("X-Team") == "night-shift"
    car_ops = assert_alert(
        _by_image(hooks.received, car)[0],
        rule="vehicle",
        camera="driveway",
        image=car,
        matched=["truck"],
        data=car_data,
    )
    car_home = assert_alert(
        _by_image(on_home, car)[0],
        rule="vehicle",
        camera="driveway",
        image=car,
        matched=["truck"],
        data=car_data,
        secret=OTHER_SECRET,
    )
    assert car_ops["id"] == car_home["id"]
    assert daemon.terminate()[0] == 0


def test_secrets_never_reach_the_log(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    # A server that echoes the key back in its error messages, and a webhook that fails once.
    api.fail_next(2, 503, body={"code": -1, "msg": f"bad request with key {API_KEY}"})
    api.fail_next(1, 400, body={"code": -1, "msg": f"refused for Authorization: {API_KEY}"})
    hooks.fail_next(1, 500, body=f"secret was {HOOK_SECRET}")
    data = config.data()
    data["log"]["level"] = "debug"
    daemon = start_daemon(config.write(data))
    failed = drop(tree.frontdoor / "refused.jpg", image("A parcel nobody will see."))
    refused = daemon.wait_event("image_failed", path=str(failed))
    assert "HTTP 400" in refused["reason"]
    ok = drop(tree.frontdoor / "ok.jpg", image("A parcel everyone will see."))
    daemon.wait_event("alert_delivered", rule="package", camera="frontdoor")
    assert hooks.wait_for_delivered(1, 30)
    assert _by_image(hooks.delivered, ok)
    assert daemon.terminate()[0] == 0
    text = daemon.stderr_text
    assert "bad request with key ***" in text  # the echoing answers were logged ...
    assert API_KEY not in text  # ... without the key
    assert HOOK_SECRET not in text
