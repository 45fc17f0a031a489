"""The timeline page (`GET /`) and its thumbnails (`GET /thumb/<image id>`), for the HTTP
listener: each call returns (status, content type, body); the listener adds the headers.

A page is built in three steps: the images and their alerts are read from the state database
(`store/timeline.py`, a read-only connection behind a lock, keyset-paged on the image id); each
becomes a `Card` (local time, state, the alerts with their matched phrases and delivery to each
target, and what the rules say about the caption, as `camwatch test-rules --json` says it); the
cards go through `templates/timeline.html`. Jinja2 escapes every value (autoescape on): a
caption, a file name or a rule's phrase comes from outside and is only ever text on the page.

The page needs no script and loads nothing but its thumbnails, so it works under
`Content-Security-Policy: default-src 'none'; img-src 'self'; style-src 'unsafe-inline'`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import structlog

from camwatch.config import Config
from camwatch.errors import StateError
from camwatch.files import printable_path
from camwatch.localtime import local, zone_named
from camwatch.rules import RuleDecision, RuleSet, decision_json
from camwatch.store.readonly import NoDatabase, connect_readonly
from camwatch.store.timeline import (
    Delivery,
    StoredAlert,
    TimelineImage,
    alerts_of,
    image_by_id,
    images_page,
)
from camwatch.thumbnails import ImageFile, Thumbnails

log = structlog.get_logger(__name__)

PAGE_SIZE = 40
EAGER_THUMBNAILS = 6  # the first cards' images load at once, the rest when scrolled to
HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
JPEG = "image/jpeg"
_MAX_ID = 2**63 - 1
_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
_STATE_LABELS = {
    "pending": "queued",
    "captioning": "captioning",
    "done": "captioned",
    "failed": "failed",
    "skipped": "skipped",
}
_DELIVERY_LABELS = {
    "delivered": "delivered",
    "pending": "pending",
    "dead": "dead-lettered",
    "expired": "dropped",
}


@dataclass(frozen=True)
class DeliveryView:
    """One alert's delivery to one target, in words."""

    target: str  # "webhook ops"
    state: str  # delivered | pending | dead-lettered | dropped
    css: str
    detail: str


@dataclass(frozen=True)
class AlertView:
    """One alert raised by an image."""

    rule: str
    severity: str
    phrases: list[str]
    deliveries: list[DeliveryView]


@dataclass(frozen=True)
class Card:
    """One image on the page."""

    id: int
    camera: str
    path: str  # relative to the camera's folder, as text
    time: str  # local wall-clock time
    iso: str  # the same instant, ISO 8601 with its offset
    state: str
    state_css: str
    reason: str | None
    caption: str | None
    tokens: int | None
    thumb: str | None  # the thumbnail's URL, None when there is none
    missing: str | None  # why there is no thumbnail
    eager: bool
    severity: str | None  # the highest of its alerts'
    alerts: list[AlertView] = field(default_factory=list)
    unalerted: list[tuple[str, list[str]]] = field(default_factory=list)  # (rule, phrases)
    discarded: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Query:
    """What a page asks for: `?camera=NAME&alerts=1&before=ID`."""

    camera: str | None = None
    alerts: bool = False
    before: int | None = None

    def url(self, **changes: Any) -> str:
        """Return the page's URL with `changes` (None removes a parameter)."""
        values = {"camera": self.camera, "alerts": self.alerts, "before": self.before}
        values.update(changes)
        params = [
            (key, "1" if value is True else str(value))
            for key, value in values.items()
            if value not in (None, False)
        ]
        return "/" + ("?" + urlencode(params) if params else "")


class BadQuery(ValueError):
    """A query parameter that cannot be understood."""


def parse_query(query: dict[str, list[str]]) -> Query:
    """Given the parsed query string, return what the page asks for. Raise BadQuery for a
    `before` that is not an image id."""

    def first(name: str) -> str | None:
        values = query.get(name) or []
        return values[0] if values else None

    camera = first("camera") or None
    alerts = first("alerts") in ("1", "true", "yes", "on")
    before_text = first("before")
    before = None
    if before_text:
        if not before_text.isascii() or not before_text.isdigit() or len(before_text) > 19:
            raise BadQuery("before: expected an image id (a positive whole number)")
        before = min(int(before_text), _MAX_ID)
    return Query(camera, alerts, before)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("camwatch", "templates"),
        autoescape=True,  # every template, whatever its name: nothing from outside is markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


class Timeline:
    """The timeline page and thumbnails of one state database, for the HTTP listener's threads."""

    def __init__(
        self,
        state_dir: Path,
        config: Config,
        page_size: int = PAGE_SIZE,
        clock: Callable[[], float] = time.time,
        rules: RuleSet | None = None,
    ) -> None:
        """Given the state folder and the configuration, prepare the page (the database is
        opened, read-only, by each request). `rules`: the daemon's, compiled from `config`
        already (else compiled here)."""
        self.state_dir = Path(state_dir)
        self.config = config
        self.page_size = page_size
        self._clock = clock
        self._zone = zone_named(config.timezone)
        if rules is None:
            rules = RuleSet(config.rules, config.matching, config.timezone)
        self._rules = rules
        self._severity = {rule.name: rule.severity for rule in config.rules}
        self._roots = {camera.name: camera.path for camera in config.cameras}
        self._thumbs = Thumbnails(config.caption.max_image_bytes)
        self._template = _environment().get_template("timeline.html")

    def _read(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `work` on a read-only connection of its own. Raise StateError (NoDatabase when
        there is none yet) if the database cannot be read.

        A connection per request: opening one costs a fraction of a millisecond, no two threads
        share one, and each sees the database as it is now (one opened while no daemon ran reads
        the file as immutable and would never see what a daemon writes later)."""
        db = connect_readonly(self.state_dir)
        try:
            return work(db)
        except sqlite3.Error as exc:
            raise StateError(f"state database: cannot read: {exc}") from None
        finally:
            db.close()

    # -- GET / ------------------------------------------------------------------------------------

    def page(self, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        """Given the parsed query string of `GET /`, return (status, content type, body): the
        page, 400 for a query it cannot understand, 503 while the database cannot be read."""
        try:
            wanted = parse_query(query)
        except BadQuery as exc:
            return 400, TEXT, f"{exc}\n".encode()
        try:
            images, alerts = self._read(lambda db: self._load(db, wanted))
        except NoDatabase:
            return 503, TEXT, b"no state database yet: the daemon has not captioned anything\n"
        except StateError as exc:
            log.warning("timeline_unavailable", error=str(exc))
            return 503, TEXT, b"the state database cannot be read now; try again\n"
        more = len(images) > self.page_size
        images = images[: self.page_size]
        now = self._clock()
        days: list[tuple[str, list[Card]]] = []
        for index, image in enumerate(images):
            card = self._card(image, alerts.get(image.id, []), eager=index < EAGER_THUMBNAILS)
            label = self._day(image.detected_at, now)
            if not days or days[-1][0] != label:
                days.append((label, []))
            days[-1][1].append(card)
        body = self._template.render(
            query=wanted,
            days=days,
            cameras=[
                (name, wanted.url(camera=name, before=None), name == wanted.camera)
                for name in self._roots
            ],
            all_cameras_url=wanted.url(camera=None, before=None),
            alerts_url=wanted.url(alerts=not wanted.alerts, before=None),
            older_url=wanted.url(before=images[-1].id) if more and images else None,
            newest_url=wanted.url(before=None) if wanted.before is not None else None,
            generated=self._local(now).strftime("%Y-%m-%d %H:%M:%S %Z"),
        )
        return 200, HTML, body.encode("utf-8")

    def _load(
        self, db: sqlite3.Connection, wanted: Query
    ) -> tuple[list[TimelineImage], dict[int, list[StoredAlert]]]:
        """Read one more image than a page holds (to know whether there are older ones), and
        their alerts, in one read transaction so that they agree."""
        db.execute("BEGIN")
        try:
            images = images_page(
                db, self.page_size + 1, wanted.camera, wanted.alerts, wanted.before
            )
            alerts = alerts_of(db, [image.id for image in images[: self.page_size]])
        finally:
            db.execute("COMMIT")
        return images, alerts

    def _card(self, image: TimelineImage, stored: list[StoredAlert], eager: bool) -> Card:
        """Return what the page shows of one image."""
        decided: dict[str, list[str]] = {}
        discarded: list[str] = []
        if image.caption is not None:
            explained = decision_json(image.caption, self._evaluate(image.caption, image))
            decided = {m["rule"]: m["phrases"] for m in explained["matched"]}
            discarded = [
                f"{d['rule']}: {d['condition']} {d['phrase']!r} {d['why']}"
                for d in explained["discarded"]
            ]
        alerts = [self._alert(alert, decided) for alert in stored]
        alerted = {alert.rule for alert in stored}
        unalerted = [(rule, phrases) for rule, phrases in decided.items() if rule not in alerted]
        missing: str | None
        root = self._roots.get(image.camera)
        if root is None:
            missing = "camera not configured"
        else:
            missing = self._thumbs.missing(_image_file(image, root))
        local = self._local(image.detected_at)
        severities = [alert.severity for alert in alerts]
        return Card(
            id=image.id,
            camera=image.camera,
            path=printable_path(image.relpath),
            time=local.strftime("%H:%M:%S"),
            iso=local.isoformat(timespec="seconds"),
            state=_STATE_LABELS.get(image.state, image.state),
            state_css=image.state,
            reason=image.reason if image.state != "done" else None,
            caption=image.caption,
            tokens=image.tokens,
            thumb=f"/thumb/{image.id}" if missing is None else None,
            missing=missing,
            eager=eager,
            severity=max(severities, key=lambda s: _SEVERITY_RANK.get(s, 1))
            if severities
            else None,
            alerts=alerts,
            unalerted=unalerted,
            discarded=discarded,
        )

    def _evaluate(self, caption: str, image: TimelineImage) -> list[RuleDecision]:
        """Return the rules' decisions on the image's caption as the daemon made them when it
        was captioned (camera filters, and schedules at that time), with today's rules."""
        when = datetime.fromtimestamp(image.captioned_at or image.detected_at, UTC)
        return self._rules.evaluate(caption, image.camera, when)

    def _alert(self, alert: StoredAlert, decided: dict[str, list[str]]) -> AlertView:
        """Return what the page shows of one alert: the severity and phrases it was sent with
        (from its webhook body), else those of today's rules."""
        sent: dict[str, Any] = {}
        if alert.body is not None:
            try:
                loaded = json.loads(alert.body)
            except ValueError:
                loaded = None
            sent = loaded if isinstance(loaded, dict) else {}
        severity = sent.get("severity") or self._severity.get(alert.rule, "warning")
        matched = sent.get("matched")
        phrases = (
            [str(p) for p in matched] if isinstance(matched, list) else decided.get(alert.rule, [])
        )
        return AlertView(
            rule=alert.rule,
            severity=str(severity),
            phrases=phrases,
            deliveries=[self._delivery(d) for d in alert.deliveries],
        )

    def _delivery(self, delivery: Delivery) -> DeliveryView:
        """Return one delivery in words."""
        label = _DELIVERY_LABELS.get(delivery.state, delivery.state)
        error = delivery.last_error or ""
        tries = f"{delivery.attempts} attempt{'s' if delivery.attempts != 1 else ''}"
        if delivery.state == "delivered":
            at = self._local(delivery.delivered_at) if delivery.delivered_at else None
            detail = f"at {at:%H:%M:%S}" if at else ""
            if delivery.attempts > 1:
                detail += f" after {tries}"
        elif delivery.state == "pending":
            if delivery.attempts == 0:
                detail = "not tried yet"
            else:
                again = self._local(delivery.next_at)
                detail = f"{tries} failed ({error}); next try at {again:%H:%M:%S}"
        elif delivery.state == "dead":
            detail = f"refused for good: {error}; `camwatch retry --alerts` sends it again"
        else:
            detail = error
        return DeliveryView(f"{delivery.kind} {delivery.target}", label, delivery.state, detail)

    def _local(self, timestamp: float) -> datetime:
        return local(timestamp, self._zone)

    def _day(self, timestamp: float, now: float) -> str:
        day = self._local(timestamp).date()
        today = self._local(now).date()
        if day == today:
            return "Today"
        if day == today - timedelta(days=1):
            return "Yesterday"
        return f"{day:%a} {day.day} {day:%b %Y}"

    # -- GET /thumb/<id> --------------------------------------------------------------------------

    def thumbnail(self, image_id: str) -> tuple[int, str, bytes]:
        """Given the id from `/thumb/<id>`, return (status, content type, body): the JPEG
        thumbnail, or 404 when there is no such image or its file is gone (looked at on every
        request), changed, or unsafe to open; 503 while the database cannot be read."""
        if not image_id.isascii() or not image_id.isdigit() or len(image_id) > 19:
            return 404, TEXT, b"no such image\n"
        try:
            image = self._read(lambda db: image_by_id(db, int(image_id)))
        except StateError:
            return 503, TEXT, b"the state database cannot be read now; try again\n"
        root = self._roots.get(image.camera) if image is not None else None
        if image is None or root is None:
            return 404, TEXT, b"no such image\n"
        thumb = self._thumbs.get(_image_file(image, root))
        if thumb is None:
            return 404, TEXT, b"no thumbnail: the file is gone, changed, or cannot be shown\n"
        return 200, JPEG, thumb


def _image_file(image: TimelineImage, root: Path) -> ImageFile:
    return ImageFile(image.id, root, image.path, image.size, image.mtime_ns, image.sha256)
