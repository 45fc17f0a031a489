"""Silent cameras: an alert when a camera has sent no image for `expect_every`, one when it is back.

An unplugged camera, a full SD card or a changed FTP password all look like "nothing happened",
which is what an operator wants to hear least. The state lives in the database (the latest
image of each camera, and which cameras were announced silent), so a restart neither repeats an
alert nor forgets one. Both alerts go through the outbox like rule alerts: signed, retried, with
an event id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from camwatch.alerts import every_target, iso_utc, new_event_id
from camwatch.config import Config
from camwatch.log import get_logger
from camwatch.store import AlertCandidate, Store

log = get_logger(__name__)

SILENT = "camwatch.camera_silent"
BACK = "camwatch.camera_back"


def silence_body(
    event_id: str,
    event: str,
    camera: str,
    last_image_at: float | None,
    expect_every: float,
    detected_at: float,
) -> str:
    """Return the webhook body of a camera_silent or camera_back alert, as the exact text sent."""
    payload = {
        "id": event_id,
        "event": event,
        "camera": camera,
        "last_image_at": None if last_image_at is None else iso_utc(last_image_at),
        "expect_every": expect_every,
        "detected_at": iso_utc(detected_at),
    }
    return json.dumps(payload, ensure_ascii=False)


def _message(event: str, camera: str, last_image_at: float | None, expect_every: float) -> str:
    last = "never" if last_image_at is None else iso_utc(last_image_at)
    if event == SILENT:
        title = f"camwatch: camera {camera} is silent"
        text = f"No new image from {camera} for {_span(expect_every)} (last image: {last})."
    else:
        title = f"camwatch: camera {camera} is back"
        text = f"A new image arrived from {camera} ({last})."
    return json.dumps({"title": title, "body": text, "image": None})


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


class SilenceWatch:
    """Decides the silent and back alerts; `check` is called from the main loop."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self.started_at = clock()

    def check(self, config: Config) -> int:
        """Queue the alerts due now. Return how many were queued."""
        watched = [c for c in config.cameras if c.expect_every is not None]
        if not watched:
            return 0
        now = self._clock()
        silent = self._store.silent_cameras()
        queued = 0
        for camera in watched:
            assert camera.expect_every is not None
            last = self._store.last_image_at(camera.name)
            if camera.name in silent:
                if last is not None and last > silent[camera.name]:
                    self._store.mark_back(self._alert(config, BACK, camera.name, last, now))
                    log.info("camera_back", camera=camera.name, last_image_at=iso_utc(last))
                    queued += 1
                continue
            since = last if last is not None else self.started_at
            if now - since >= camera.expect_every:
                alert = self._alert(config, SILENT, camera.name, last, now)
                self._store.mark_silent(alert, now)
                log.warning(
                    "camera_silent",
                    camera=camera.name,
                    last_image_at=None if last is None else iso_utc(last),
                    expect_every=camera.expect_every,
                )
                queued += 1
        return queued

    def _alert(
        self, config: Config, event: str, camera: str, last: float | None, now: float
    ) -> AlertCandidate:
        expect = config.camera(camera).expect_every  # type: ignore[union-attr]
        assert expect is not None
        event_id = new_event_id()
        body = silence_body(event_id, event, camera, last, expect, now)
        message = _message(event, camera, last, expect)
        targets, messages = every_target(config, message)
        return AlertCandidate(event_id, event, camera, 0.0, targets, body, messages)
