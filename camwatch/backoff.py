"""How long to wait before trying again: one rule for the caption client, the circuit breaker,
alert delivery and its quick retries.

The wait doubles with each failure from `initial` up to `maximum`. Jitter takes up to a share of
it off at random, so that many clients (or many alerts) that failed together do not all come
back in the same instant; the circuit breaker asks for none (one probe at a time needs none).
"""

from __future__ import annotations

import random

_MAX_EXPONENT = 60  # 2**60 is already far past any sane maximum; keeps the float finite


def backoff(
    failures: int,
    initial: float,
    maximum: float,
    *,
    jitter: float = 0.5,
    rng: random.Random | None = None,
) -> float:
    """Given how many tries have failed (the first failure is 1), return the wait before the
    next: `initial * 2**(failures - 1)`, at most `maximum`, less up to `jitter` of itself at
    random (0.5: between half and all of it)."""
    exponent = min(max(failures - 1, 0), _MAX_EXPONENT)
    base = max(0.0, min(initial * 2.0**exponent, maximum))
    if jitter <= 0:
        return base
    return base * (1.0 - jitter * (rng or random).random())
