"""A full disk under `state_dir`: clear errors, no busy loop, no corrupt database, and every image
and alert goes through once space is back.

The daemon runs in a private mount namespace (`unshare --mount`) whose `state_dir` is a small
tmpfs; the test fills it through `/proc/PID/root`, which shows that namespace's files. Needs root
and util-linux's `unshare`; skipped otherwise.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from camwatch.testing import WebhookReceiver

from .support import ConfigWriter, Daemon, Tree, drop, image, wait_until

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) to mount a private tmpfs",
)


def _fill(folder: Path) -> Path:
    """Fill the file system holding `folder` until it reports ENOSPC; return the filler."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb") as handle:
        for _ in range(100_000):  # bounded: 6 GiB at most, far above the tmpfs size
            try:
                handle.write(chunk)
                handle.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    return filler


def test_full_state_disk_is_waited_out(
    tree: Tree,
    api: object,
    hooks: WebhookReceiver,
    config: ConfigWriter,
) -> None:
    daemon = Daemon(config.write())
    inner = " ".join(f"'{a}'" for a in daemon.argv)
    script = f"mount -t tmpfs -o size=8m camwatch-test '{tree.state}' && exec {inner}"
    daemon.argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    try:
        daemon.start()
        _scenario(daemon, tree, hooks)
    finally:
        daemon.close()
    assert not daemon.tracebacks(), daemon.tail()


def _scenario(daemon: Daemon, tree: Tree, hooks: WebhookReceiver) -> None:
    state = Path(f"/proc/{daemon.pid}/root{tree.state}")

    drop(tree.frontdoor / "before.jpg", image("A person is lying on the ground."))
    wait_until(lambda: len(hooks.received) == 1, 30, "first alert")

    filler = _fill(state)
    drop(tree.frontdoor / "during.jpg", image("A person has collapsed near the door."))
    daemon.wait_event("queue_write_failed", timeout=30)
    errors_then = sum(1 for e in daemon.events if e.get("level") == "error")
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # observe for a while: errors must not pile up
        time.sleep(0.1)
    errors_now = sum(1 for e in daemon.events if e.get("level") == "error")
    assert errors_now - errors_then <= 6, daemon.tail()
    assert len(hooks.received) == 1

    filler.unlink()
    wait_until(lambda: len(hooks.received) == 2, 30, "alert after space came back")
    alert = hooks.received[1].json
    assert alert["rule"] == "person-down"
    assert alert["image"] == str(tree.cam("frontdoor") / "during.jpg")

    # A copy (the daemon is idle now): the tmpfs exists only inside the daemon's namespace.
    copy = tree.root / "copy"
    copy.mkdir()
    for name in ("camwatch.db", "camwatch.db-wal"):
        if (state / name).exists():
            shutil.copyfile(state / name, copy / name)
    db = sqlite3.connect(copy / "camwatch.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()
    code, seconds = daemon.terminate()
    assert code == 0 and seconds < 10
