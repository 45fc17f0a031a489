"""The image a notify target attaches: the stored bytes, handed to Apprise as a private copy
that lives for one delivery, never the image's path opened again."""

from __future__ import annotations

import base64
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import apprise
import pytest

from camwatch.alerts import notify_body
from camwatch.config import NotifyConfig
from camwatch.errors import DeliveryFailed
from camwatch.senders.notify import send_notify

_TARGET = {"name": "phones", "urls": ["json://127.0.0.1:1/"], "attach_image": True}


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point tempfile at an empty folder of the test's own, to see what is left behind."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _capture(monkeypatch: pytest.MonkeyPatch, accept: bool) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def notify(self: apprise.Apprise, **kwargs: Any) -> bool:
        attach = kwargs.get("attach")
        path = getattr(attach, "dirty_path", None)
        if path is not None:
            seen.append(
                {
                    "path": path,
                    "name": attach.name,
                    "data": Path(path).read_bytes(),
                    "mode": stat.S_IMODE(os.lstat(path).st_mode),
                    "dir_mode": stat.S_IMODE(os.lstat(os.path.dirname(path)).st_mode),
                }
            )
        else:
            seen.append({"attach": attach})
        return accept

    monkeypatch.setattr(apprise.Apprise, "notify", notify)
    return seen


def test_the_stored_bytes_go_to_apprise_as_a_private_copy_removed_afterwards(
    private_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _capture(monkeypatch, accept=True)
    target = NotifyConfig.model_validate(_TARGET)
    image = tmp_path / "cams" / "a.jpg"  # never created: the path is not what is sent
    stored = notify_body(target, {"image": str(image)}, b"\xff\xd8captioned")
    send_notify(target, stored)
    (sent,) = seen
    assert sent["data"] == b"\xff\xd8captioned"
    assert sent["name"] == "a.jpg"
    assert (sent["mode"], sent["dir_mode"]) == (0o600, 0o700)
    assert Path(sent["path"]).parent.parent == private_tmp
    assert list(private_tmp.iterdir()) == []  # removed after the delivery


def test_the_private_copy_is_removed_when_the_delivery_fails(
    private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _capture(monkeypatch, accept=False)
    target = NotifyConfig.model_validate(_TARGET)
    with pytest.raises(DeliveryFailed):
        send_notify(target, notify_body(target, {"image": "/cams/a.jpg"}, b"\xff\xd8x"))
    assert seen[0]["data"] == b"\xff\xd8x"
    assert list(private_tmp.iterdir()) == []


def test_an_old_message_with_only_a_path_is_sent_without_opening_it(
    private_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _capture(monkeypatch, accept=True)
    secret = tmp_path / "secret"
    secret.write_bytes(b"SECRET")
    link = tmp_path / "a.jpg"
    link.symlink_to(secret)
    target = NotifyConfig.model_validate(_TARGET)
    send_notify(target, json.dumps({"title": "t", "body": "b", "image": str(link)}))
    assert seen == [{"attach": None}]


def test_a_target_without_attach_image_sends_no_stored_bytes(
    private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _capture(monkeypatch, accept=True)
    target = NotifyConfig.model_validate({**_TARGET, "attach_image": False})
    stored = json.dumps(
        {
            "title": "t",
            "body": "b",
            "image": "/cams/a.jpg",
            "attachment": {"name": "a.jpg", "base64": base64.b64encode(b"x").decode()},
        }
    )
    send_notify(target, stored)
    assert seen == [{"attach": None}]
