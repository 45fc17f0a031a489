"""The caption queue: the images table. The pending rows ARE the queue.

An image's life: pending -> captioning -> done | failed | skipped. A crash loses nothing: at
start, `recover()` turns captioning rows back into pending ones.
"""

from __future__ import annotations

from collections.abc import Iterable

from camwatch.store.database import Database
from camwatch.store.outbox import queue_alert
from camwatch.store.records import (
    AlertCandidate,
    ImageJob,
    ImageState,
    NewImage,
    SkipKind,
    db_path,
    py_path,
)


class Queue(Database):
    """The images: queued, in flight, and finished with their captions."""

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
            # Not a file whose older row is being captioned right now (queued again by a rescan
            # after lost events, or rewritten meanwhile): two workers would caption it at once,
            # and both answers would alert. Once that one is done, this row is claimed, and the
            # pipeline's sha256 check ends it if the bytes were the same.
            row = db.execute(
                "SELECT id, camera, path, relpath, size, mtime_ns, attempts, detected_at"
                " FROM images WHERE state = 'pending' AND next_at <= ? AND NOT EXISTS"
                " (SELECT 1 FROM images AS c WHERE c.camera = images.camera"
                " AND c.path = images.path AND c.state = 'captioning')"
                " ORDER BY prio, id LIMIT 1",
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
            # The file was queued again while this row was in flight: the newer row suffices
            # (and a second pending row of one file is what the unique index forbids).
            superseded = db.execute(
                "UPDATE images SET state = 'skipped', last_error = 'superseded',"
                " skip_kind = 'superseded', updated_at = ? WHERE id = ? AND EXISTS"
                " (SELECT 1 FROM images AS p WHERE p.state = 'pending'"
                " AND p.camera = images.camera AND p.path = images.path)",
                (self._clock(), image_id),
            ).rowcount
            if not superseded:
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
        state: ImageState,
        error: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
        mtime_ns: int | None = None,
        kind: SkipKind | None = None,
        deduped_of: int | None = None,
    ) -> None:
        """Mark an image failed or skipped (with its reason, and for a skipped one the kind of
        reason and, for a near duplicate, the captioned image it matched), keeping what was
        learnt of it."""
        assert state in (ImageState.FAILED, ImageState.SKIPPED)
        skip_kind = kind if state == ImageState.SKIPPED and kind != SkipKind.UNKNOWN else None
        with self._tx() as db:
            db.execute(
                "UPDATE images SET state = ?, last_error = ?, skip_kind = ?, deduped_of = ?,"
                " sha256 = COALESCE(?, sha256), size = COALESCE(?, size),"
                " mtime_ns = COALESCE(?, mtime_ns), updated_at = ? WHERE id = ?",
                (
                    state,
                    error,
                    skip_kind,
                    deduped_of,
                    sha256,
                    size,
                    mtime_ns,
                    self._clock(),
                    image_id,
                ),
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
        day: str | None = None,
        camera: str | None = None,
    ) -> list[tuple[AlertCandidate, bool]]:
        """Record an image's caption and queue its alerts in one transaction, applying each
        rule's cooldown per camera, and add its tokens to `day`'s (a local date, YYYY-MM-DD)
        for `camera`. Return each candidate with whether it was queued (False: cooled down)."""
        now = self._clock()
        decided: list[tuple[AlertCandidate, bool]] = []
        with self._tx() as db:
            db.execute(
                "UPDATE images SET state = 'done', sha256 = ?, size = ?, mtime_ns = ?,"
                " caption = ?, tokens_input = ?, tokens_output = ?, tokens_total = ?,"
                " last_error = NULL, captioned_at = ?, updated_at = ? WHERE id = ?",
                (sha256, size, mtime_ns, caption, *tokens, now, now, image_id),
            )
            if day is not None and camera is not None:
                db.execute(
                    "INSERT INTO token_usage (day, camera, input, output, total)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (day, camera) DO UPDATE SET"
                    " input = input + excluded.input, output = output + excluded.output,"
                    " total = total + excluded.total",
                    (day, camera, *(t or 0 for t in tokens)),
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
                queue_alert(db, alert, image_id, now)
                decided.append((alert, True))
        return decided

    def due_now(self) -> int:
        """Make every queued image due now: the API is back, and the images requeued during
        the outage, each with its own growing wait, should not wait any longer. Return how
        many were waiting."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE images SET next_at = 0 WHERE state = 'pending' AND next_at > ?",
                (self._clock(),),
            )
            return cur.rowcount

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
                "UPDATE images SET state = 'skipped', last_error = 'superseded',"
                " skip_kind = 'superseded' WHERE state = 'captioning'"
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
                "UPDATE images SET state = 'skipped', last_error = 'camera not configured',"
                f" skip_kind = 'no_camera' WHERE state = 'pending' AND camera NOT IN ({marks})",
                tuple(cameras),
            )
            return cur.rowcount

    def queue_length(self) -> int:
        """Return how many images wait in the queue or are being captioned."""
        rows = self._read("SELECT COUNT(*) FROM images WHERE state IN ('pending', 'captioning')")
        return int(rows[0][0])
