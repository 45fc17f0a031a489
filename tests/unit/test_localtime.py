"""Local days and midnights, in a named zone and in the system's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from camwatch.localtime import local_day, next_midnight, zone_named

BERLIN = "Europe/Berlin"


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(BERLIN)).timestamp()


@pytest.fixture
def system_zone_berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", BERLIN)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("zone", [ZoneInfo(BERLIN), None])
def test_the_next_midnight_takes_the_offset_in_force_then(
    zone: ZoneInfo | None, system_zone_berlin: None
) -> None:
    # Early on the day the clocks go forward (29 March 2026), the next midnight is 22 hours away.
    assert next_midnight(_at("2026-03-29T01:00:00"), zone) == _at("2026-03-30T00:00:00")
    assert local_day(_at("2026-03-29T23:59:59"), zone) == "2026-03-29"


def test_no_name_is_the_system_zone() -> None:
    assert zone_named(None) is None
    assert zone_named("") is None
    assert zone_named(BERLIN) == ZoneInfo(BERLIN)
