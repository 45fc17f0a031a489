"""What the running daemon is doing now, read at once from its parts: the numbers `/metrics`
reports as gauges and `/healthz` judges.

Nothing here is kept in sync by hand: each look reads the state database (a read-only connection
of its own, so that a scrape never waits for the workers' write lock), the caption gate, the
watcher and the worker pool as they are at that moment.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from camwatch.config import Config
from camwatch.errors import StateError
from camwatch.gate import CaptionGate
from camwatch.store import report
from camwatch.store.readonly import connect_readonly


@dataclass(frozen=True)
class CameraLook:
    """One configured camera."""

    name: str
    mode: str | None  # "inotify" or "poll"; None: its folder is not watched now
    reason: str | None  # why not, as last logged
    last_image_at: float | None  # when its latest image was first seen (None: never, unknown)


@dataclass(frozen=True)
class Look:
    """The daemon at one moment. The database's part is None when it could not be read, and
    `database_error` says why."""

    at: float
    gate: str  # "closed", "open" (an outage) or "paused" (bad key, no credits)
    gate_reason: str | None
    cameras: list[CameraLook]
    targets: list[str]  # the configured alert targets, by name
    busy: int  # images being worked on
    settling: int  # files waiting to be quiet and whole
    queue: int | None = None
    backlogs: list[report.Backlog] = field(default_factory=list)
    dead: list[report.DeadLetters] = field(default_factory=list)
    database_error: str | None = None


@dataclass(frozen=True)
class Parts:
    """The parts of the service a look reads (callables: a reload replaces some of them)."""

    state_dir: Path
    config: Callable[[], Config]
    gate: CaptionGate
    watching: Callable[[], dict[str, tuple[str | None, str | None]]]  # name: (mode, reason)
    busy: Callable[[], int]
    settling: Callable[[], int]


class ServiceView:
    """Takes looks at the running service; thread-safe (one look at a time)."""

    def __init__(self, parts: Parts, clock: Callable[[], float] = time.time) -> None:
        self.parts = parts
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def look(self) -> Look:
        """Return the service as it is now."""
        parts = self.parts
        config = parts.config()
        watching = parts.watching()
        with self._lock:
            try:
                queue, backlogs, dead, last = self._read([c.name for c in config.cameras])
                error = None
            except (sqlite3.Error, StateError) as exc:
                self._close()  # opened again at the next look
                queue, backlogs, dead, last, error = None, [], [], {}, str(exc)
        cameras = [
            CameraLook(c.name, *watching.get(c.name, (None, "not watched yet")), last.get(c.name))
            for c in config.cameras
        ]
        targets = sorted({t.name for t in (*config.webhooks, *config.notify)})
        return Look(
            at=self._clock(),
            gate=str(parts.gate.state),
            gate_reason=parts.gate.reason,
            cameras=cameras,
            targets=targets,
            busy=parts.busy(),
            settling=parts.settling(),
            queue=queue,
            backlogs=backlogs,
            dead=dead,
            database_error=error,
        )

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._close()

    def _read(
        self, cameras: list[str]
    ) -> tuple[int, list[report.Backlog], list[report.DeadLetters], dict[str, float | None]]:
        if self._db is None:
            self._db = connect_readonly(self.parts.state_dir)
        db = self._db
        with report.snapshot(db):
            return (
                report.queue_depth(db),
                report.backlogs(db),
                report.dead_letters(db),
                {name: report.last_image_at(db, name) for name in cameras},
            )

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
