"""The systemd notify protocol (sd_notify) with the standard library, and the watchdog policy.

Under `Type=notify` systemd passes `$NOTIFY_SOCKET`, an AF_UNIX datagram socket (a path, or an
abstract name written with a leading `@`). Each datagram is newline-separated `KEY=VALUE` lines:
`READY=1` once the watches are in place, `STATUS=...` for `systemctl status`, `WATCHDOG=1`
keep-alives, `RELOADING=1` + `MONOTONIC_USEC=...` around a reload and `STOPPING=1` on shutdown.
Without `$NOTIFY_SOCKET` (a terminal, `--daemon`, tests) every call is a no-op, so the daemon never
has to ask whether it runs under systemd.

A notification is a courtesy to the service manager, never a reason to fail: `send` does not raise,
and it logs a failure once (again only after a success), not once per keep-alive.

`WatchdogGate` decides whether a keep-alive may go out: the main loop is alive whenever it asks, so
the question is whether the pipeline behind it still moves. Idle, or a job finished recently: yes.
Work pending and nothing finished for longer than the stall limit: no, and systemd restarts the
service once `WatchdogSec=` passes without a keep-alive.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)

# A wedged service manager must not stall the main loop on a full socket buffer for long; a lost
# keep-alive costs nothing that the next one does not repair.
_SEND_TIMEOUT = 1.0


def _address(socket_path: str) -> str | None:
    """Given `$NOTIFY_SOCKET`, return the address for sendto (abstract names start with NUL), or
    None if it is not one this module can use (relative paths, `vsock:` of newer systemd)."""
    if socket_path.startswith("@"):
        return "\0" + socket_path[1:]
    if socket_path.startswith("/"):
        return socket_path
    return None


def _format(fields: Mapping[str, str | int]) -> bytes:
    """Given notification fields, return the datagram: one `KEY=VALUE` line per field, in order.

    A newline inside a value would start a new assignment that systemd would obey, so it becomes a
    space (STATUS texts quote captions and error messages, which may hold newlines)."""
    lines = []
    for key, value in fields.items():
        text = str(int(value)) if isinstance(value, bool) else str(value)
        lines.append(f"{key}={text.replace(chr(10), ' ').replace(chr(13), ' ')}\n")
    return "".join(lines).encode("utf-8")


class Notifier:
    """Sends sd_notify datagrams to `$NOTIFY_SOCKET`; does nothing when there is none.

    Thread-safe: the main loop sends keep-alives while workers may update the status line.
    """

    def __init__(self, socket_path: str | None = None) -> None:
        """Given the notify socket's path (`@name` for an abstract one), or None to read
        `$NOTIFY_SOCKET`, prepare a notifier; the socket itself is opened on the first send."""
        if socket_path is None:
            socket_path = os.environ.get("NOTIFY_SOCKET")
        self._path = socket_path or None
        self._address = _address(self._path) if self._path else None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failing = False
        self._closed = False
        if self._path and self._address is None:
            log.warning("notify_socket_unsupported", notify_socket=self._path)

    @property
    def enabled(self) -> bool:
        """Return whether notifications go anywhere (a usable `$NOTIFY_SOCKET` was given)."""
        return self._address is not None and not self._closed

    @property
    def socket_path(self) -> str | None:
        """Return the notify socket as given (`@name` for an abstract one), or None."""
        return self._path

    def send(self, **fields: str | int) -> bool:
        """Given fields such as `READY=1, STATUS="..."`, send them as one datagram and return
        whether it was sent. Never raise: a failure is logged once, until a send succeeds again."""
        address = self._address
        if not fields or address is None or self._closed:
            return False
        data = _format(fields)
        with self._lock:
            if self._closed:  # close() won the race; a send now would reopen a socket
                return False
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.settimeout(_SEND_TIMEOUT)
                self._sock.sendto(data, address)
            except OSError as exc:
                if not self._failing:
                    log.warning(
                        "notify_failed",
                        notify_socket=self._path,
                        fields=sorted(fields),
                        error=str(exc),
                    )
                self._failing = True
                return False
            self._failing = False
            return True

    def ready(self, status: str | None = None) -> None:
        """Tell systemd that start-up (or a reload) has finished, with an optional status line."""
        if status is None:
            self.send(READY=1)
        else:
            self.send(READY=1, STATUS=status)

    def status(self, text: str) -> None:
        """Given a one-line summary, show it in `systemctl status`."""
        self.send(STATUS=text)

    def watchdog(self) -> None:
        """Send one keep-alive; systemd restarts the service if none comes within WatchdogSec."""
        self.send(WATCHDOG=1)

    def reloading(self) -> None:
        """Tell systemd a reload has begun; `ready()` ends it.

        MONOTONIC_USEC lets `Type=notify-reload` (systemd 253+) tell this reload from a stale
        message; older systemd ignores it."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(RELOADING=1, MONOTONIC_USEC=usec)

    def stopping(self) -> None:
        """Tell systemd that shutdown has begun (it then stops expecting keep-alives)."""
        self.send(STOPPING=1)

    def close(self) -> None:
        """Close the socket; later sends are no-ops. Safe to call more than once."""
        with self._lock:
            self._closed = True
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Given the environment, return how often to send keep-alives in seconds (half of
    `WATCHDOG_USEC`, as sd_watchdog_enabled(3) advises), or None if the watchdog is off, the
    values are malformed, or `WATCHDOG_PID` names another process (a child that inherited it)."""
    raw_usec = environ.get("WATCHDOG_USEC")
    if not raw_usec:
        return None
    try:
        usec = int(raw_usec)
    except ValueError:
        return None
    if usec <= 0:
        return None
    raw_pid = environ.get("WATCHDOG_PID")
    if raw_pid:
        try:
            if int(raw_pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 2 / 1_000_000


def keepalive_allowed(now: float, last_progress: float, busy: bool, stall_limit: float) -> bool:
    """Given a monotonic time, when the pipeline last made progress, whether work is pending or in
    flight, and the longest silence a healthy pipeline can have, return whether a keep-alive may
    be sent: always when idle, else only while progress is at most `stall_limit` old."""
    if not busy:
        return True
    return now - last_progress <= stall_limit


class WatchdogGate:
    """The keep-alive policy with the one piece of memory it needs: when the pipeline got busy.

    Work arriving after a long idle spell must not look stalled at once, so a busy spell's clock
    starts at the later of the last progress and the moment work was first seen pending. Time is
    passed in, never read, so the policy is tested without sleeping.

    What counts as progress is the caller's to say; it should include any finished API try
    (success or failure), since a slow, retrying job is alive. While captioning is deliberately
    paused (bad key, no credits) the caller passes `busy=False`: waiting is then the healthy state.
    """

    def __init__(self, stall_limit: float) -> None:
        """Given the longest silence (seconds) a healthy busy pipeline can have, make a gate."""
        if stall_limit <= 0:
            raise ValueError(f"stall_limit must be positive, got {stall_limit!r}")
        self.stall_limit = stall_limit
        self._busy_since: float | None = None

    def allow(self, now: float, *, last_progress: float | None, busy: bool) -> bool:
        """Given a monotonic time, when a job last finished (None: never), and whether work is
        pending or in flight, return whether a keep-alive may be sent now."""
        if not busy:
            self._busy_since = None
            return True
        if self._busy_since is None:
            self._busy_since = now
        since = self._busy_since if last_progress is None else max(last_progress, self._busy_since)
        return keepalive_allowed(now, since, busy, self.stall_limit)
