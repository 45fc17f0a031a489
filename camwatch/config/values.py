"""The value types of the settings and their parsers: durations, http URLs, time ranges, days.

Each parser takes what YAML gives (a number, a string, or the already parsed form, so that a
Config validated again keeps its values) and raises ValueError naming the offending value;
pydantic turns that into a `field.path: message` problem.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Given a number of seconds or a string such as `500ms`, `1.5s`, `5m`, `2h`, `7d`, return
    seconds. Raise ValueError with the offending value otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a duration, got {value!r} (negative)")
        if not math.isfinite(value):  # YAML's .nan and .inf
            raise ValueError(f"expected a duration, got {value!r}")
        return float(value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"expected a duration, got {value!r}")


Duration = Annotated[float, BeforeValidator(parse_duration)]


def check_http_url(value: str) -> str:
    """Given a URL, return it if it is http(s) with a host. Raise ValueError otherwise."""
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return value


HttpUrl = Annotated[str, AfterValidator(check_http_url)]

# Monday first, as datetime.weekday() counts: the rules' schedules index it by weekday. It lives
# here, not in camwatch.rules.schedule, because that package imports camwatch.config.
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_time_range(value: Any) -> tuple[int, int]:
    """Given `"22:00-06:00"`, return minutes since midnight `(1320, 360)`; a range may cross
    midnight. Raise ValueError otherwise."""
    if isinstance(value, list | tuple) and len(value) == 2:
        # The parsed form, minutes since midnight (what a re-validated Config holds).
        if all(type(v) is int and 0 <= v <= 1440 for v in value):
            return value[0], value[1]
        raise ValueError(f"expected a time range such as '22:00-06:00', got {value!r}")
    match = _RANGE_RE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"expected a time range such as '22:00-06:00', got {value!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59 or (h1 == 24 and m1) or (h2 == 24 and m2):
        raise ValueError(f"expected a time range such as '22:00-06:00', got {value!r}")
    return h1 * 60 + m1, h2 * 60 + m2


def parse_day(value: Any) -> str:
    """Given a day name (`mon`, `Monday`, ...), return its three-letter lowercase form."""
    if isinstance(value, str) and value.strip()[:3].lower() in DAYS:
        full = value.strip().lower()
        names = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        if len(full) == 3 or full in names:
            return full[:3]
    raise ValueError(f"expected a day such as 'mon', got {value!r}")


TimeRange = Annotated[tuple[int, int], BeforeValidator(parse_time_range)]
Day = Annotated[str, BeforeValidator(parse_day)]
