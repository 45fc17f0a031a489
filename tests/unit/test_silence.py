"""Silent cameras: one alert when a camera goes quiet for `expect_every`, one when it is back,
with the state in the database so that a restart repeats and forgets nothing."""

from __future__ import annotations

import json
from pathlib import Path

from camwatch.config import Config, parse_config
from camwatch.silence import BACK, SILENT, SilenceWatch
from camwatch.store import NewImage, Store

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def make_config(tmp_path: Path) -> Config:
    (tmp_path / "front").mkdir(exist_ok=True)
    (tmp_path / "back").mkdir(exist_ok=True)
    return parse_config(
        {
            "cameras": [
                {"name": "front", "path": str(tmp_path / "front"), "expect_every": "1h"},
                {"name": "back", "path": str(tmp_path / "back")},
            ],
            "webhooks": [{"name": "ops", "url": "http://127.0.0.1:9/hook"}],
            "notify": [{"name": "phones", "urls": ["json://127.0.0.1:9/"]}],
            "state_dir": str(tmp_path / "state"),
        },
        {},
    )


def outbox(store: Store) -> list[tuple[str, str, dict[str, object]]]:
    rows = store._read("SELECT rule, target_kind, body FROM alerts ORDER BY id")
    return [(rule, kind, json.loads(body)) for rule, kind, body in rows]


def add_image(store: Store, clock: Clock, name: str) -> None:
    store.add_pending([NewImage("front", f"/x/{name}", name, 1, 1, clock.now)])


def test_silence_counts_from_start_then_the_last_image(tmp_path: Path) -> None:
    config, clock = make_config(tmp_path), Clock()
    store = Store(config.state_dir, clock=clock)
    watch = SilenceWatch(store, clock=clock)
    clock.now += 3599
    assert watch.check(config) == 0
    clock.now += 1
    assert watch.check(config) == 1  # never an image: silent an hour after the start
    assert watch.check(config) == 0  # said once
    rows = outbox(store)
    assert [(rule, kind) for rule, kind, _ in rows] == [(SILENT, "webhook"), (SILENT, "notify")]
    body = rows[0][2]
    assert body["event"] == SILENT and body["camera"] == "front"
    assert body["last_image_at"] is None and body["expect_every"] == 3600.0
    assert set(body) == {"id", "event", "camera", "last_image_at", "expect_every", "detected_at"}
    assert rows[1][2]["title"] == "camwatch: camera front is silent"

    clock.now += 10
    add_image(store, clock, "a.jpg")
    assert watch.check(config) == 1
    back = outbox(store)[2][2]
    assert back["event"] == BACK and back["last_image_at"] is not None
    assert watch.check(config) == 0


def test_a_restart_neither_repeats_nor_forgets(tmp_path: Path) -> None:
    config, clock = make_config(tmp_path), Clock()
    store = Store(config.state_dir, clock=clock)
    add_image(store, clock, "a.jpg")
    clock.now += 7200
    assert SilenceWatch(store, clock=clock).check(config) == 1
    store.close()

    clock.now += 60
    store = Store(config.state_dir, clock=clock)  # the daemon restarted
    again = SilenceWatch(store, clock=clock)
    clock.now += 7200
    assert again.check(config) == 0  # the same silence is not announced again
    add_image(store, clock, "b.jpg")
    assert again.check(config) == 1
    assert [rule for rule, kind, _ in outbox(store) if kind == "webhook"] == [SILENT, BACK]


def test_the_last_image_before_a_restart_counts(tmp_path: Path) -> None:
    config, clock = make_config(tmp_path), Clock()
    store = Store(config.state_dir, clock=clock)
    add_image(store, clock, "a.jpg")
    clock.now += 3000
    watch = SilenceWatch(store, clock=clock)  # started 50 minutes after the last image
    clock.now += 600
    assert watch.check(config) == 1
    (_, _, body), _ = outbox(store)
    assert body["last_image_at"] == "2027-01-15T08:00:00.000Z"
