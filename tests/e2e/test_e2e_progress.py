"""Progress on long work, with the real daemon: `progress` summary lines while a burst is worked
through and one `burst_done` when it drains; the tqdm bar of `run --once` on a terminal (a real
pseudo-terminal), and no bar off one or with JSON logs."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from camwatch.progress import EVERY_ENV
from camwatch.testing import StandinCaptionAPI

from .support import ConfigWriter, Daemon, Tree, daemon_env, drop, image, run_cli

BURST = 80
# A bar row, as tqdm draws it: "images:  42%|####      | 25/60 [00:01<00:01, 19.8img/s]".
BAR = re.compile(r"images:\s+\d+%\|.*\| (\d+)/(\d+) \[")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def drop_burst(folder: Path, count: int, old: bool = False) -> list[Path]:
    """Write `count` distinct JPEGs that match no rule; `old`: with an old mtime, so that the
    start-up scan queues them at once."""
    paths = []
    for i in range(count):
        path = drop(folder / f"burst-{i:03d}.jpg", image(f"A quiet porch, frame {i}."))
        if old:
            os.utime(path, (1_700_000_000, 1_700_000_000))
        paths.append(path)
    return paths


def test_a_burst_gets_periodic_progress_lines_and_a_final_one(
    tree: Tree,
    api: StandinCaptionAPI,
    config: ConfigWriter,
    start_daemon: Callable[..., Daemon],
) -> None:
    # Two requests at once, 100 ms each: 80 images take about 4 s, several 1 s intervals.
    api.latency = 0.1
    daemon = start_daemon(config.write(), env={EVERY_ENV: "1"})
    drop_burst(tree.frontdoor, BURST)
    done = daemon.wait_event("burst_done", timeout=60)

    assert done["level"] == "info"
    assert done["done"] == BURST
    assert done["outcomes"] == {"captioned": BURST}
    assert done["elapsed_s"] >= 1.0
    assert done["rate"] > 0
    lines = daemon.named("progress")
    assert len(lines) >= 2, daemon.tail()
    for line in lines:
        assert line["level"] == "info"
        assert 0 < line["queued"] <= BURST
        assert 0 <= line["done"] < BURST
        assert line["done"] + line["queued"] <= BURST
        assert isinstance(line["rate"], int | float) and line["rate"] >= 0
        assert line["eta_s"] is None or (isinstance(line["eta_s"], int) and line["eta_s"] >= 0)
        assert set(line["outcomes"]) <= {"captioned"}
        assert sum(line["outcomes"].values()) == line["done"]
    assert [line["done"] for line in lines] == sorted(line["done"] for line in lines)
    assert lines[-1]["done"] > 0
    assert lines[-1]["rate"] > 0 and lines[-1]["eta_s"] is not None
    events = [e["event"] for e in daemon.events]
    assert events.index("burst_done") > max(i for i, e in enumerate(events) if e == "progress")
    assert len(daemon.named("image_captioned")) == BURST
    assert "<not json>" not in events  # no bar off a terminal

    # A single image afterwards: no summary of its own.
    drop(tree.frontdoor / "single.jpg", image("A quiet porch, one more."))
    daemon.wait_event("image_captioned", count=BURST + 1)
    code, _ = daemon.terminate()
    assert code == 0
    assert len(daemon.named("progress")) == len(lines)
    assert len(daemon.named("burst_done")) == 1


# -- run --once on a terminal ---------------------------------------------------------------------


def run_on_pty(argv: list[str], env: dict[str, str], timeout: float = 60.0) -> tuple[int, str]:
    """Run `argv` with its stderr (and stdout) on a new pseudo-terminal of 100 columns; return
    (exit status, everything written to the terminal). Fail the test after `timeout`."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, close_fds=True
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"still running after {timeout:g}s:\n{b''.join(chunks)[-3000:]!r}")
            ready, _, _ = select.select([master], [], [], min(left, 0.5))
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal has closed it
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def rows(output: str) -> list[str]:
    """Return what each terminal row finally shows: a `\\r` returns to the row's start, so
    the text after the last one on a row is what stays visible (tqdm redraws that way)."""
    plain = ANSI.sub("", output).replace("\r\n", "\n")
    return [row.rsplit("\r", 1)[-1] for row in plain.split("\n")]


def test_run_once_on_a_terminal_shows_a_bar_and_clean_log_lines(
    tree: Tree, api: StandinCaptionAPI, config: ConfigWriter
) -> None:
    count = 40
    api.latency = 0.05
    drop_burst(tree.frontdoor, count, old=True)
    path = config.write(log={"level": "info"})  # no format: console on a terminal
    argv = [sys.executable, "-m", "camwatch", "run", "-c", str(path), "--once"]
    code, output = run_on_pty(argv, daemon_env({"TERM": "xterm", "COLUMNS": "100"}))

    assert code == 0, output[-3000:]
    assert "img/s" in output
    shown = rows(output)
    bars = [m for row in shown if (m := BAR.search(row))]
    assert bars, output[-3000:]
    assert (bars[-1].group(1), bars[-1].group(2)) == (str(count), str(count))
    assert "100%|" in [row for row in shown if BAR.search(row)][-1]
    # Every per-image line is there, on a row of its own: none glued to a bar.
    captioned = [row for row in shown if "image_captioned" in row]
    assert len(captioned) == count, output[-3000:]
    for row in captioned:
        assert not BAR.search(row), row
        assert re.match(r"\d{4}-\d\d-\d\dT", row), row
    assert any("once_finished" in row for row in shown)


@pytest.mark.parametrize("where", ["json-on-a-terminal", "console-off-a-terminal"])
def test_run_once_shows_no_bar_with_json_logs_or_off_a_terminal(
    where: str, tree: Tree, api: StandinCaptionAPI, config: ConfigWriter
) -> None:
    drop_burst(tree.frontdoor, 5, old=True)
    if where == "json-on-a-terminal":
        path = config.write(log={"level": "info", "format": "json"})
        argv = [sys.executable, "-m", "camwatch", "run", "-c", str(path), "--once"]
        code, output = run_on_pty(argv, daemon_env({"TERM": "xterm"}))
    else:
        path = config.write(log={"level": "info", "format": "console"})
        result = run_cli("run", "-c", str(path), "--once")
        code, output = result.returncode, result.stderr
    assert code == 0, output[-3000:]
    assert "once_finished" in output
    assert "img/s" not in output and "%|" not in output
    if where == "json-on-a-terminal":
        lines = [line for line in output.replace("\r\n", "\n").split("\n") if line]
        assert all(json.loads(line) for line in lines)
