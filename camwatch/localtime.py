"""Local days in the configured `timezone` (the system's when unset): one definition for the
daily token budget, `camwatch status`, the timeline page and the rules' schedules.

A zone of None means the system's local time. Its midnights are computed from a naive local
time, so that each gets the UTC offset in force at that midnight, not the one in force now: a
day that holds a DST change is 23 or 25 hours long.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo


def zone_named(name: str | None) -> tzinfo | None:
    """Return the time zone called `name` (an IANA name), or None for the system's."""
    return ZoneInfo(name) if name else None


def local(ts: float, zone: tzinfo | None) -> datetime:
    """Return the instant `ts` as an aware datetime in `zone` (None: the system's)."""
    if zone is not None:
        return datetime.fromtimestamp(ts, zone)
    return datetime.fromtimestamp(ts).astimezone()


def local_day(ts: float, zone: tzinfo | None) -> str:
    """Return the local date (YYYY-MM-DD) of the instant `ts` in `zone`."""
    return local(ts, zone).date().isoformat()


def midnight(day: date, zone: tzinfo | None) -> float:
    """Return the instant the local day `day` began in `zone`."""
    if zone is not None:
        return datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
    return datetime(day.year, day.month, day.day).timestamp()


def next_midnight(ts: float, zone: tzinfo | None) -> float:
    """Return the instant of the first local midnight in `zone` after `ts`."""
    return midnight(local(ts, zone).date() + timedelta(days=1), zone)
