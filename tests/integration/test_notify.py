"""Notify targets: alerts reach people through real Apprise, here its json:// service pointed
at a local receiver on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from camwatch.alerts import alert_candidates
from camwatch.config import Config, parse_config
from camwatch.dispatch import Dispatcher
from camwatch.files import read_snapshot
from camwatch.rules import RuleSet
from camwatch.store import NewImage, Store
from camwatch.testing import WebhookReceiver, sample_images


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


def _config(tmp_path: Path, receiver: WebhookReceiver, attach: bool) -> object:
    cams = tmp_path / "cams"
    cams.mkdir(exist_ok=True)
    host = receiver.url.removeprefix("http://")
    return parse_config(
        {
            "caption": {"api_key": "k" * 8},
            "cameras": [{"name": "front", "path": str(cams)}],
            "state_dir": str(tmp_path / "state"),
            "rules": [{"name": "person-down", "any": ["lying on the ground"], "notify": ["me"]}],
            "notify": [
                {
                    "name": "me",
                    "urls": [f"json://{host}/notify"],
                    "attach_image": attach,
                    "title": "{severity}: {rule} on {camera}",
                    "body": "{caption} [{matched}]",
                }
            ],
            "delivery": {"backoff_initial": 0.05, "backoff_max": 0.2},
        }
    )


def _queue_alert(store: Store, config: object, image: Path, data: bytes | None = None) -> None:
    from camwatch.config import Config

    assert isinstance(config, Config)
    caption = "It shows a person lying on the ground."
    store.add_pending([NewImage("front", str(image), image.name, 1, 1, time.time())])
    job = store.claim()
    assert job is not None
    decisions = RuleSet(config.rules).matching(caption, "front")
    candidates = alert_candidates(
        config,
        decisions,
        "front",
        str(image),
        "ab" * 32,
        caption,
        time.time(),
        time.time(),
        image_data=data,
    )
    store.complete(job.id, "ab" * 32, 1, 1, caption, (1, 1, 2), candidates)


def _deliver(store: Store, config: object, receiver: WebhookReceiver) -> None:
    from camwatch.config import Config

    assert isinstance(config, Config)
    dispatcher = Dispatcher(store)
    try:
        dispatcher.sync(config)
        dispatcher.wake()
        assert receiver.wait_for(1, 15)
        deadline = time.monotonic() + 5
        while store.counts()["alerts_pending"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.counts()["alerts_pending"] == 0
    finally:
        dispatcher.stop()


def test_notify_message_formats_title_and_body(tmp_path: Path, receiver: WebhookReceiver) -> None:
    config = _config(tmp_path, receiver, attach=False)
    store = Store(tmp_path / "state")
    try:
        _queue_alert(store, config, tmp_path / "cams" / "a.jpg")
        _deliver(store, config, receiver)
    finally:
        store.close()
    message = receiver.received[0].json
    assert message["title"] == "warning: person-down on front"
    assert message["message"] == "It shows a person lying on the ground. [lying on the ground]"


def test_notify_attaches_the_snapshot(tmp_path: Path, receiver: WebhookReceiver) -> None:
    config = _config(tmp_path, receiver, attach=True)
    name, data, _ = sample_images()[0]
    image = tmp_path / "cams" / name
    image.write_bytes(data)
    store = Store(tmp_path / "state")
    try:
        _queue_alert(store, config, image, data)
        _deliver(store, config, receiver)
    finally:
        store.close()
    attachments = receiver.received[0].json.get("attachments") or []
    assert len(attachments) == 1
    assert base64.b64decode(attachments[0]["base64"]) == data
    assert attachments[0]["filename"] == name


def test_notify_attaches_the_bytes_captioned_not_what_the_path_became(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """An uploader replaces the captioned file with a symbolic link to a file the service can
    read (its key, the state database) before the alert is delivered: the notify service gets
    the image as it was captioned, never the secret."""
    config = _config(tmp_path, receiver, attach=True)
    assert isinstance(config, Config)
    name, data, _ = sample_images()[0]
    image = tmp_path / "cams" / name
    image.write_bytes(data)
    secret = tmp_path / "api-key"
    secret.write_bytes(b"SECRET-API-KEY-0123456789")
    snap = read_snapshot(config.cameras[0].path, str(image), 10**7)  # what was captioned
    store = Store(tmp_path / "state")
    try:
        _queue_alert(store, config, image, snap.data)
        image.unlink()
        image.symlink_to(secret)
        _deliver(store, config, receiver)
    finally:
        store.close()
    raw = receiver.received[0].body
    attachments = receiver.received[0].json.get("attachments") or []
    assert [base64.b64decode(a["base64"]) for a in attachments] == [data]
    assert b"SECRET" not in raw
    assert base64.b64encode(b"SECRET-API-KEY-0123456789") not in raw
    # Delivered: the stored copy of the image is dropped, the message row stays.
    with contextlib.closing(sqlite3.connect(tmp_path / "state" / "camwatch.db")) as db:
        (body,) = db.execute("SELECT body FROM alerts WHERE target_kind = 'notify'").fetchone()
    assert "attachment" not in json.loads(body)


def test_a_message_stored_without_the_bytes_attaches_nothing(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    # Queued before the bytes were stored (only the path): the path is never opened again.
    config = _config(tmp_path, receiver, attach=True)
    name, data, _ = sample_images()[0]
    image = tmp_path / "cams" / name
    image.write_bytes(data)
    store = Store(tmp_path / "state")
    try:
        _queue_alert(store, config, image)
        _deliver(store, config, receiver)
    finally:
        store.close()
    assert not receiver.received[0].json.get("attachments")


def test_notify_failure_is_retried(tmp_path: Path, receiver: WebhookReceiver) -> None:
    config = _config(tmp_path, receiver, attach=False)
    receiver.fail_next(1, status=500)
    store = Store(tmp_path / "state")
    try:
        _queue_alert(store, config, tmp_path / "cams" / "a.jpg")
        _deliver(store, config, receiver)
        assert receiver.wait_for(2, 10)
    finally:
        store.close()
    assert [r.status for r in receiver.received[:2]] == [500, 200]
    assert receiver.received[0].json == receiver.received[1].json
