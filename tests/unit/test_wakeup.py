"""The main loop's doorbell: rung by signals (through the interpreter) and by threads."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from camwatch.wakeup import Wakeup


@pytest.fixture
def bell() -> Iterator[Wakeup]:
    wakeup = Wakeup()
    yield wakeup
    wakeup.close()


def test_wait_times_out_when_nobody_rings(bell: Wakeup) -> None:
    assert bell.wait(0.05) is False


def test_a_thread_rings_it(bell: Wakeup) -> None:
    threading.Thread(target=bell.set).start()
    assert bell.wait(5) is True
    assert bell.wait(0.01) is False  # drained


def test_many_rings_never_block(bell: Wakeup) -> None:
    for _ in range(100_000):  # far more than the socket buffer holds
        bell.set()
    assert bell.wait(1) is True


def test_a_signal_rings_it_and_the_handler_only_sets_a_flag(bell: Wakeup) -> None:
    seen: list[int] = []
    old = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    bell.attach_signals()
    try:
        started = time.monotonic()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert bell.wait(5) is True
        assert seen == [signal.SIGUSR1]
        assert time.monotonic() - started < 5
    finally:
        signal.signal(signal.SIGUSR1, old)
