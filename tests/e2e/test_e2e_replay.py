"""`camwatch replay`: the current rules over captions stored by a real run, at no token cost."""

from __future__ import annotations

import json
from collections.abc import Callable

from camwatch.testing import StandinCaptionAPI, WebhookReceiver

from .support import ConfigWriter, Daemon, Tree, drop, image, run_cli


def test_replay_reruns_current_rules_without_calling_anything(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: Callable[..., Daemon],
) -> None:
    path = config.write()
    drop(tree.frontdoor / "a.jpg", image("A man is carrying a ladder across the yard."))
    drop(tree.driveway / "b.jpg", image("A red car is parked on the driveway."))
    drop(tree.frontdoor / "c.jpg", image("Nobody is lying on the ground; the porch is empty."))
    daemon = start_daemon(path, "--once")
    assert daemon.wait_exit(60) == 0
    uploads, alerts = api.count, len(hooks.received)
    assert uploads == 3

    # A new rule added after the fact: replay shows what it would have sent.
    rules = [*config.base["rules"], {"name": "ladder", "any": ["ladder"]}]
    path = config.write(rules=rules)
    result = run_cli("replay", "-c", str(path), "--since", "1h", "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted((line["rule"], line["camera"]) for line in lines) == [
        ("ladder", "frontdoor"),
        ("vehicle", "driveway"),
    ]
    ladder = next(line for line in lines if line["rule"] == "ladder")
    assert ladder["matched"] == ["ladder"]
    assert ladder["path"] == str(tree.cam("frontdoor") / "a.jpg")
    assert "3 caption(s) replayed, 2 alert(s) would be sent" in result.stderr

    only = run_cli("replay", "-c", str(path), "--since", "1h", "--camera", "driveway")
    assert only.returncode == 0, only.stderr
    assert "vehicle" in only.stdout and "ladder" not in only.stdout

    # Nothing was captioned or sent by replaying.
    assert api.count == uploads
    assert len(hooks.received) == alerts


def test_replay_rejects_a_bad_since(config: ConfigWriter) -> None:
    result = run_cli("replay", "-c", str(config.write()), "--since", "yesterday")
    assert result.returncode == 64
    assert "--since" in result.stderr
