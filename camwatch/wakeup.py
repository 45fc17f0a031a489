"""Waking the main loop from signal handlers and threads without taking a lock.

A signal handler runs in the main thread between two bytecodes, possibly while that thread holds
a lock: setting a threading.Event there can deadlock on the Event's own lock (the main loop
waits on and clears that Event). So signals reach the main loop through a socket pair instead:
`signal.set_wakeup_fd` makes the interpreter write a byte for every signal from C, and other
threads write one with `set()`; the main loop waits with `select`. Handlers only set flags.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket


class Wakeup:
    """A lock-free doorbell for one waiting thread (the main loop)."""

    def __init__(self) -> None:
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        self._old_fd: int | None = None

    def attach_signals(self) -> None:
        """Ring on every signal (call from the main thread)."""
        self._old_fd = signal.set_wakeup_fd(self._wsock.fileno(), warn_on_full_buffer=False)

    def set(self) -> None:
        """Ring the bell; never blocks (a full buffer already means "wake up")."""
        with contextlib.suppress(BlockingIOError, OSError):
            self._wsock.send(b"\0")

    def wait(self, timeout: float) -> bool:
        """Wait until rung or `timeout` seconds pass; return whether it was rung. Drains."""
        ready, _, _ = select.select([self._rsock], [], [], timeout)
        if not ready:
            return False
        with contextlib.suppress(BlockingIOError, OSError):
            while self._rsock.recv(4096):
                pass
        return True

    def close(self) -> None:
        """Stop ringing on signals and close the sockets."""
        if self._old_fd is not None:
            with contextlib.suppress(ValueError):
                signal.set_wakeup_fd(self._old_fd)
            self._old_fd = None
        self._rsock.close()
        self._wsock.close()
