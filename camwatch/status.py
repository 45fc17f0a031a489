"""`camwatch status`: what the daemon did today, read from the state database alone.

It works with the daemon running or stopped, and never writes: the database is opened read-only
(`store.readonly`), and the numbers come from `store.report`. "Today" and "this month" are local
days in `timezone` (the system's when unset), as for `daily_tokens` and rule schedules.

    read(config, now)      -> Status          (raises NoDatabase when there is none yet)
    nothing_yet(config)    -> Status          (the same shape, all zeros: for --json)
    to_json(status)        -> the contract's object, with a few keys added
    render(status)         -> the text for a terminal
"""

from __future__ import annotations

import sqlite3
import time
import unicodedata
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import timedelta, tzinfo
from typing import Any

from camwatch.alerts import all_targets
from camwatch.config import Config
from camwatch.errors import StateError
from camwatch.files import printable_path
from camwatch.localtime import local, local_day, midnight, zone_named
from camwatch.store import report
from camwatch.store.readonly import connect_readonly, database_path
from camwatch.store.report import OUTCOMES, Failure

MAX_FAILURES = 10  # the latest failed images shown


@dataclass(frozen=True)
class CameraStatus:
    """One camera's day."""

    name: str
    last_image_at: float | None  # when its latest image was first seen
    today: dict[str, int]  # every outcome in OUTCOMES, zeros included
    tokens_today: int
    configured: bool = True  # False: it has records today but is no longer in the config


@dataclass(frozen=True)
class TargetStatus:
    """One alert target's backlog and dead letters."""

    kind: str  # "webhook", "notify" or "mqtt"
    name: str
    pending: int = 0
    oldest_at: float | None = None  # when the oldest undelivered alert was decided
    dead: int = 0
    dead_reason: str | None = None  # the target's answer to the latest dead letter
    configured: bool = True


@dataclass(frozen=True)
class Status:
    """Everything `camwatch status` shows."""

    now: float
    zone: tzinfo | None  # None: the system's local time
    database: str | None  # the database's path; None when there is none yet
    cameras: list[CameraStatus]
    queue: int = 0
    failures: list[Failure] = field(default_factory=list)
    targets: list[TargetStatus] = field(default_factory=list)
    tokens_today: int = 0
    tokens_month: int = 0


# -- local days ------------------------------------------------------------------------------------


def zone_of(config: Config) -> tzinfo | None:
    """Return the configured time zone, or None for the system's."""
    return zone_named(config.timezone)


def day_and_month_start(now: float, zone: tzinfo | None) -> tuple[float, float]:
    """Return when the local day and the local month of `now` began."""
    today = local(now, zone).date()
    return midnight(today, zone), midnight(today.replace(day=1), zone)


# -- reading ---------------------------------------------------------------------------------------


def _targets(config: Config) -> list[TargetStatus]:
    return [TargetStatus(kind, name) for kind, name in all_targets(config)]


def nothing_yet(config: Config, now: float | None = None) -> Status:
    """Return the status of a `state_dir` with no database yet: every camera and target, all
    zeros."""
    return Status(
        now=time.time() if now is None else now,
        zone=zone_of(config),
        database=None,
        cameras=[CameraStatus(c.name, None, dict.fromkeys(OUTCOMES, 0), 0) for c in config.cameras],
        targets=_targets(config),
    )


def gather(config: Config, db: sqlite3.Connection, now: float, database: str) -> Status:
    """Given a read-only connection to the state database, return the status at `now`."""
    zone = zone_of(config)
    day_start, month_start = day_and_month_start(now, zone)
    with report.snapshot(db):
        counts = report.outcomes_since(db, day_start)
        names = [c.name for c in config.cameras]
        extra = sorted({c.camera for c in counts} - set(names))
        cameras = []
        for name in names + extra:
            today = dict.fromkeys(OUTCOMES, 0)
            tokens = 0
            for count in counts:
                if count.camera == name:
                    today[count.outcome] += count.count
                    tokens += count.tokens
            last = report.last_image_at(db, name)
            cameras.append(CameraStatus(name, last, today, tokens, configured=name in names))
        targets = {(t.kind, t.name): t for t in _targets(config)}
        for backlog in report.backlogs(db):
            key = (backlog.kind, backlog.target)
            known = targets.get(key, TargetStatus(*key, configured=False))
            targets[key] = replace(known, pending=backlog.pending, oldest_at=backlog.oldest_at)
        for dead in report.dead_letters(db):
            key = (dead.kind, dead.target)
            known = targets.get(key, TargetStatus(*key, configured=False))
            targets[key] = replace(known, dead=dead.count, dead_reason=dead.last_reason)
        return Status(
            now=now,
            zone=zone,
            database=database,
            cameras=cameras,
            queue=report.queue_depth(db),
            failures=report.last_failures(db, MAX_FAILURES),
            targets=list(targets.values()),
            tokens_today=sum(c.tokens_today for c in cameras),
            # Counted per local day since schema 5; what came before (an upgraded database's
            # first month) is read from the image records that are still there.
            tokens_month=max(
                report.tokens_between(db, local_day(month_start, zone), local_day(now, zone)),
                report.tokens_since(db, month_start),
            ),
        )


def read(config: Config, now: float | None = None) -> Status:
    """Return the status of `config`'s state database, read-only. Raise NoDatabase when there
    is none yet, StateError when it cannot be read."""
    path = str(database_path(config.state_dir))
    with closing(connect_readonly(config.state_dir)) as db:
        try:
            return gather(config, db, time.time() if now is None else now, path)
        except sqlite3.Error as exc:
            raise StateError(f"state database {path!r}: cannot read: {exc}") from None


# -- JSON ------------------------------------------------------------------------------------------


def _iso(ts: float | None, zone: tzinfo | None) -> str | None:
    return None if ts is None else local(ts, zone).isoformat(timespec="seconds")


def _target_keys(targets: list[TargetStatus]) -> list[str]:
    """Name each target by its name, or `kind:name` where a webhook and a notify target share
    one (the configuration allows it)."""
    kinds: dict[str, set[str]] = {}
    for t in targets:
        kinds.setdefault(t.name, set()).add(t.kind)
    return [t.name if len(kinds[t.name]) == 1 else f"{t.kind}:{t.name}" for t in targets]


def to_json(status: Status) -> dict[str, Any]:
    """Return the status as the contract's object (`cameras`, `queue`, `failures`, `outbox`,
    `tokens`), plus `database`, `as_of` and `dead_letters`. Times are ISO 8601 with the local
    offset; `oldest_seconds` is an age."""
    zone = status.zone
    keys = _target_keys(status.targets)
    return {
        "database": status.database,
        "as_of": _iso(status.now, zone),
        "cameras": {
            c.name: {
                "last_image_at": _iso(c.last_image_at, zone),
                "today": dict(c.today),
                "tokens_today": c.tokens_today,
                "configured": c.configured,
            }
            for c in status.cameras
        },
        "queue": status.queue,
        "failures": [
            {
                "camera": f.camera,
                "path": printable_path(f.path),
                "reason": printable_path(f.reason),  # it may quote a path
                "at": _iso(f.at, zone),
            }
            for f in status.failures
        ],
        "outbox": {
            key: {
                "kind": t.kind,
                "pending": t.pending,
                "oldest_seconds": _age(status.now, t.oldest_at),
                "configured": t.configured,
            }
            for key, t in zip(keys, status.targets, strict=True)
        },
        "dead_letters": {
            key: {"kind": t.kind, "count": t.dead, "reason": printable_path(t.dead_reason or "")}
            for key, t in zip(keys, status.targets, strict=True)
            if t.dead
        },
        "tokens": {"today": status.tokens_today, "month": status.tokens_month},
    }


def _age(now: float, ts: float | None) -> float | None:
    return None if ts is None else round(max(now - ts, 0.0), 1)


# -- text ------------------------------------------------------------------------------------------


def ago(seconds: float) -> str:
    """Given an age in seconds, return it in words: `12 s ago`, `3 min ago`, `5 h ago`,
    `2 d ago`."""
    s = max(seconds, 0.0)
    if s < 1:
        return "just now"
    if s < 60:
        return f"{int(s)} s ago"
    if s < 3600:
        return f"{int(s // 60)} min ago"
    if s < 2 * 86400:
        return f"{int(s // 3600)} h ago"
    return f"{int(s // 86400)} d ago"


def when(ts: float | None, now: float, zone: tzinfo | None) -> str:
    """Return a moment as a reader wants it: local time (with the date unless today) and its
    age, e.g. `14:02:51 (31 s ago)`, `yesterday 23:10 (15 h ago)`; `never` for None."""
    if ts is None:
        return "never"
    moment, today = local(ts, zone), local(now, zone).date()
    if moment.date() == today:
        shown = moment.strftime("%H:%M:%S")
    elif moment.date() == today - timedelta(days=1):
        shown = moment.strftime("yesterday %H:%M")
    else:
        shown = moment.strftime("%Y-%m-%d %H:%M")
    return f"{shown} ({ago(now - ts)})"


def _clean(text: str) -> str:
    """Return text safe to print on a terminal: undecodable bytes and control characters
    (an escape sequence in a file name or an API's answer) written as escapes."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) == "Cc" else ch
        for ch in printable_path(text)
    )


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """Return the lines of an aligned table; columns in `right` are right-aligned."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        out = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(out).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def render(status: Status) -> str:
    """Return the status as text for a terminal."""
    now, zone = status.now, status.zone
    stamp = local(now, zone).strftime("%Y-%m-%d %H:%M:%S %Z")
    lines = [f"camwatch status at {stamp}, from {status.database or 'no database yet'}", ""]
    rows = [
        [
            _clean(c.name) + ("" if c.configured else " (not configured)"),
            when(c.last_image_at, now, zone),
            *(str(c.today[o]) for o in OUTCOMES),
            f"{c.tokens_today:,}",
        ]
        for c in status.cameras
    ]
    lines += _table(
        ["CAMERA", "LAST IMAGE", *(o.upper() for o in OUTCOMES), "TOKENS"],
        rows,
        right=set(range(2, 3 + len(OUTCOMES))),
    )
    lines.append("(today's images by outcome, and the tokens they cost)")
    lines.append("")
    lines.append(f"queue: {status.queue} image(s) waiting or being captioned")
    lines.append(f"tokens: {status.tokens_today:,} today, {status.tokens_month:,} this month")
    lines.append("")
    if status.targets:
        rows = [
            [
                _clean(t.name) + ("" if t.configured else " (not configured)"),
                t.kind,
                str(t.pending),
                when(t.oldest_at, now, zone) if t.pending else "-",
            ]
            for t in status.targets
        ]
        lines.append("alerts pending:")
        lines += ["  " + x for x in _table(["TARGET", "KIND", "PENDING", "OLDEST"], rows, {2})]
    else:
        lines.append("alerts pending: no webhook or notify target configured")
    dead = [t for t in status.targets if t.dead]
    if dead:
        lines.append("")
        lines.append("dead letters (refused for good; `camwatch retry --alerts` sends them again):")
        rows = [[_clean(t.name), t.kind, str(t.dead), _clean(t.dead_reason or "")] for t in dead]
        lines += ["  " + x for x in _table(["TARGET", "KIND", "ALERTS", "LAST ANSWER"], rows, {2})]
    lines.append("")
    if status.failures:
        lines.append("last failures (`camwatch retry` queues them again):")
        rows = [
            [when(f.at, now, zone), _clean(f.camera), _clean(f.path), _clean(f.reason)]
            for f in status.failures
        ]
        lines += ["  " + x for x in _table(["WHEN", "CAMERA", "PATH", "REASON"], rows, set())]
    else:
        lines.append("last failures: none")
    return "\n".join(lines)
