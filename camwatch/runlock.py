"""One daemon per `state_dir`: a lock held for as long as `camwatch run` runs.

Two daemons on one state database would each watch the folders and claim jobs; SQLite keeps the
rows consistent, but every event would be debounced twice and every camera scanned twice, and
`run --once` started beside a running daemon would report work it did not do. `flock` is released
by the kernel when the process dies, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from camwatch.errors import CamwatchError, StateError

LOCK_NAME = "camwatch.lock"


class AlreadyRunning(CamwatchError):
    """Another camwatch holds the lock on this `state_dir`."""


@contextmanager
def state_lock(state_dir: Path | str) -> Iterator[None]:
    """Hold the lock on `state_dir` (created if missing) for the duration of the block. Raise
    AlreadyRunning if another process holds it, StateError if it cannot be taken at all."""
    path = Path(state_dir) / LOCK_NAME
    try:
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise StateError(f"state_dir: cannot create {str(path)!r}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            who = f" as pid {holder}" if holder.isdigit() else ""
            raise AlreadyRunning(
                f"already running{who} with state_dir {str(state_dir)!r}; stop it first"
                " (one daemon per state_dir)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
