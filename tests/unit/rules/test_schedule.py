"""Schedules: ranges across midnight, days and the night after them, DST, time zones."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from camwatch.rules import RuleSet
from camwatch.rules.schedule import in_schedule

from .support import rule

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def night_rule(**fields: Any) -> RuleSet:
    """Return a RuleSet with one rule on "car", active as given, in Berlin time."""
    fields.setdefault("active", ["22:00-06:00"])
    timezone = fields.pop("timezone", BERLIN)
    return RuleSet([rule(any=["car"], **fields)], timezone=timezone)


def at(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone))  # type: ignore[misc]


@pytest.mark.parametrize(
    ("hour", "minute", "active"),
    [(21, 59, False), (22, 0, True), (23, 59, True), (0, 0, True), (5, 59, True), (6, 0, False)],
)
def test_a_range_across_midnight(hour: int, minute: int, active: bool) -> None:
    ruleset = night_rule()
    now = at(BERLIN, 2026, 11, 23, hour, minute)
    assert bool(ruleset.matching("A car.", now=now)) is active


def test_outside_schedule_reason() -> None:
    decision = night_rule(days=["mon", "tue"]).evaluate("A car.", now=at(BERLIN, 2026, 11, 23, 12))
    assert decision[0].reason == "outside schedule (active 22:00-06:00; days mon, tue)"


def test_days_and_the_night_after_them() -> None:
    # 2026-11-27 is a Friday. The night from Friday 22:00 belongs to Friday.
    ruleset = night_rule(days=["fri"])
    assert ruleset.matching("A car.", now=at(BERLIN, 2026, 11, 27, 23))
    assert ruleset.matching("A car.", now=at(BERLIN, 2026, 11, 28, 2))
    assert not ruleset.matching("A car.", now=at(BERLIN, 2026, 11, 27, 2))
    assert not ruleset.matching("A car.", now=at(BERLIN, 2026, 11, 28, 23))


def test_days_without_ranges() -> None:
    ruleset = night_rule(active=[], days=["sat", "sun"])
    assert ruleset.matching("A car.", now=at(BERLIN, 2026, 11, 28, 12))
    assert not ruleset.matching("A car.", now=at(BERLIN, 2026, 11, 27, 12))


def test_several_ranges_and_whole_days() -> None:
    assert in_schedule([(480, 600), (1020, 1140)], [], datetime(2026, 1, 1, 17, 30))
    assert not in_schedule([(480, 600), (1020, 1140)], [], datetime(2026, 1, 1, 12, 0))
    assert in_schedule([(0, 1440)], ["thu"], datetime(2026, 1, 1, 23, 59))
    # start == end: a whole day from that time, belonging to the day it starts.
    assert in_schedule([(360, 360)], ["thu"], datetime(2026, 1, 2, 5, 59))
    assert not in_schedule([(360, 360)], ["thu"], datetime(2026, 1, 2, 6, 0))


@pytest.mark.parametrize(
    ("zone", "utc", "active"),
    [
        # Berlin springs forward on 2026-03-29 at 01:00 UTC (02:00 CET -> 03:00 CEST).
        (BERLIN, datetime(2026, 3, 29, 0, 30, tzinfo=UTC), True),  # 01:30 CET
        (BERLIN, datetime(2026, 3, 29, 1, 30, tzinfo=UTC), False),  # 03:30 CEST, not 02:30
        # Berlin falls back on 2026-10-25 at 01:00 UTC (03:00 CEST -> 02:00 CET).
        (BERLIN, datetime(2026, 10, 25, 0, 30, tzinfo=UTC), True),  # 02:30 CEST
        (BERLIN, datetime(2026, 10, 25, 1, 30, tzinfo=UTC), True),  # 02:30 CET, again
        (BERLIN, datetime(2026, 10, 25, 2, 30, tzinfo=UTC), False),  # 03:30 CET
        # New York springs forward on 2026-03-08 at 07:00 UTC and falls back on 2026-11-01.
        (NEW_YORK, datetime(2026, 3, 8, 6, 30, tzinfo=UTC), True),  # 01:30 EST
        (NEW_YORK, datetime(2026, 3, 8, 7, 30, tzinfo=UTC), False),  # 03:30 EDT
        (NEW_YORK, datetime(2026, 11, 1, 5, 30, tzinfo=UTC), True),  # 01:30 EDT
        (NEW_YORK, datetime(2026, 11, 1, 6, 30, tzinfo=UTC), True),  # 01:30 EST, again
        (NEW_YORK, datetime(2026, 11, 1, 7, 30, tzinfo=UTC), True),  # 02:30 EST
        (NEW_YORK, datetime(2026, 11, 1, 8, 30, tzinfo=UTC), False),  # 03:30 EST
    ],
)
def test_schedules_across_dst(zone: str, utc: datetime, active: bool) -> None:
    ruleset = night_rule(active=["22:00-03:00"], timezone=zone)
    assert bool(ruleset.matching("A car.", now=utc)) is active


def test_a_whole_night_across_dst_is_covered_by_wall_clock() -> None:
    # Every minute of the Berlin fall-back night, 22:00 to 06:00 wall clock, is in force.
    ruleset = night_rule()
    start = datetime(2026, 10, 24, 20, 0, tzinfo=UTC)  # 22:00 CEST
    minutes = [start + timedelta(minutes=m) for m in range(0, 9 * 60, 7)]
    # 9 h of UTC: 8 h of wall clock plus the repeated hour.
    assert all(ruleset.matching("A car.", now=m) for m in minutes)
    assert not ruleset.matching("A car.", now=datetime(2026, 10, 25, 5, 0, tzinfo=UTC))


def test_naive_now_is_wall_clock_time_in_the_zone() -> None:
    ruleset = night_rule(timezone=NEW_YORK)
    assert ruleset.matching("A car.", now=datetime(2026, 7, 1, 23, 0))
    assert not ruleset.matching("A car.", now=datetime(2026, 7, 1, 12, 0))


def test_no_timezone_means_the_system_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        ruleset = night_rule(timezone=None)
        assert ruleset.zone is None
        assert ruleset.matching("A car.", now=datetime(2026, 7, 1, 14, 0, tzinfo=UTC))  # 23:00
        assert not ruleset.matching("A car.", now=datetime(2026, 7, 1, 3, 0, tzinfo=UTC))
    finally:
        monkeypatch.undo()
        time.tzset()


def test_now_defaults_to_the_current_time_and_schedules_can_be_off() -> None:
    always = night_rule(active=["00:00-24:00"])
    assert always.matching("A car.")
    never = night_rule(active=[], days=[])
    assert never.matching("A car.")
    nightly = night_rule()
    noon = at(BERLIN, 2026, 11, 23, 12)
    assert nightly.matching("A car.", now=noon, schedules=False)
