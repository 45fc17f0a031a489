"""Durable state in SQLite (WAL): images, the caption queue, the alert outbox, cooldowns.

Nothing else in camwatch touches SQL. One connection behind a lock, explicit transactions, and a
schema versioned by `PRAGMA user_version` with a list of migrations.

An image's life: pending -> captioning -> done | failed | skipped. The pending rows ARE the queue,
so a crash loses nothing: at start, `recover()` turns captioning rows back into pending ones, and
undelivered alerts stay in the outbox with their event id until delivered or expired.

`synchronous=NORMAL` in WAL mode survives a kill -9 of the daemon; after a power cut the last
transactions may be lost but the database is never corrupt, and the start-up scan re-queues any
file whose record was lost, so the guarantee stays "at least once".
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camwatch.errors import StateError

SCHEMA_VERSION = 2
FINAL_STATES = ("done", "failed", "skipped")

_MIGRATIONS: list[list[str]] = [
    # version 0 -> 1: the first schema
    [
        """CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            camera TEXT NOT NULL,
            path TEXT NOT NULL,
            relpath TEXT NOT NULL,
            size INTEGER,
            mtime_ns INTEGER,
            sha256 TEXT,
            state TEXT NOT NULL,
            prio INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL DEFAULT 0,
            last_error TEXT,
            caption TEXT,
            tokens_input INTEGER,
            tokens_output INTEGER,
            tokens_total INTEGER,
            detected_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            captioned_at REAL
        )""",
        # At most one queued row per file; a file re-written while being captioned queues again.
        "CREATE UNIQUE INDEX images_one_pending ON images(camera, path) WHERE state = 'pending'",
        "CREATE INDEX images_queue ON images(prio, id) WHERE state = 'pending'",
        "CREATE INDEX images_path ON images(camera, path, state)",
        "CREATE INDEX images_updated ON images(updated_at)",
        """CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL,
            image_id INTEGER,
            rule TEXT NOT NULL,
            camera TEXT NOT NULL,
            target_kind TEXT NOT NULL,
            target TEXT NOT NULL,
            body TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            last_error TEXT,
            created_at REAL NOT NULL,
            delivered_at REAL,
            UNIQUE (event_id, target_kind, target)
        )""",
        "CREATE INDEX alerts_due ON alerts(target_kind, target, next_at) WHERE state = 'pending'",
        "CREATE INDEX alerts_created ON alerts(created_at)",
        """CREATE TABLE cooldowns (
            rule TEXT NOT NULL,
            camera TEXT NOT NULL,
            last_at REAL NOT NULL,
            PRIMARY KEY (rule, camera)
        )""",
    ],
    # version 1 -> 2: silent cameras (issue 9)
    [
        # The latest image of a camera, found without reading all of its rows.
        "CREATE INDEX images_camera_detected ON images(camera, detected_at)",
        # A camera whose silence was announced: no second alert until it is back, across restarts.
        """CREATE TABLE camera_silence (
            camera TEXT PRIMARY KEY,
            silent_since REAL NOT NULL,
            event_id TEXT NOT NULL
        )""",
    ],
]


@dataclass(frozen=True, slots=True)
class NewImage:
    """A file handed to the queue."""

    camera: str
    path: str
    relpath: str
    size: int
    mtime_ns: int
    detected_at: float
    prio: int = 0  # 0 = seen live, 1 = found by the start-up scan (live images go first)


@dataclass(frozen=True)
class ImageJob:
    """A claimed queue row: one image to caption."""

    id: int
    camera: str
    path: str
    relpath: str
    size: int | None
    mtime_ns: int | None
    attempts: int
    detected_at: float


@dataclass(frozen=True)
class AlertCandidate:
    """An alert decided by the rules, to be written with the caption in one transaction."""

    event_id: str
    rule: str
    camera: str
    cooldown: float
    targets: list[tuple[str, str]]  # (kind, name): ("webhook", "ops"), ("notify", "phones")
    body: str  # the webhook body
    messages: dict[str, str] = field(default_factory=dict)  # notify target -> its message


@dataclass(frozen=True)
class OutboxRow:
    """An alert not yet delivered to one target."""

    id: int
    event_id: str
    rule: str
    camera: str
    body: str
    attempts: int
    created_at: float


@dataclass(frozen=True)
class CaptionRecord:
    """A stored caption, for `camwatch replay`."""

    camera: str
    path: str
    caption: str
    captioned_at: float


def _state_error(exc: sqlite3.Error) -> StateError:
    text = str(exc)
    if "full" in text:
        return StateError(f"state database: disk full ({text})")
    if "readonly" in text or "read-only" in text:
        return StateError(f"state database: read-only ({text})")
    return StateError(f"state database: {text}")


def db_path(path: str) -> str | bytes:
    """Given a path as the OS gave it (undecodable bytes surrogate-escaped), return what is
    stored: the text itself, or its raw bytes (a BLOB) when it is not valid UTF-8, as names
    written by a legacy Latin-1 FTP or SMB client are. Lossless both ways, and a BLOB never
    equals a TEXT, so two names cannot collide."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def py_path(value: str | bytes) -> str:
    """Given a stored path, return it as the OS-facing `str` again."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _queue_alert(
    db: sqlite3.Connection, alert: AlertCandidate, image_id: int | None, now: float
) -> None:
    """Put one alert in the outbox, a row per target (inside the caller's transaction)."""
    for kind, target in alert.targets:
        body = alert.messages.get(target, alert.body) if kind == "notify" else alert.body
        db.execute(
            "INSERT OR IGNORE INTO alerts (event_id, image_id, rule, camera, target_kind, target,"
            " body, state, next_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            (alert.event_id, image_id, alert.rule, alert.camera, kind, target, body, now, now),
        )


class Store:
    """The state database in `state_dir/camwatch.db`."""

    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(state_dir) / "camwatch.db"
        self._clock = clock
        self._lock = threading.Lock()
        try:
            Path(state_dir).mkdir(parents=True, exist_ok=True)
            if not os.access(state_dir, os.W_OK):
                # SQLite would only say "unable to open database file".
                raise StateError(
                    f"state_dir: {str(state_dir)!r} is not writable"
                    " (read-only file system or permissions)"
                )
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"state_dir: cannot open {str(self.path)!r}: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            # Fail now, not on the first image, if the database cannot be written.
            with self._tx() as db:
                db.execute("CREATE TABLE IF NOT EXISTS probe (x)")
        except (sqlite3.Error, StateError) as exc:
            self._db.close()
            if isinstance(exc, StateError):
                raise
            raise StateError(f"state_dir: cannot use {str(self.path)!r}: {exc}") from None

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _state_error(exc) from None
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _state_error(exc) from None
                raise

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(args)).fetchall()
            except sqlite3.Error as exc:
                raise _state_error(exc) from None

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state database {str(self.path)!r} has schema {version}, newer than this"
                f" camwatch ({SCHEMA_VERSION}): upgrade camwatch"
            )
        for target in range(version, SCHEMA_VERSION):
            with self._tx() as db:
                for statement in _MIGRATIONS[target]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {target + 1}")

    # -- the queue ------------------------------------------------------------------------------

    def add_pending(self, images: Iterable[NewImage]) -> int:
        """Given files, queue each one that is not already queued and not already finished with
        the same size and mtime. Return how many were queued."""
        now = self._clock()
        added = 0
        with self._tx() as db:
            for image in images:
                row = db.execute(
                    "SELECT size, mtime_ns FROM images WHERE camera = ? AND path = ?"
                    " AND state IN ('done', 'failed', 'skipped') ORDER BY id DESC LIMIT 1",
                    (image.camera, db_path(image.path)),
                ).fetchone()
                if row is not None and row == (image.size, image.mtime_ns):
                    continue
                cur = db.execute(
                    "INSERT OR IGNORE INTO images (camera, path, relpath, size, mtime_ns, state,"
                    " prio, detected_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                    (
                        image.camera,
                        db_path(image.path),
                        db_path(image.relpath),
                        image.size,
                        image.mtime_ns,
                        image.prio,
                        image.detected_at,
                        now,
                    ),
                )
                added += cur.rowcount
        return added

    def claim(self) -> ImageJob | None:
        """Return the next due queued image, now marked captioning, or None."""
        now = self._clock()
        with self._tx() as db:
            row = db.execute(
                "SELECT id, camera, path, relpath, size, mtime_ns, attempts, detected_at"
                " FROM images WHERE state = 'pending' AND next_at <= ? ORDER BY prio, id LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE images SET state = 'captioning', updated_at = ? WHERE id = ?",
                (now, row[0]),
            )
        return ImageJob(row[0], row[1], py_path(row[2]), py_path(row[3]), *row[4:])

    def next_due(self) -> float | None:
        """Return when the earliest queued image becomes due, or None if the queue is empty."""
        row = self._read("SELECT MIN(next_at) FROM images WHERE state = 'pending'")
        return row[0][0]

    def release(self, image_id: int, next_at: float, error: str | None, charge: bool) -> int:
        """Put a claimed image back in the queue, due at `next_at`; with `charge`, count the
        attempt. Return the image's attempts so far."""
        with self._tx() as db:
            db.execute(
                "UPDATE images SET state = 'pending', next_at = ?, last_error = ?,"
                " attempts = attempts + ?, updated_at = ? WHERE id = ?",
                (next_at, error, 1 if charge else 0, self._clock(), image_id),
            )
            row = db.execute("SELECT attempts FROM images WHERE id = ?", (image_id,)).fetchone()
        return int(row[0]) if row else 0

    def finish(
        self,
        image_id: int,
        state: str,
        error: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
        mtime_ns: int | None = None,
    ) -> None:
        """Mark an image failed or skipped (with its reason), keeping what was learnt of it."""
        assert state in ("failed", "skipped")
        with self._tx() as db:
            db.execute(
                "UPDATE images SET state = ?, last_error = ?, sha256 = COALESCE(?, sha256),"
                " size = COALESCE(?, size), mtime_ns = COALESCE(?, mtime_ns), updated_at = ?"
                " WHERE id = ?",
                (state, error, sha256, size, mtime_ns, self._clock(), image_id),
            )

    def is_done(self, camera: str, path: str, sha256: str) -> bool:
        """Return whether this camera's file at `path` with these bytes was already captioned."""
        rows = self._read(
            "SELECT 1 FROM images WHERE camera = ? AND path = ? AND state = 'done'"
            " AND sha256 = ? LIMIT 1",
            (camera, db_path(path), sha256),
        )
        return bool(rows)

    def complete(
        self,
        image_id: int,
        sha256: str,
        size: int,
        mtime_ns: int,
        caption: str,
        tokens: tuple[int, int, int],
        alerts: list[AlertCandidate],
    ) -> list[tuple[AlertCandidate, bool]]:
        """Record an image's caption and queue its alerts in one transaction, applying each
        rule's cooldown per camera. Return each candidate with whether it was queued (False:
        cooled down)."""
        now = self._clock()
        decided: list[tuple[AlertCandidate, bool]] = []
        with self._tx() as db:
            db.execute(
                "UPDATE images SET state = 'done', sha256 = ?, size = ?, mtime_ns = ?,"
                " caption = ?, tokens_input = ?, tokens_output = ?, tokens_total = ?,"
                " last_error = NULL, captioned_at = ?, updated_at = ? WHERE id = ?",
                (sha256, size, mtime_ns, caption, *tokens, now, now, image_id),
            )
            for alert in alerts:
                row = db.execute(
                    "SELECT last_at FROM cooldowns WHERE rule = ? AND camera = ?",
                    (alert.rule, alert.camera),
                ).fetchone()
                if row is not None and alert.cooldown > 0 and now - row[0] < alert.cooldown:
                    decided.append((alert, False))
                    continue
                db.execute(
                    "INSERT INTO cooldowns (rule, camera, last_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (rule, camera) DO UPDATE SET last_at = excluded.last_at",
                    (alert.rule, alert.camera, now),
                )
                _queue_alert(db, alert, image_id, now)
                decided.append((alert, True))
        return decided

    # -- silent cameras -------------------------------------------------------------------------

    def last_image_at(self, camera: str) -> float | None:
        """Return when the latest image of `camera` was first seen, or None."""
        rows = self._read("SELECT MAX(detected_at) FROM images WHERE camera = ?", (camera,))
        return rows[0][0]

    def silent_cameras(self) -> dict[str, float]:
        """Return each camera whose silence was announced, with since when it is silent."""
        return dict(self._read("SELECT camera, silent_since FROM camera_silence"))

    def mark_silent(self, alert: AlertCandidate, since: float) -> None:
        """Record that a camera went silent and queue the alert saying so, in one transaction."""
        now = self._clock()
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO camera_silence (camera, silent_since, event_id)"
                " VALUES (?, ?, ?)",
                (alert.camera, since, alert.event_id),
            )
            _queue_alert(db, alert, None, now)

    def mark_back(self, alert: AlertCandidate) -> None:
        """Record that a silent camera sent an image again and queue the alert saying so."""
        now = self._clock()
        with self._tx() as db:
            db.execute("DELETE FROM camera_silence WHERE camera = ?", (alert.camera,))
            _queue_alert(db, alert, None, now)

    def recover(self) -> int:
        """At start: put images left captioning by a crash back in the queue. Return how many."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE images SET state = 'pending', next_at = 0 WHERE state = 'captioning'"
                " AND NOT EXISTS (SELECT 1 FROM images AS p WHERE p.state = 'pending'"
                " AND p.camera = images.camera AND p.path = images.path)"
            )
            # A file queued again while its older row was in flight: the newer row suffices.
            db.execute(
                "UPDATE images SET state = 'skipped', last_error = 'superseded'"
                " WHERE state = 'captioning'"
            )
            return cur.rowcount

    def retry_failed(self, camera: str | None = None) -> int:
        """Queue failed images again (all, or one camera's). Return how many."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE OR IGNORE images SET state = 'pending', attempts = 0, next_at = 0,"
                " updated_at = ? WHERE state = 'failed' AND (? IS NULL OR camera = ?)",
                (self._clock(), camera, camera),
            )
            return cur.rowcount

    def known_files(self, camera: str) -> dict[str, tuple[int | None, int | None, str]]:
        """Return, for the start-up scan, each path of `camera` with a record: its latest
        (size, mtime_ns, state)."""
        rows = self._read(
            "SELECT path, size, mtime_ns, state FROM images WHERE camera = ? ORDER BY id",
            (camera,),
        )
        return {py_path(path): (size, mtime, state) for path, size, mtime, state in rows}

    def skip_pending_of(self, cameras: set[str]) -> int:
        """Mark skipped every queued image of a camera no longer configured. Return how many."""
        with self._tx() as db:
            marks = ",".join("?" * len(cameras))
            cur = db.execute(
                "UPDATE images SET state = 'skipped', last_error = 'camera not configured'"
                f" WHERE state = 'pending' AND camera NOT IN ({marks})",
                tuple(cameras),
            )
            return cur.rowcount

    def counts(self) -> dict[str, int]:
        """Return how many images are in each state, and `alerts_pending`."""
        rows = self._read("SELECT state, COUNT(*) FROM images GROUP BY state")
        counts = {state: n for state, n in rows}
        counts["alerts_pending"] = self._read(
            "SELECT COUNT(*) FROM alerts WHERE state = 'pending'"
        )[0][0]
        return counts

    def queue_length(self) -> int:
        """Return how many images wait in the queue or are being captioned."""
        rows = self._read("SELECT COUNT(*) FROM images WHERE state IN ('pending', 'captioning')")
        return int(rows[0][0])

    def captions(self, since: float, camera: str | None = None) -> list[CaptionRecord]:
        """Return stored captions of images captioned at or after `since`, oldest first."""
        rows = self._read(
            "SELECT camera, path, caption, captioned_at FROM images WHERE state = 'done'"
            " AND captioned_at >= ? AND (? IS NULL OR camera = ?) ORDER BY captioned_at",
            (since, camera, camera),
        )
        return [CaptionRecord(c, py_path(p), caption, at) for c, p, caption, at in rows]

    # -- the outbox -----------------------------------------------------------------------------

    def due_alerts(self, kind: str, target: str, limit: int = 50) -> list[OutboxRow]:
        """Return the alerts for one target that are due now, oldest first."""
        rows = self._read(
            "SELECT id, event_id, rule, camera, body, attempts, created_at FROM alerts"
            " WHERE state = 'pending' AND target_kind = ? AND target = ? AND next_at <= ?"
            " ORDER BY id LIMIT ?",
            (kind, target, self._clock(), limit),
        )
        return [OutboxRow(*row) for row in rows]

    def next_alert_due(self, kind: str, target: str) -> float | None:
        """Return when the earliest undelivered alert for a target becomes due, or None."""
        rows = self._read(
            "SELECT MIN(next_at) FROM alerts WHERE state = 'pending' AND target_kind = ?"
            " AND target = ?",
            (kind, target),
        )
        return rows[0][0]

    def delivered(self, alert_id: int) -> None:
        """Mark an alert delivered."""
        with self._tx() as db:
            db.execute(
                "UPDATE alerts SET state = 'delivered', delivered_at = ?, attempts = attempts + 1"
                " WHERE id = ?",
                (self._clock(), alert_id),
            )

    def postpone(self, alert_id: int, next_at: float, error: str) -> None:
        """Record a failed delivery; try again at `next_at`."""
        with self._tx() as db:
            db.execute(
                "UPDATE alerts SET attempts = attempts + 1, next_at = ?, last_error = ?"
                " WHERE id = ?",
                (next_at, error, alert_id),
            )

    def expire(self, alert_id: int, error: str) -> None:
        """Give up on an alert that stayed undelivered past its maximum age."""
        with self._tx() as db:
            db.execute(
                "UPDATE alerts SET state = 'expired', last_error = ? WHERE id = ?",
                (error, alert_id),
            )

    def drop_alerts_for(self, kind: str, known: set[str]) -> int:
        """Expire undelivered alerts whose target is no longer configured. Return how many."""
        marks = ",".join("?" * len(known)) or "''"
        with self._tx() as db:
            cur = db.execute(
                "UPDATE alerts SET state = 'expired', last_error = 'target not configured'"
                f" WHERE state = 'pending' AND target_kind = ? AND target NOT IN ({marks})",
                (kind, *known),
            )
            return cur.rowcount

    # -- housekeeping ---------------------------------------------------------------------------

    def prune(self, retention: float, exists: Callable[[str], bool] = os.path.lexists) -> int:
        """Delete delivered or expired alerts, and finished image records, older than
        `retention` seconds. An image record whose file is still on disk is kept, so that the
        start-up scan does not caption it again. Return how many rows were deleted."""
        cutoff = self._clock() - retention
        deleted = 0
        with self._tx() as db:
            deleted += db.execute(
                "DELETE FROM alerts WHERE state IN ('delivered', 'expired') AND created_at < ?",
                (cutoff,),
            ).rowcount
        old = self._read(
            "SELECT id, path FROM images WHERE state IN ('done', 'failed', 'skipped')"
            " AND updated_at < ? AND id NOT IN (SELECT image_id FROM alerts"
            " WHERE state = 'pending' AND image_id IS NOT NULL)",
            (cutoff,),
        )
        gone = [(image_id,) for image_id, path in old if not exists(py_path(path))]
        if gone:
            with self._tx() as db:
                db.executemany("DELETE FROM images WHERE id = ?", gone)
            deleted += len(gone)
        return deleted
