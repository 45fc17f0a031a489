"""Schedules: whether a rule's `active` ranges and `days` are in force at a wall-clock time.

The day names are `camwatch.config.DAYS`, the ones the config's `days` are parsed with: one
definition, kept in camwatch/config/values.py because the config cannot import this package
(which imports the config).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from camwatch.config import DAYS, RuleConfig


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _describe_schedule(rule: RuleConfig) -> str:
    parts = []
    if rule.active:
        parts.append("active " + ", ".join(f"{_hhmm(a)}-{_hhmm(b)}" for a, b in rule.active))
    if rule.days:
        parts.append("days " + ", ".join(rule.days))
    return "; ".join(parts)


def in_schedule(active: Sequence[tuple[int, int]], days: Sequence[str], local: datetime) -> bool:
    """Given a rule's `active` ranges (minutes since midnight, `start > end` crossing midnight,
    `start == end` a whole day from `start`), its `days`, and a local wall-clock time, return
    whether the rule is in force. The part of a range after midnight belongs to the day the range
    started: `active: ["22:00-06:00"], days: [fri]` covers Friday 22:00 to Saturday 06:00."""
    minute = local.hour * 60 + local.minute
    weekday = local.weekday()
    if not active:
        return not days or DAYS[weekday] in days
    for start, end in active:
        if start < end:
            if not start <= minute < end:
                continue
            day = weekday
        elif minute >= start:
            day = weekday
        elif minute < end:
            day = (weekday - 1) % 7
        else:
            continue
        if not days or DAYS[day] in days:
            return True
    return False
