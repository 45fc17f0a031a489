"""The sd_notify protocol against real AF_UNIX datagram sockets, and the keep-alive policy."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from camwatch.sdnotify import Notifier, WatchdogGate, keepalive_allowed, watchdog_interval


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """Given a temporary folder, yield a bound datagram socket standing in for systemd's."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    try:
        yield str(path), sock
    finally:
        sock.close()


@pytest.fixture
def abstract_receiver() -> Iterator[tuple[str, socket.socket]]:
    """Yield `@name` and a datagram socket bound to that abstract name (no file involved)."""
    name = f"camwatch-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        yield "@" + name, sock
    finally:
        sock.close()


def _nothing_waiting(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        sock.recv(4096)
    except TimeoutError:
        return True
    return False


def test_send_writes_one_datagram_of_key_value_lines(receiver: tuple[str, socket.socket]) -> None:
    path, sock = receiver
    with Notifier(path) as notifier:
        assert notifier.enabled
        assert notifier.send(READY=1, STATUS="watching 2 cameras") is True
        assert sock.recv(4096) == b"READY=1\nSTATUS=watching 2 cameras\n"


def test_abstract_socket_is_reached_through_its_at_name(
    abstract_receiver: tuple[str, socket.socket],
) -> None:
    name, sock = abstract_receiver
    with Notifier(name) as notifier:
        notifier.ready("watching")
        assert sock.recv(4096) == b"READY=1\nSTATUS=watching\n"


def test_socket_path_defaults_to_the_environment(
    receiver: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sock = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    with Notifier() as notifier:
        assert notifier.socket_path == path
        notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1\n"


def test_each_helper_sends_its_message(receiver: tuple[str, socket.socket]) -> None:
    path, sock = receiver
    with Notifier(path) as notifier:
        notifier.ready()
        assert sock.recv(4096) == b"READY=1\n"
        notifier.status("queue 3, last caption 12:00:01")
        assert sock.recv(4096) == b"STATUS=queue 3, last caption 12:00:01\n"
        notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1\n"
        notifier.stopping()
        assert sock.recv(4096) == b"STOPPING=1\n"


def test_reloading_carries_the_monotonic_clock_in_microseconds(
    receiver: tuple[str, socket.socket],
) -> None:
    path, sock = receiver
    with Notifier(path) as notifier:
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        notifier.reloading()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = sock.recv(4096).decode().splitlines()
    assert lines[0] == "RELOADING=1"
    key, value = lines[1].split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after
    assert len(lines) == 2


def test_newlines_in_a_value_cannot_inject_assignments(
    receiver: tuple[str, socket.socket],
) -> None:
    path, sock = receiver
    with Notifier(path) as notifier:
        notifier.status("caption: a man\nREADY=1\r\nstanding")
    assert sock.recv(4096) == b"STATUS=caption: a man READY=1  standing\n"


def test_values_are_utf8_and_booleans_are_digits(receiver: tuple[str, socket.socket]) -> None:
    path, sock = receiver
    with Notifier(path) as notifier:
        notifier.send(READY=True, STATUS="café ☕", ERRNO=5)  # type: ignore[arg-type]
    assert sock.recv(4096) == "READY=1\nSTATUS=café ☕\nERRNO=5\n".encode()


def test_unset_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.send(READY=1) is False
    notifier.ready("x")
    notifier.status("x")
    notifier.watchdog()
    notifier.reloading()
    notifier.stopping()
    notifier.close()


def test_empty_socket_variable_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert not Notifier().enabled


def test_relative_or_vsock_address_is_refused_not_guessed() -> None:
    with capture_logs() as logs:
        assert not Notifier("relative/notify.sock").enabled
        assert not Notifier("vsock:2:1234").enabled
    assert [entry["event"] for entry in logs] == ["notify_socket_unsupported"] * 2


def test_send_with_no_fields_sends_nothing(receiver: tuple[str, socket.socket]) -> None:
    path, sock = receiver
    with Notifier(path) as notifier:
        assert notifier.send() is False
    assert _nothing_waiting(sock)


def _failures(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [entry for entry in logs if entry["event"] == "notify_failed"]


def test_missing_socket_fails_quietly_and_logs_once(tmp_path: Path) -> None:
    with capture_logs() as logs, Notifier(str(tmp_path / "gone.sock")) as notifier:
        assert notifier.send(WATCHDOG=1) is False
        assert notifier.send(WATCHDOG=1) is False
        notifier.watchdog()
    (failure,) = _failures(logs)
    assert failure["log_level"] == "warning"
    assert failure["notify_socket"] == str(tmp_path / "gone.sock")


def test_failure_is_logged_again_after_a_recovery(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with capture_logs() as logs, Notifier(str(path)) as notifier:
        assert notifier.send(WATCHDOG=1) is False  # not there yet: logged
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(path))
            assert notifier.send(WATCHDOG=1) is True
            assert sock.recv(4096) == b"WATCHDOG=1\n"
        path.unlink()
        assert notifier.send(WATCHDOG=1) is False  # gone again: logged again
    assert len(_failures(logs)) == 2


def test_close_makes_later_sends_no_ops(receiver: tuple[str, socket.socket]) -> None:
    path, sock = receiver
    notifier = Notifier(path)
    notifier.ready()
    assert sock.recv(4096) == b"READY=1\n"
    notifier.close()
    notifier.close()
    assert not notifier.enabled
    assert notifier.send(STOPPING=1) is False
    assert _nothing_waiting(sock)


def test_sends_reach_a_socket_recreated_at_the_same_path(tmp_path: Path) -> None:
    # systemd re-creates its notify socket on daemon-reexec; an unconnected sendto follows it.
    path = tmp_path / "notify.sock"
    with Notifier(str(path)) as notifier:
        for _ in range(2):
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.bind(str(path))
                sock.settimeout(2)
                notifier.watchdog()
                assert sock.recv(4096) == b"WATCHDOG=1\n"
            path.unlink()


# --- WATCHDOG_USEC / WATCHDOG_PID -------------------------------------------------------------


def test_watchdog_interval_is_half_the_timeout_in_seconds() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "1000"}) == 0.0005


def test_watchdog_interval_accepts_our_own_pid() -> None:
    env = {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(env) == 10.0


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"WATCHDOG_USEC": ""},
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "-5"},
        {"WATCHDOG_USEC": "60s"},
        {"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"},
        {"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "self"},
        {"WATCHDOG_PID": "1"},
    ],
)
def test_watchdog_interval_is_none_when_off_malformed_or_meant_for_another(
    env: dict[str, str],
) -> None:
    if env.get("WATCHDOG_PID") == "1" and os.getpid() == 1:
        pytest.skip("running as PID 1: '1' would be our own pid")
    assert watchdog_interval(env) is None


def test_watchdog_interval_reads_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 2.0


# --- the keep-alive policy --------------------------------------------------------------------


def test_idle_pipeline_is_healthy_however_old_its_last_progress() -> None:
    assert keepalive_allowed(now=10_000.0, last_progress=0.0, busy=False, stall_limit=60.0)


def test_busy_pipeline_is_healthy_only_within_the_stall_limit() -> None:
    assert keepalive_allowed(now=160.0, last_progress=100.0, busy=True, stall_limit=60.0)
    assert not keepalive_allowed(now=160.1, last_progress=100.0, busy=True, stall_limit=60.0)


def test_gate_does_not_call_fresh_work_after_a_long_idle_spell_stalled() -> None:
    gate = WatchdogGate(stall_limit=60.0)
    assert gate.allow(1000.0, last_progress=10.0, busy=False)
    # Work arrives; the last job finished long ago, yet the busy spell has only just begun.
    assert gate.allow(1001.0, last_progress=10.0, busy=True)
    assert gate.allow(1061.0, last_progress=10.0, busy=True)
    assert not gate.allow(1061.5, last_progress=10.0, busy=True)


def test_gate_stops_keepalives_when_busy_workers_stop_finishing_jobs() -> None:
    gate = WatchdogGate(stall_limit=30.0)
    assert gate.allow(0.0, last_progress=None, busy=True)
    assert gate.allow(20.0, last_progress=20.0, busy=True)  # a job finished
    assert gate.allow(50.0, last_progress=20.0, busy=True)
    assert not gate.allow(51.0, last_progress=20.0, busy=True)  # wedged: let systemd restart us
    assert not gate.allow(500.0, last_progress=20.0, busy=True)
    assert gate.allow(501.0, last_progress=501.0, busy=True)  # it moved again after all


def test_gate_with_no_progress_ever_counts_from_when_work_appeared() -> None:
    gate = WatchdogGate(stall_limit=10.0)
    assert gate.allow(5.0, last_progress=None, busy=True)
    assert gate.allow(15.0, last_progress=None, busy=True)
    assert not gate.allow(15.5, last_progress=None, busy=True)


def test_gate_forgets_a_busy_spell_once_idle() -> None:
    gate = WatchdogGate(stall_limit=10.0)
    assert gate.allow(0.0, last_progress=None, busy=True)
    assert not gate.allow(11.0, last_progress=None, busy=True)
    assert gate.allow(12.0, last_progress=None, busy=False)
    assert gate.allow(100.0, last_progress=None, busy=True)  # a new spell, a new clock


@pytest.mark.parametrize("limit", [0.0, -1.0])
def test_gate_needs_a_positive_stall_limit(limit: float) -> None:
    with pytest.raises(ValueError, match="stall_limit"):
        WatchdogGate(stall_limit=limit)
