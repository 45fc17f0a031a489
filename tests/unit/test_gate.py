"""The caption gate: circuit breaker for outages, pause for bad keys, one probe at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from structlog.testing import capture_logs

from camwatch.gate import CaptionGate


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Waiter:
    """A thread blocked in `gate.acquire`, and what it got."""

    def __init__(self, gate: CaptionGate, stop: threading.Event) -> None:
        self.result: list[bool | None] = []
        self._thread = threading.Thread(
            target=lambda: self.result.append(gate.acquire(stop)), name="gate-waiter"
        )
        self._thread.start()

    def done(self) -> bool:
        return bool(self.result)

    def join(self) -> None:
        self._thread.join(5)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gate(clock: Clock) -> CaptionGate:
    return CaptionGate(open_initial=10, open_max=60, pause_probe=600, clock=clock)


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # frees any waiter a failed test left behind


def still_waiting(waiter: Waiter) -> bool:
    """Give a waiter a short real moment (bounded) and return whether it is still blocked."""
    waiter._thread.join(0.15)
    return not waiter.done()


def test_closed_gate_lets_everyone_through(gate: CaptionGate, stop: threading.Event) -> None:
    assert gate.state == "closed"
    assert gate.acquire(stop) is True
    assert gate.acquire(stop) is True


def test_outage_opens_then_one_probe_while_others_wait(
    gate: CaptionGate, clock: Clock, stop: threading.Event, poll: Callable[..., None]
) -> None:
    with capture_logs() as logs:
        assert gate.outage("HTTP 503", None, probe=False) == 10
    assert (gate.state, gate.reason) == ("open", "HTTP 503")
    assert [e["event"] for e in logs] == ["caption_api_unavailable"]

    waiter = Waiter(gate, stop)
    assert still_waiting(waiter)  # open: nobody calls the API
    clock.now += 10
    poll(waiter.done, 5, message="the probe after the open period")
    assert waiter.result == [False]  # the one probe
    waiter.join()

    other = Waiter(gate, stop)
    assert still_waiting(other)  # half-open: the others wait for the probe
    gate.succeeded(probe=True)
    poll(other.done, 5, message="the gate to close")
    assert other.result == [True]
    other.join()
    assert gate.state == "closed"
    assert gate.acquire(stop) is True


def test_a_failed_probe_doubles_the_open_period_up_to_open_max(
    gate: CaptionGate, clock: Clock, stop: threading.Event
) -> None:
    periods = [gate.outage("down", None, probe=False)]
    for _ in range(4):
        clock.now += periods[-1]
        assert gate.acquire(stop) is False
        periods.append(gate.outage("down", None, probe=True))
    assert periods == [10, 20, 40, 60, 60]
    clock.now += 60
    assert gate.acquire(stop) is False
    gate.succeeded(probe=True)
    assert gate.outage("down again", None, probe=False) == 10  # a fresh outage starts over


def test_retry_after_lengthens_the_open_period(gate: CaptionGate) -> None:
    assert gate.outage("429", 45.0, probe=False) == 45.0
    assert gate.outage("429", 1.0, probe=False) == 20.0


def test_an_outage_logs_once(gate: CaptionGate, clock: Clock, stop: threading.Event) -> None:
    with capture_logs() as logs:
        gate.outage("down", None, probe=False)
        gate.outage("down", None, probe=False)
        clock.now += 100
        assert gate.acquire(stop) is False
        gate.outage("down", None, probe=True)
        clock.now += 100
        assert gate.acquire(stop) is False
        gate.succeeded(probe=True)
    assert [e["event"] for e in logs] == ["caption_api_unavailable", "captioning_resumed"]


def test_a_released_probe_lets_another_worker_probe(
    gate: CaptionGate, clock: Clock, stop: threading.Event, poll: Callable[..., None]
) -> None:
    gate.outage("down", None, probe=False)
    clock.now += 10
    assert gate.acquire(stop) is False
    waiter = Waiter(gate, stop)
    assert still_waiting(waiter)
    gate.released(probe=True)
    poll(waiter.done, 5, message="the next probe")
    assert waiter.result == [False]
    waiter.join()


def test_pause_waits_pause_probe_between_probes(
    gate: CaptionGate, clock: Clock, stop: threading.Event, poll: Callable[..., None]
) -> None:
    with capture_logs() as logs:
        assert gate.pause("HTTP 401", probe=False) == 600
        assert gate.pause("HTTP 401", probe=False) == 600
    assert [e["event"] for e in logs] == ["captioning_paused"]  # one error per pause
    assert (gate.state, gate.reason) == ("paused", "HTTP 401")

    waiter = Waiter(gate, stop)
    clock.now += 599
    assert still_waiting(waiter)
    clock.now += 1
    poll(waiter.done, 5, message="the pause probe")
    assert waiter.result == [False]
    waiter.join()

    assert gate.pause("HTTP 401", probe=True) == 600  # the probe failed the same way
    clock.now += 300
    waiter = Waiter(gate, stop)
    assert still_waiting(waiter)
    clock.now += 300
    poll(waiter.done, 5, message="the next pause probe")
    assert waiter.result == [False]
    waiter.join()
    gate.succeeded(probe=True)
    assert gate.state == "closed"


def test_an_outage_during_a_pause_keeps_it_paused_and_probes_at_the_pace_of_pause_probe(
    gate: CaptionGate, clock: Clock, stop: threading.Event, poll: Callable[..., None]
) -> None:
    gate.pause("HTTP 402", probe=False)
    assert gate.outage("timeout", None, probe=False) == 600  # an in-flight call timing out
    assert gate.state == "paused"
    clock.now += 600
    assert gate.acquire(stop) is False
    # The probe meets an outage instead of the 402: the next probe is still pause_probe away,
    # not at once (which would probe in a loop).
    assert gate.outage("timeout", None, probe=True) == 600
    assert gate.state == "paused"
    waiter = Waiter(gate, stop)
    assert still_waiting(waiter)
    clock.now += 600
    poll(waiter.done, 5, message="the next pause probe")
    assert waiter.result == [False]
    waiter.join()


def test_resume_closes_the_gate_and_wakes_waiters(
    gate: CaptionGate, stop: threading.Event, poll: Callable[..., None]
) -> None:
    gate.pause("HTTP 403", probe=False)
    waiters = [Waiter(gate, stop) for _ in range(3)]
    assert all(still_waiting(w) for w in waiters)
    gate.resume()
    for w in waiters:
        poll(w.done, 5, message="resume")
        w.join()
    assert [w.result for w in waiters] == [[True]] * 3
    assert (gate.state, gate.reason) == ("closed", None)


def test_acquire_returns_none_on_stop(
    gate: CaptionGate, stop: threading.Event, poll: Callable[..., None]
) -> None:
    gate.outage("down", None, probe=False)
    waiter = Waiter(gate, stop)
    assert still_waiting(waiter)
    stop.set()
    poll(waiter.done, 5, message="acquire to notice stop")
    assert waiter.result == [None]
    waiter.join()
    assert gate.acquire(stop) is None  # even a closed gate: shutting down means no new calls
