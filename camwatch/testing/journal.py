"""What a stand-in recorded, and how many requests it is answering right now.

Tests wait on it (`wait_for`, `wait_in_flight`) through a Condition rather than by polling.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Journal:
    """What a stand-in recorded, with a Condition to wait on (no polling)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: list[Any] = []
        self._in_flight = 0

    def add(self, item: Any) -> None:
        """Record one item and wake every waiter."""
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def items(self) -> list[Any]:
        """Return everything recorded so far, in order (a copy)."""
        with self._cond:
            return list(self._items)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def clear(self) -> None:
        """Forget everything recorded."""
        with self._cond:
            self._items.clear()

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float) -> bool:
        """Wait until `predicate(recorded items)` holds. Return whether it did in time."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._items), timeout)

    def begin(self) -> None:
        """Count one more request being answered."""
        with self._cond:
            self._in_flight += 1
            self._cond.notify_all()

    def end(self) -> None:
        """Count one request fewer being answered."""
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    @property
    def in_flight(self) -> int:
        """How many requests are being answered right now."""
        with self._cond:
            return self._in_flight

    def wait_in_flight(self, n: int, timeout: float) -> bool:
        """Wait until `n` requests are being answered at once. Return whether they were in
        time."""
        with self._cond:
            return self._cond.wait_for(lambda: self._in_flight >= n, timeout)
