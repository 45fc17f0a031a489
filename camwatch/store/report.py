"""Queries for the commands and pages that only look (`camwatch status`): plain records out of a
read-only connection (`readonly.connect_readonly`), nothing written.

Each query reads an index or a short range of one, so that a database of 100,000 images
answers in milliseconds: the latest image of a camera from `images_camera_detected`, the day's
and the month's images (and the stored captions) from a range of `images_updated`, the queue
from `images_queue` and the covering `images_path`, the undelivered alerts from `alerts_due`.
Only the dead letters scan their table, `alerts`, which `retention` keeps short.

An image's outcome, as `status` and the metrics name it, comes from its stored state:
done -> `captioned`; failed -> `failed`; skipped because the same bytes were captioned before
-> `deduped`; any other skip -> `skipped`. A row skipped as `waiting` (still being written) or
`superseded` (queued again meanwhile) has no outcome of its own: the file's next row has it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from camwatch.store.records import CaptionRecord, SkipKind, py_path

OUTCOMES = ("captioned", "skipped", "failed", "deduped")

# Skip kinds that end in `deduped` rather than `skipped`.
_DEDUPED_KINDS = (SkipKind.DUPLICATE, SkipKind.DEDUPED)
# Skip kinds that are not an outcome: the file is back in the queue under another row.
_NO_OUTCOME_KINDS = (SkipKind.WAITING, SkipKind.SUPERSEDED)

_OUTCOME_SQL = (
    "CASE state WHEN 'done' THEN 'captioned' WHEN 'failed' THEN 'failed' ELSE"
    f" CASE WHEN skip_kind IN ({','.join(repr(str(k)) for k in _DEDUPED_KINDS)})"
    " THEN 'deduped' ELSE 'skipped' END END"
)


@contextmanager
def snapshot(db: sqlite3.Connection) -> Iterator[None]:
    """Run the block's queries in one read transaction: they see one state of the database, so
    that their numbers agree with each other while the daemon writes."""
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("ROLLBACK")


@dataclass(frozen=True)
class OutcomeCount:
    """How many images of one camera ended with one outcome, and the tokens they cost."""

    camera: str
    outcome: str
    count: int
    tokens: int


@dataclass(frozen=True)
class Failure:
    """A failed image and why."""

    camera: str
    path: str
    reason: str
    at: float


@dataclass(frozen=True)
class Backlog:
    """The alerts waiting for one target."""

    kind: str  # "webhook" or "notify"
    target: str
    pending: int
    oldest_at: float  # when the oldest of them was decided


@dataclass(frozen=True)
class DeadLetters:
    """The alerts one target refused for good, kept for `camwatch retry --alerts`."""

    kind: str
    target: str
    count: int
    last_reason: str  # the target's answer to the latest of them


def outcomes_since(db: sqlite3.Connection, since: float) -> list[OutcomeCount]:
    """Return, per camera and outcome, the images that reached their outcome at or after
    `since` (a captioned one counts from when it was captioned), with the tokens spent on
    them. Outcomes with no image are left out."""
    no_outcome = ",".join(repr(str(k)) for k in _NO_OUTCOME_KINDS)
    # `+camera`: grouping by the bare column makes SQLite walk all of images_camera_detected
    # (every image ever) to save a sort; the unary plus keeps it on the day's range of
    # images_updated (0.5 ms instead of 57 ms for a day of a 100,000-image database).
    rows = db.execute(
        f"SELECT camera, {_OUTCOME_SQL} AS outcome, COUNT(*), COALESCE(SUM(tokens_total), 0)"
        " FROM images WHERE updated_at >= ? AND state IN ('done', 'failed', 'skipped')"
        " AND (state != 'done' OR captioned_at >= ?)"
        f" AND (skip_kind IS NULL OR skip_kind NOT IN ({no_outcome}))"
        " GROUP BY +camera, outcome",
        (since, since),
    ).fetchall()
    return [OutcomeCount(camera, outcome, n, tokens) for camera, outcome, n, tokens in rows]


def tokens_since(db: sqlite3.Connection, since: float) -> int:
    """Return the tokens spent on the images captioned at or after `since` (those still
    recorded: `retention` prunes older records whose file is gone)."""
    # Every write sets updated_at, so updated_at >= captioned_at: the first condition selects
    # the range of the index, the second keeps it exact.
    row = db.execute(
        "SELECT COALESCE(SUM(tokens_total), 0) FROM images WHERE updated_at >= ?"
        " AND captioned_at >= ? AND state = 'done'",
        (since, since),
    ).fetchone()
    return int(row[0])


def tokens_between(db: sqlite3.Connection, first_day: str, last_day: str) -> int:
    """Return the tokens counted per local day (schema 5's `token_usage`, which `retention`
    does not prune) from `first_day` to `last_day` (YYYY-MM-DD), every camera together."""
    row = db.execute(
        "SELECT COALESCE(SUM(total), 0) FROM token_usage WHERE day BETWEEN ? AND ?",
        (first_day, last_day),
    ).fetchone()
    return int(row[0])


def last_image_at(db: sqlite3.Connection, camera: str) -> float | None:
    """Return when the latest image of `camera` was first seen, or None."""
    row = db.execute("SELECT MAX(detected_at) FROM images WHERE camera = ?", (camera,)).fetchone()
    return row[0]


def queue_depth(db: sqlite3.Connection) -> int:
    """Return how many images wait in the queue or are being captioned (rows a stopped daemon
    left captioning go back to the queue when it starts)."""
    row = db.execute(
        "SELECT (SELECT COUNT(*) FROM images WHERE state = 'pending'),"
        " (SELECT COUNT(*) FROM images WHERE state = 'captioning')"
    ).fetchone()
    return int(row[0]) + int(row[1])


def last_failures(db: sqlite3.Connection, limit: int = 10) -> list[Failure]:
    """Return the images that are failed now (not queued again since), latest first, at most
    `limit`."""
    rows = db.execute(
        "SELECT camera, path, last_error, updated_at FROM images WHERE state = 'failed'"
        " ORDER BY updated_at DESC, id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        Failure(camera, py_path(path), reason or "failed", at) for camera, path, reason, at in rows
    ]


def backlogs(db: sqlite3.Connection) -> list[Backlog]:
    """Return, per target with undelivered alerts, how many and since when the oldest waits."""
    rows = db.execute(
        "SELECT target_kind, target, COUNT(*), MIN(created_at) FROM alerts"
        # 'pending' written out: SQLite uses the partial index only for a literal it can match.
        " WHERE state = 'pending' GROUP BY target_kind, target ORDER BY target_kind, target"
    ).fetchall()
    return [Backlog(*row) for row in rows]


def dead_letters(db: sqlite3.Connection) -> list[DeadLetters]:
    """Return, per target that refused alerts for good, how many and its latest answer."""
    # SQLite takes a bare column of a MAX() aggregate from the row holding the maximum: the
    # reason is the latest refusal's.
    rows = db.execute(
        "SELECT target_kind, target, COUNT(*), MAX(id), last_error FROM alerts"
        " WHERE state = 'dead' GROUP BY target_kind, target ORDER BY target_kind, target"
    ).fetchall()
    return [
        DeadLetters(kind, target, n, reason or "refused") for kind, target, n, _, reason in rows
    ]


def captions_since(
    db: sqlite3.Connection, since: float, camera: str | None = None
) -> list[CaptionRecord]:
    """Return the stored captions of images captioned at or after `since` (all cameras or
    one), oldest first: what `camwatch replay` runs the rules over."""
    rows = db.execute(
        "SELECT camera, path, caption, captioned_at FROM images WHERE updated_at >= ?"
        " AND captioned_at >= ? AND state = 'done' AND (? IS NULL OR camera = ?)"
        " ORDER BY captioned_at",
        (since, since, camera, camera),
    ).fetchall()
    return [CaptionRecord(c, py_path(p), caption, at) for c, p, caption, at in rows]
