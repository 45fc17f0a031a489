"""End to end: getting skipped images back. An image too large for `caption.max_image_bytes` is
captioned once the limit is raised (at the next start, or on SIGHUP) without any command;
`camwatch retry --skipped` queues the others again; `camwatch caption` refuses a file the daemon
would skip, in the same words, without reading it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from camwatch.testing import StandinCaptionAPI, WebhookReceiver

from .support import (
    WAIT,
    ConfigWriter,
    Daemon,
    Tree,
    assert_alert,
    daemon_env,
    drop,
    image,
    run_cli,
)

StartDaemon = Callable[..., Daemon]
EX_USAGE = 64
EX_NOINPUT = 66


def with_limit(config: ConfigWriter, max_image_bytes: int) -> Path:
    data = config.data()
    data["caption"]["max_image_bytes"] = max_image_bytes
    return config.write(data)


def skip_kinds(tree: Tree) -> dict[str, tuple[str, str | None]]:
    """Return each file's latest state and skip kind, read from the state database."""
    db = sqlite3.connect(tree.state / "camwatch.db")
    try:
        rows = db.execute("SELECT relpath, state, skip_kind FROM images ORDER BY id").fetchall()
    finally:
        db.close()
    return {relpath: (state, kind) for relpath, state, kind in rows}


def test_too_large_is_captioned_once_the_limit_is_raised_at_restart_and_on_reload(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    down = image("A man lying on the ground by the gate.")
    parcel = image("A parcel on the step, left by a courier in a brown uniform and cap.")
    assert len(parcel) > len(down)
    first = start_daemon(with_limit(config, len(down) - 1))
    big = drop(tree.frontdoor / "big.jpg", down)
    skipped = first.wait_event("image_skipped", path=str(big))
    assert skipped["reason"] == f"{len(down)} bytes > max_image_bytes {len(down) - 1}"
    assert skipped["level"] == "warning"
    assert first.terminate()[0] == 0
    assert api.count == 0
    assert skip_kinds(tree) == {"big.jpg": ("skipped", "too_large")}

    # Raised, then restarted: captioned without any command.
    second = start_daemon(with_limit(config, len(down)))
    again = second.wait_event("skipped_reconsidered")
    assert (again["reason"], again["count"]) == ("too_large", 1)
    second.wait_event("image_captioned", path=str(big))
    assert hooks.wait_for_delivered(1, WAIT)
    assert_alert(
        hooks.delivered[0],
        rule="person-down",
        camera="frontdoor",
        image=big,
        matched=["lying on the ground"],
        data=down,
    )

    # Too large for the new limit too; raised again, and reloaded: captioned.
    bigger = drop(tree.frontdoor / "bigger.jpg", parcel)
    second.wait_event("image_skipped", path=str(bigger))
    with_limit(config, len(parcel))
    second.hup()
    second.wait_event("reloaded")
    second.wait_event("skipped_reconsidered", count=2, reason="too_large")
    second.wait_event("image_captioned", path=str(bigger))
    assert hooks.wait_for_delivered(2, WAIT)
    assert sorted(r.file_name for r in api.requests) == ["big.jpg", "bigger.jpg"]
    assert second.terminate()[0] == 0


def test_retry_skipped_with_the_daemon_stopped_then_run_once_captions_it(
    tree: Tree, api: StandinCaptionAPI, hooks: WebhookReceiver, config: ConfigWriter
) -> None:
    # A second name for the same bytes, outside the camera folder: never read (unsafe_path).
    data = image("A parcel by the door.")
    linked = drop(tree.frontdoor / "linked.jpg", data)
    os.link(linked, tree.outside / "linked.jpg")
    removed = drop(tree.frontdoor / "removed.jpg", image("A car in the driveway."))
    os.link(removed, tree.outside / "removed.jpg")
    path = config.write()
    first = run_cli("run", "-c", str(path), "--once")
    assert first.returncode == 0, first.stderr[-3000:]
    events = [json.loads(line) for line in first.stderr.splitlines() if line.startswith("{")]
    reasons = {e["path"]: e["reason"] for e in events if e["event"] == "image_skipped"}
    assert reasons == {
        str(linked): "has more than one hard link",
        str(removed): "has more than one hard link",
    }
    assert api.count == 0

    # Fixed by hand: the other name removed; the other file deleted altogether.
    (tree.outside / "linked.jpg").unlink()
    removed.unlink()
    retry = run_cli("retry", "-c", str(path), "--skipped", "--reason", "unsafe_path")
    assert retry.returncode == 0, retry.stderr
    assert retry.stdout.splitlines() == [
        "queued 1 skipped image(s) again (reason unsafe_path)",
        "left 1 skipped image(s) as they were: their file is gone",
    ]
    assert skip_kinds(tree) == {
        "linked.jpg": ("pending", None),
        "removed.jpg": ("skipped", "unsafe_path"),
    }

    second = run_cli("run", "-c", str(path), "--once")
    assert second.returncode == 0, second.stderr[-3000:]
    assert [r.file_name for r in api.requests] == ["linked.jpg"]
    assert len(hooks.delivered) == 1
    assert_alert(
        hooks.delivered[0],
        rule="package",
        camera="frontdoor",
        image=linked,
        matched=["parcel"],
        data=data,
    )
    assert skip_kinds(tree)["linked.jpg"] == ("done", None)

    # --reason belongs to --skipped.
    wrong = run_cli("retry", "-c", str(path), "--reason", "too_large")
    assert wrong.returncode == EX_USAGE
    assert "--reason: only with --skipped" in wrong.stderr


def test_caption_refuses_a_file_over_the_limit_in_the_daemons_words_without_reading_it(
    tree: Tree, api: StandinCaptionAPI, config: ConfigWriter
) -> None:
    # 4 GiB (sparse: no disk used) behind a JPEG's first bytes, under a 1.5 GB address-space
    # limit: reading it whole would fail with MemoryError, not with the refusal.
    huge = drop(tree.outside / "huge.jpg", image("A fox."))
    with huge.open("r+b") as handle:
        handle.truncate(4 << 30)
    argv = [sys.executable, "-m", "camwatch", "caption", str(huge), "-c", str(config.write())]
    result = subprocess.run(
        ["sh", "-c", 'ulimit -v 1500000 && exec "$@"', "sh", *argv],
        capture_output=True,
        text=True,
        env=daemon_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == EX_NOINPUT, result.stderr
    assert result.stderr.strip() == (
        f"camwatch: {huge}: skipped: {4 << 30} bytes > max_image_bytes 20000000"
        " (raise caption.max_image_bytes to caption it)"
    )
    assert result.stdout == ""
    assert api.count == 0
