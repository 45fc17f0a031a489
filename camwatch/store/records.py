"""What goes in and out of the state database: states, records, and paths as stored."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum


class ImageState(StrEnum):
    """Where an image is in its life (stored in `images.state`)."""

    PENDING = "pending"  # in the queue
    CAPTIONING = "captioning"  # claimed by a worker
    DONE = "done"  # captioned
    FAILED = "failed"  # given up, with the reason; `camwatch retry` queues it again
    SKIPPED = "skipped"  # not captioned, for a SkipKind; `camwatch retry --skipped` queues it


class SkipKind(StrEnum):
    """Why an image was skipped, for machines (stored in `images.skip_kind`; the text in
    `last_error` is for people). Rows skipped before schema 3 that it could not classify hold
    NULL: `UNKNOWN`."""

    TOO_LARGE = "too_large"  # larger than caption.max_image_bytes (its size is in `size`)
    INCOMPLETE = "incomplete"  # not a whole JPEG/PNG complete_timeout after its last change
    WAITING = "waiting"  # still being written: handed back to the debouncer
    UNSAFE_PATH = "unsafe_path"  # a link, not a regular file, hard-linked, or outside the folder
    VANISHED = "vanished"  # deleted before it was read
    DUPLICATE = "duplicate"  # the same bytes were captioned before
    DEDUPED = "deduped"  # a near duplicate of an image captioned just before (`deduped_of`)
    NO_CAMERA = "no_camera"  # its camera was not configured any more
    SUPERSEDED = "superseded"  # the file was queued again while this record was in flight
    UNKNOWN = "unknown"  # skipped before the kind was recorded (NULL in the database)


class AlertState(StrEnum):
    """Where an alert is on its way to one target (stored in `alerts.state`)."""

    PENDING = "pending"  # to be sent, at `next_at`
    DELIVERED = "delivered"
    EXPIRED = "expired"  # undelivered after `delivery.max_age`, or its target is gone
    DEAD = "dead"  # refused for good by its target: kept for `camwatch retry --alerts`


FINAL_STATES = (ImageState.DONE, ImageState.FAILED, ImageState.SKIPPED)


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
class SkippedImage:
    """The latest record of a file, skipped: what deciding whether to queue it again needs."""

    id: int
    camera: str
    path: str
    kind: SkipKind
    size: int | None  # as last seen: for TOO_LARGE, the size that was refused


@dataclass(frozen=True)
class Requeued:
    """What queueing skipped images again did."""

    queued: int  # back in the queue
    gone: int  # left as they were: their file is no longer there


@dataclass(frozen=True)
class CaptionRecord:
    """A stored caption, for `camwatch replay`."""

    camera: str
    path: str
    caption: str
    captioned_at: float


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
