"""Queries for the timeline page: a page of images newest first, and the alerts of those images,
out of a read-only connection (`readonly.connect_readonly`); nothing written.

Pages are keyset-paged from an image id (`before`: the last one shown), newest first, never by
OFFSET, so that the thousandth page costs what the first does. Each query walks one index from
its end:

    all images              the table itself (the id is the rowid), backwards: id < before
    one camera              images_camera_detected (camera, detected_at, then the rowid),
                            backwards: (detected_at, id) < those of `before`
    images with alerts      alerts_image (image id, camera), backwards; DISTINCT is free on it
    one camera's alerts     alerts_image, the camera read from the index
    an image's alerts       alerts_image, one range per image of the page

A camera's page is in the order of its index (when each image was first seen) rather than of the
ids: the same order but for images queued in another order than seen. An index of a camera's
ids would have given the id order, but SQLite then prefers it, to save a sort, for the queue's
own queries by camera and path (whose plans it made 1,000 times slower on 100,000 rows).

`tests/unit/test_timeline.py` checks these plans with EXPLAIN QUERY PLAN.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from camwatch.store.records import SkipKind, py_path

# Rows that are no image's last word: a file still being written was handed back to the
# debouncer (`waiting`), or queued again meanwhile (`superseded`); its next row tells the story.
_HANDED_ON = (SkipKind.WAITING, SkipKind.SUPERSEDED)
_SHOWN = (
    "(state != 'skipped' OR skip_kind IS NULL"
    f" OR skip_kind NOT IN ({','.join(repr(str(k)) for k in _HANDED_ON)}))"
)
_NO_BOUND = 2**63 - 1  # above every rowid
_NO_TIME = 1e300  # after every detected_at
_COLUMNS = (
    "id, camera, path, relpath, state, last_error, skip_kind, caption, size, mtime_ns, sha256,"
    " detected_at, captioned_at, tokens_total, attempts"
)


@dataclass(frozen=True)
class TimelineImage:
    """One image as the timeline shows it."""

    id: int
    camera: str
    path: str  # as the OS gives it (undecodable bytes surrogate-escaped)
    relpath: str
    state: str  # an ImageState value
    reason: str | None  # why it failed or was skipped, or the last error of a queued one
    skip_kind: str | None
    caption: str | None
    size: int | None
    mtime_ns: int | None
    sha256: str | None
    detected_at: float
    captioned_at: float | None
    tokens: int | None
    attempts: int


@dataclass(frozen=True)
class Delivery:
    """One alert on its way to one target."""

    kind: str  # "webhook" or "notify"
    target: str
    state: str  # an AlertState value
    attempts: int
    last_error: str | None
    next_at: float
    delivered_at: float | None


@dataclass(frozen=True)
class StoredAlert:
    """One alert decided about an image, with its delivery to each target."""

    event_id: str
    rule: str
    created_at: float
    body: str | None  # the webhook body (severity, matched), None when it went to notify only
    deliveries: tuple[Delivery, ...]


def _image(row: tuple[Any, ...]) -> TimelineImage:
    image_id, camera, path, relpath, *rest = row
    return TimelineImage(image_id, camera, py_path(path), py_path(relpath), *rest)


def images_page(
    db: sqlite3.Connection,
    limit: int,
    camera: str | None = None,
    alerts_only: bool = False,
    before: int | None = None,
) -> list[TimelineImage]:
    """Return at most `limit` images, newest first: those after `before` (an image id, the last
    one of the page before; None: from the newest), of one `camera` or all, and with
    `alerts_only` only the images that raised an alert. Rows handed on to a newer row of the
    same file are left out."""
    # One form of the query with or without `before`: `? IS NULL OR id < ?` would hide the range
    # from the planner, which would then walk from the newest row down to `before`.
    bound = before if before is not None else _NO_BOUND
    args: list[object]
    if alerts_only:
        # From the alerts' index: the images that raised one, newest first, DISTINCT for free.
        where = "image_id < ?"
        args = [bound]
        if camera is not None:
            where += " AND camera = ?"
            args.append(camera)
        sql = (
            f"SELECT {_COLUMNS} FROM images WHERE id IN (SELECT DISTINCT image_id FROM alerts"
            f" WHERE {where} ORDER BY image_id DESC LIMIT ?) ORDER BY id DESC"
        )
        args.append(limit)
    elif camera is not None:
        seen = _NO_TIME
        if before is not None:
            # When `before` was seen (its row may have been pruned since: the next one stands in).
            row = db.execute(
                "SELECT detected_at FROM images WHERE id >= ? ORDER BY id LIMIT 1", (before,)
            ).fetchone()
            seen = row[0] if row is not None else _NO_TIME
        sql = (
            f"SELECT {_COLUMNS} FROM images WHERE camera = ? AND (detected_at, id) < (?, ?)"
            f" AND {_SHOWN} ORDER BY detected_at DESC, id DESC LIMIT ?"
        )
        args = [camera, seen, bound, limit]
    else:
        sql = f"SELECT {_COLUMNS} FROM images WHERE id < ? AND {_SHOWN} ORDER BY id DESC LIMIT ?"
        args = [bound, limit]
    return [_image(row) for row in db.execute(sql, args).fetchall()]


def image_by_id(db: sqlite3.Connection, image_id: int) -> TimelineImage | None:
    """Return the image with this id, or None."""
    row = db.execute(f"SELECT {_COLUMNS} FROM images WHERE id = ?", (image_id,)).fetchone()
    return _image(row) if row is not None else None


def alerts_of(db: sqlite3.Connection, image_ids: list[int]) -> dict[int, list[StoredAlert]]:
    """Return, per image id, the alerts it raised (oldest first), each with its deliveries
    (webhooks first, then notify targets, by name). Images without alerts are left out."""
    if not image_ids:
        return {}
    marks = ",".join("?" * len(image_ids))
    # A notify row's body may hold the image itself (base64): only webhook and mqtt bodies (the
    # same JSON) are read.
    rows = db.execute(
        "SELECT image_id, event_id, rule, created_at,"
        " CASE WHEN target_kind IN ('webhook', 'mqtt') THEN body END,"
        " target_kind, target, state, attempts, last_error, next_at, delivered_at"
        f" FROM alerts WHERE image_id IN ({marks}) ORDER BY image_id, id",
        image_ids,
    ).fetchall()
    # image id -> event id -> (rule, created_at, webhook body, deliveries), in row order
    events: dict[int, dict[str, tuple[str, float, list[str], list[Delivery]]]] = {}
    for image_id, event_id, rule, created_at, body, *delivery in rows:
        _, _, bodies, deliveries = events.setdefault(image_id, {}).setdefault(
            event_id, (rule, created_at, [], [])
        )
        if body is not None:
            bodies.append(body)
        deliveries.append(Delivery(*delivery))
    return {
        image_id: [
            StoredAlert(
                event_id,
                rule,
                created_at,
                bodies[0] if bodies else None,
                tuple(sorted(deliveries, key=lambda d: (d.kind != "webhook", d.target))),
            )
            for event_id, (rule, created_at, bodies, deliveries) in alerts.items()
        ]
        for image_id, alerts in events.items()
    }
