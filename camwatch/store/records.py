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
    SKIPPED = "skipped"  # not an image to caption (vanished, too large, same bytes done)


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
