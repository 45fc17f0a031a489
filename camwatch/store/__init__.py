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
from collections.abc import Callable

from camwatch.store.costs import Costs
from camwatch.store.outbox import Outbox
from camwatch.store.queue import Queue
from camwatch.store.records import (
    FINAL_STATES,
    AlertCandidate,
    AlertState,
    CaptionRecord,
    ImageJob,
    ImageState,
    NewImage,
    OutboxRow,
    Requeued,
    SkipKind,
    SkippedImage,
    db_path,
    py_path,
)
from camwatch.store.schema import SCHEMA_VERSION
from camwatch.store.skipped import Skipped

__all__ = [
    "FINAL_STATES",
    "SCHEMA_VERSION",
    "AlertCandidate",
    "AlertState",
    "CaptionRecord",
    "ImageJob",
    "ImageState",
    "NewImage",
    "OutboxRow",
    "Requeued",
    "SkipKind",
    "SkippedImage",
    "Store",
    "db_path",
    "py_path",
]


class Store(Queue, Outbox, Skipped, Costs):
    """The state database in `state_dir/camwatch.db`: the queue, the outbox, skipped images,
    housekeeping."""

    def counts(self) -> dict[str, int]:
        """Return how many images are in each state, and `alerts_pending`."""
        rows = self._read("SELECT state, COUNT(*) FROM images GROUP BY state")
        counts = {state: n for state, n in rows}
        alerts = dict(self._read("SELECT state, COUNT(*) FROM alerts GROUP BY state"))
        counts["alerts_pending"] = alerts.get(AlertState.PENDING, 0)
        counts["alerts_dead"] = alerts.get(AlertState.DEAD, 0)
        return counts

    def prune(self, retention: float, exists: Callable[[str], bool] = os.path.lexists) -> int:
        """Delete delivered or expired alerts, and finished image records, older than
        `retention` seconds. An image record whose file is still on disk is kept, so that the
        start-up scan does not caption it again. Return how many rows were deleted."""
        cutoff = self._clock() - retention
        deleted = 0
        with self._tx() as db:
            deleted += db.execute(
                "DELETE FROM alerts WHERE state IN ('delivered', 'expired', 'dead')"
                " AND created_at < ?",
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
