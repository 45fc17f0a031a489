"""The one backoff rule: doubling from `initial`, capped at `maximum`, jittered downwards."""

from __future__ import annotations

import random

from camwatch.backoff import backoff


def test_backoff_doubles_per_failure_up_to_the_maximum() -> None:
    assert [backoff(n, 1.0, 60.0, jitter=0) for n in range(1, 9)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        32.0,
        60.0,
        60.0,
    ]
    assert backoff(0, 1.0, 60.0, jitter=0) == 1.0  # no failure yet: the initial wait
    assert backoff(10_000, 1.0, 60.0, jitter=0) == 60.0  # no overflow


def test_jitter_takes_up_to_its_share_off_and_spreads_the_waits() -> None:
    rng = random.Random(7)
    for failures in range(1, 30):
        base = min(300.0, 2.0 ** (failures - 1))
        for _ in range(50):
            assert base / 2 <= backoff(failures, 1.0, 300.0, rng=rng) <= base
    waits = {round(backoff(3, 1.0, 300.0, rng=rng), 6) for _ in range(20)}
    assert len(waits) > 1  # many alerts that failed together do not retry in lockstep
