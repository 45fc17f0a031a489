"""End to end: the real `camwatch run` speaking the systemd notify protocol to a fake
`$NOTIFY_SOCKET` (a datagram socket this test binds, by path or by abstract name), and
`camwatch run --daemon --pidfile P` / `camwatch stop --pidfile P` for hosts without systemd.

What systemd would see is checked from the outside: READY=1 only once the watches are in place,
WATCHDOG=1 at half of `WATCHDOG_USEC` while the pipeline is healthy (and none when `WATCHDOG_PID`
names another process), STATUS= lines, RELOADING=1 with MONOTONIC_USEC then READY=1 around SIGHUP,
STOPPING=1 and exit 0 within 10 s on SIGTERM.

A wedged pipeline stops the keep-alives only after `service.stall_limit(config)`, which is at
least 60 s whatever the configuration, so that test is opt-in (`CAMWATCH_SLOW_E2E=1`, ~75 s):
a caption API that dribbles its answer a byte at a time keeps a worker inside one request forever
(the request timeout is per read, and every read gets a byte in time).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from camwatch.testing import StandinCaptionAPI, WebhookReceiver

from .support import (
    START_TIMEOUT,
    WAIT,
    ConfigWriter,
    Daemon,
    Tree,
    assert_alert,
    drop,
    image,
    run_cli,
    wait_until,
)

WATCHDOG_USEC = 1_000_000  # WatchdogSec=1s: keep-alives every 0.5 s
STOP_LIMIT_S = 10.0  # the interface's promise from SIGTERM to exit

# -- a fake $NOTIFY_SOCKET -----------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """One datagram received: its fields in order, and when it arrived (`time.monotonic()`,
    `time.time()`)."""

    at: float
    wall: float
    fields: dict[str, str]

    def has(self, key: str, value: str | None = None) -> bool:
        """Return whether the datagram sets `key` (to `value`, if given)."""
        return key in self.fields and (value is None or self.fields[key] == value)


def _parse(data: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in data.decode("utf-8").split("\n"):
        if line:
            key, sep, value = line.partition("=")
            assert sep, f"not a KEY=VALUE line: {line!r} in {data!r}"
            fields[key] = value
    return fields


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket, read by a thread into a list.

    `name` is the value for `$NOTIFY_SOCKET`: a path, or `@name` for an abstract socket."""

    def __init__(self, name: str) -> None:
        self.name = name
        address = "\0" + name[1:] if name.startswith("@") else name
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._sock.bind(address)
        except OSError:
            self._sock.close()
            raise
        self._sock.settimeout(0.1)  # how soon the reader notices close()
        self._closing = threading.Event()
        self._cond = threading.Condition()
        self._items: list[Notification] = []
        self._thread = threading.Thread(target=self._read, name="e2e-notify-socket", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closing.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            item = Notification(time.monotonic(), time.time(), _parse(data))
            with self._cond:
                self._items.append(item)
                self._cond.notify_all()

    def close(self) -> None:
        """Stop the reader and close the socket (and remove its file, for a path)."""
        self._closing.set()
        self._thread.join(5.0)
        self._sock.close()
        if not self.name.startswith("@"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.name)

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def items(self) -> list[Notification]:
        """Every datagram so far (a copy)."""
        with self._cond:
            return list(self._items)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def wait_for(
        self,
        key: str,
        value: str | None = None,
        *,
        start: int = 0,
        timeout: float = WAIT,
        count: int = 1,
        predicate: Callable[[Notification], bool] | None = None,
    ) -> int:
        """Wait until `count` datagrams from index `start` on set `key` (to `value`; passing
        `predicate`). Return the index of the last of them. Fail the test after `timeout`."""

        def hits() -> list[int]:
            return [
                i
                for i in range(start, len(self._items))
                if self._items[i].has(key, value)
                and (predicate is None or predicate(self._items[i]))
            ]

        with self._cond:
            if self._cond.wait_for(lambda: len(hits()) >= count, timeout):
                return hits()[count - 1]
        pytest.fail(
            f"timed out after {timeout:g}s waiting for {count} x {key}={value or '*'} from "
            f"#{start}\n{self.dump()}"
        )

    def expect_none(self, key: str, *, start: int, within: float) -> None:
        """Fail the test if a datagram setting `key` arrives from index `start` on, within
        `within` seconds (a bounded wait for something that must not happen)."""
        with self._cond:
            self._cond.wait_for(
                lambda: any(i.has(key) for i in self._items[start:]), timeout=within
            )
            found = [i for i in self._items[start:] if i.has(key)]
        assert not found, f"unexpected {key}= within {within:g}s\n{self.dump()}"

    def times(self, key: str, value: str, start: int = 0, end: int | None = None) -> list[float]:
        """Return when each datagram setting `key` to `value` arrived, from `start` to `end`."""
        return [i.at for i in self.items[start:end] if i.has(key, value)]

    def dump(self, last: int = 40) -> str:
        """Return the last datagrams received, for a failure message."""
        items = self.items
        t0 = items[0].at if items else 0.0
        lines = [f"  +{i.at - t0:7.3f}s {i.fields}" for i in items[-last:]]
        return "notifications received:\n" + "\n".join(lines)


def _socket_name(kind: str, tmp_path: Path) -> str:
    if kind == "abstract":
        return f"@camwatch-e2e-{uuid.uuid4().hex}"
    path = tmp_path / "notify.sock"
    # sun_path holds 108 bytes; a deep pytest tmp_path could exceed it.
    assert len(os.fsencode(path)) < 100, f"socket path too long for AF_UNIX: {path}"
    return str(path)


@pytest.fixture
def spawn() -> Iterator[Callable[..., Daemon]]:
    """Return `spawn(config, env, own_watchdog_pid=False) -> Daemon` (started, not waited for).

    With `own_watchdog_pid`, the daemon is started through `sh -c 'WATCHDOG_PID=$$ exec ...'` so
    that WATCHDOG_PID is its own pid, as systemd sets it. Every daemon is stopped at the end, and
    none may have logged a traceback."""
    started: list[Daemon] = []

    def start(config: Path, env: dict[str, str], own_watchdog_pid: bool = False) -> Daemon:
        daemon = Daemon(config, (), env)
        if own_watchdog_pid:
            daemon.argv = ["sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh", *daemon.argv]
        started.append(daemon)
        return daemon.start(wait_ready=False)

    yield start
    for daemon in started:
        daemon.close()
    for daemon in started:
        assert not daemon.tracebacks(), f"the daemon logged a traceback\n{daemon.tail()}"


def _utc(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _max_gap(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


# -- the notify protocol, end to end -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "own_watchdog_pid"),
    [("path", False), ("abstract", True)],
    ids=["path-socket", "abstract-socket-watchdog-pid"],
)
def test_daemon_speaks_sd_notify_from_ready_to_stopping(
    kind: str,
    own_watchdog_pid: bool,
    tmp_path: Path,
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    spawn: Callable[..., Daemon],
) -> None:
    with NotifySocket(_socket_name(kind, tmp_path)) as notify:
        env = {"NOTIFY_SOCKET": notify.name, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
        daemon = spawn(config.write(), env, own_watchdog_pid=own_watchdog_pid)

        # READY=1 once the watches are in place: a file written the moment it arrives is seen.
        ready = notify.wait_for("READY", "1", timeout=START_TIMEOUT)
        data = image("A courier leaves a parcel on the doorstep.")
        path = drop(tree.frontdoor / "after-ready.jpg", data)
        ready_at = notify.items[ready]
        assert ready_at.fields.get("STATUS"), notify.dump()
        before = notify.items[:ready]
        assert not [n for n in before if n.has("WATCHDOG")], "keep-alive before READY=1"

        # ... and the log agrees: every camera was watched before the `ready` event, and
        # before READY=1 reached the socket.
        logged = daemon.wait_event("ready")
        events = daemon.events
        ready_index = events.index(logged)
        watched = {e["camera"]: i for i, e in enumerate(events) if e["event"] == "camera_watched"}
        assert set(watched) == {"frontdoor", "driveway"}, daemon.tail()
        assert all(i < ready_index for i in watched.values()), daemon.tail()
        for i in watched.values():
            assert _utc(events[i]["timestamp"]) <= ready_at.wall + 0.001, daemon.tail()

        assert hooks.wait_for_delivered(1, WAIT), daemon.tail()
        assert_alert(
            hooks.delivered[0],
            rule="package",
            camera="frontdoor",
            image=tree.cam("frontdoor") / "after-ready.jpg",
            matched=["parcel"],
            data=data,
        )
        assert path.exists()

        # STATUS= lines follow the pipeline: the queue, and the last image done.
        notify.wait_for(
            "STATUS", predicate=lambda n: "frontdoor:after-ready.jpg" in n.fields["STATUS"]
        )
        statuses = [n.fields["STATUS"] for n in notify.items if n.has("STATUS")]
        assert any(s.startswith("queue ") for s in statuses), notify.dump()

        # WATCHDOG=1 keeps coming, at half of WATCHDOG_USEC, while the pipeline is healthy (it
        # was busy with the image above, then idle).
        last = notify.wait_for("WATCHDOG", "1", start=ready, count=8, timeout=WAIT)
        keepalives = notify.times("WATCHDOG", "1", start=ready, end=last + 1)
        assert _max_gap([ready_at.at, *keepalives]) < WATCHDOG_USEC / 1e6, notify.dump()
        assert notify.items[last].fields == {"WATCHDOG": "1"}

        # SIGHUP: RELOADING=1 with the monotonic clock of the reload, then READY=1.
        mark = len(notify)
        hup_usec = _monotonic_usec()
        daemon.hup()
        reloading = notify.wait_for("RELOADING", "1", start=mark)
        fields = notify.items[reloading].fields
        assert "MONOTONIC_USEC" in fields, notify.dump()
        assert hup_usec <= int(fields["MONOTONIC_USEC"]) <= _monotonic_usec()
        reloaded = notify.wait_for("READY", "1", start=reloading + 1)
        assert not [n for n in notify.items[mark:reloading] if n.has("READY")], notify.dump()
        daemon.wait_event("reloaded")
        # The keep-alives go on after the reload.
        notify.wait_for("WATCHDOG", "1", start=reloaded + 1, count=2)

        # SIGTERM: STOPPING=1, then exit 0 within 10 s.
        mark = len(notify)
        code, seconds = daemon.terminate(timeout=STOP_LIMIT_S + 5)
        assert code == 0, daemon.tail()
        assert seconds < STOP_LIMIT_S, daemon.tail()
        stopping = notify.wait_for("STOPPING", "1", start=mark, timeout=5.0)
        assert not [n for n in notify.items[stopping:] if n.has("READY")], notify.dump()
        daemon.wait_event("stopped")
        assert len(notify.times("READY", "1")) == 2, notify.dump()


def test_no_keepalives_when_watchdog_pid_names_another_process(
    tmp_path: Path,
    config: ConfigWriter,
    spawn: Callable[..., Daemon],
) -> None:
    # systemd sets WATCHDOG_PID to the main process; a child that inherited the variables (a hook,
    # a shell wrapper that did not exec) must not send keep-alives on its behalf.
    with NotifySocket(_socket_name("path", tmp_path)) as notify:
        env = {
            "NOTIFY_SOCKET": notify.name,
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
            "WATCHDOG_PID": str(os.getpid()),  # this test's pid, not the daemon's
        }
        daemon = spawn(config.write(), env)
        ready = notify.wait_for("READY", "1", timeout=START_TIMEOUT)
        assert notify.items[ready].fields.get("STATUS"), notify.dump()
        daemon.wait_event("ready")
        notify.expect_none("WATCHDOG", start=0, within=4 * WATCHDOG_USEC / 1e6)
        mark = len(notify)
        code, seconds = daemon.terminate(timeout=STOP_LIMIT_S + 5)
        assert code == 0 and seconds < STOP_LIMIT_S, daemon.tail()
        notify.wait_for("STOPPING", "1", start=mark, timeout=5.0)


# -- a wedged pipeline (opt-in: the stall limit is at least 60 s) --------------------------------


class DribblingAPI:
    """An HTTP server on 127.0.0.1 that reads a request, then sends an endless header line one
    byte every `pace` seconds: each read of the client finishes well within its timeout, and the
    client's deadline on the body never starts, so the request never ends. Every connection is
    closed by `close()`."""

    def __init__(self, pace: float = 0.2) -> None:
        self.pace = pace
        self.arrived = threading.Event()
        self._closing = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, name="e2e-dribble", daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(
                target=self._dribble, args=(conn,), name="e2e-dribble-conn", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _dribble(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.5)
            received = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in received and not self._closing.is_set():
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    received += chunk
            self.arrived.set()
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: "
            with contextlib.suppress(OSError):
                conn.sendall(head)
                while not self._closing.wait(self.pace):
                    conn.sendall(b"a")

    def close(self) -> None:
        """Stop serving and close every connection."""
        self._closing.set()
        self._accept.join(5.0)
        for thread in self._threads:
            thread.join(5.0)
        self._listener.close()


@pytest.mark.skipif(
    os.environ.get("CAMWATCH_SLOW_E2E") != "1",
    reason="opt-in (CAMWATCH_SLOW_E2E=1): keep-alives stop only after the stall limit, >= 60 s",
)
def test_wedged_pipeline_stops_keepalives_after_the_stall_limit(
    tmp_path: Path,
    tree: Tree,
    config: ConfigWriter,
    spawn: Callable[..., Daemon],
) -> None:
    from camwatch.config import parse_config
    from camwatch.service import stall_limit

    dribble = DribblingAPI()
    try:
        data = config.data()
        data["caption"].update(
            base_url=dribble.url,
            timeout="1s",
            concurrency=1,
            retry={"attempts": 1, "backoff_initial": "50ms", "backoff_max": "50ms"},
        )
        limit = stall_limit(parse_config(data))
        assert limit < 65, limit
        with NotifySocket(_socket_name("path", tmp_path)) as notify:
            env = {"NOTIFY_SOCKET": notify.name, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
            daemon = spawn(config.write(data), env)
            notify.wait_for("READY", "1", timeout=START_TIMEOUT)
            daemon.wait_event("ready")
            drop(tree.frontdoor / "wedged.jpg", image("A parcel that never gets captioned."))
            assert dribble.arrived.wait(WAIT), daemon.tail()
            wedged_at = time.monotonic()

            # Busy and silent, but within the stall limit: keep-alives go on...
            mark = len(notify)
            notify.wait_for("WATCHDOG", "1", start=mark, count=4)
            # ... until the limit passes: one `pipeline_stalled`, then silence, so that systemd
            # restarts the service after WatchdogSec.
            daemon.wait_event("pipeline_stalled", timeout=limit + 20)
            stalled_at = time.monotonic()
            assert stalled_at - wedged_at >= limit - 1, (stalled_at - wedged_at, limit)
            last = notify.times("WATCHDOG", "1")[-1]
            assert last - wedged_at >= limit - 2, (last - wedged_at, limit)
            mark = len(notify)
            notify.expect_none("WATCHDOG", start=mark, within=4 * WATCHDOG_USEC / 1e6)
            assert len(daemon.named("pipeline_stalled")) == 1, daemon.tail()

            code, seconds = daemon.terminate(timeout=STOP_LIMIT_S + 5)
            assert code == 0 and seconds < STOP_LIMIT_S, daemon.tail()
    finally:
        dribble.close()


# -- camwatch run --daemon --pidfile P, camwatch stop --pidfile P --------------------------------


def _alive(pid: int) -> bool:
    """Return whether `pid` is a running process. A detached daemon is not our child, and an
    init that does not reap (some containers) leaves it a zombie: that counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            state = stat.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _log_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events


def _logged(path: Path, name: str, **fields: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in _log_events(path)
        if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
    ]


def test_run_daemon_with_a_pidfile_then_stop(
    tmp_path: Path,
    tree: Tree,
    hooks: WebhookReceiver,
    config: ConfigWriter,
) -> None:
    cfg = config.write()
    pidfile = tmp_path / "camwatch.pid"
    log_file = tree.state / "camwatch.log"  # the default: no log.file configured
    args = ("run", "-c", str(cfg), "--daemon", "--pidfile", str(pidfile))

    started = time.monotonic()
    result = run_cli(*args, timeout=START_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < START_TIMEOUT / 2, "the parent did not return quickly"
    pid = 0
    try:
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), message="pid file")
        pid = int(pidfile.read_text().strip())
        assert _alive(pid)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"camwatch" in cmdline and b"--daemon" in cmdline, cmdline
        # Detached: a session of its own (python-daemon forks twice, so it is not the leader).
        assert os.getsid(pid) != os.getsid(0)

        wait_until(lambda: _logged(log_file, "ready"), START_TIMEOUT, "`ready` in the log file")
        data = image("Someone collapsed on the porch.")
        drop(tree.frontdoor / "porch.jpg", data)
        assert hooks.wait_for_delivered(1, WAIT), log_file.read_text()
        assert_alert(
            hooks.delivered[0],
            rule="person-down",
            camera="frontdoor",
            image=tree.cam("frontdoor") / "porch.jpg",
            matched=["collapsed"],
            data=data,
        )
        wait_until(
            lambda: _logged(log_file, "image_captioned", camera="frontdoor"),
            message="`image_captioned` in the log file",
        )

        # A second daemon on the same pid file refuses, and leaves the first one alone.
        second = run_cli(*args, timeout=START_TIMEOUT)
        assert second.returncode != 0, second.stderr
        assert str(pid) in second.stderr, second.stderr
        assert pidfile.read_text().strip() == str(pid)
        assert _alive(pid)

        stop = run_cli("stop", "--pidfile", str(pidfile), timeout=30.0)
        assert stop.returncode == 0, stop.stderr
        assert not _alive(pid)
        assert not pidfile.exists()
        stopped = _logged(log_file, "stopped")
        assert stopped and stopped[-1]["signal"] == "SIGTERM", log_file.read_text()
        assert len(_logged(log_file, "ready")) == 1
        assert not [e for e in _log_events(log_file) if "exception" in e], log_file.read_text()
    finally:
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_run_daemon_logs_to_syslog_when_asked(
    tmp_path: Path,
    tree: Tree,
    hooks: WebhookReceiver,
    config: ConfigWriter,
) -> None:
    """With `log.syslog: true` nothing is written to the log file; the daemon still works.
    (What syslog received is not checked: that needs a syslog daemon on /dev/log.)"""
    cfg = config.write(log={"level": "info", "format": "json", "syslog": True})
    pidfile = tmp_path / "camwatch.pid"
    result = run_cli("run", "-c", str(cfg), "--daemon", "--pidfile", str(pidfile))
    assert result.returncode == 0, result.stderr
    pid = 0
    try:
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), message="pid file")
        pid = int(pidfile.read_text().strip())
        data = image("Someone collapsed on the porch.")
        drop(tree.frontdoor / "porch.jpg", data)
        assert hooks.wait_for_delivered(1, WAIT)
        stop = run_cli("stop", "--pidfile", str(pidfile), timeout=30.0)
        assert stop.returncode == 0, stop.stderr
        assert not (tree.state / "camwatch.log").exists()
    finally:
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)
