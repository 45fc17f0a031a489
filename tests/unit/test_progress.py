"""The progress summary: when a burst gets a line, what the line says (rate, eta, counts), the
final line; time stepped by hand through an injected clock. And the `--once` bar's stream."""

from __future__ import annotations

import io

import pytest

from camwatch.errors import ConfigError
from camwatch.progress import (
    DEFAULT_EVERY_S,
    EVERY_ENV,
    Progress,
    TerminalBar,
    every_from_env,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def finish(progress: Progress, count: int, outcome: str = "captioned") -> None:
    for _ in range(count):
        progress.finished(outcome)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_idle_and_a_single_image_say_nothing(clock: Clock) -> None:
    progress = Progress(every=10.0, clock=clock)
    for _ in range(30):
        assert progress.observe(0) is None
        clock.now += 1.0
    # One image: queued for a second, done, drained: no line, not even a final one.
    assert progress.observe(1) is None
    clock.now += 1.0
    finish(progress, 1)
    assert progress.observe(0) is None
    assert not progress.active


def test_a_burst_gets_a_line_every_interval_then_a_final_one(clock: Clock) -> None:
    progress = Progress(every=10.0, clock=clock)
    assert progress.observe(100) is None  # the burst begins
    assert progress.active
    lines = []
    queued = 100
    for _ in range(30):  # 30 s at 2 images/s, a look every second
        clock.now += 1.0
        finish(progress, 2)
        queued -= 2
        line = progress.observe(queued)
        if line is not None:
            lines.append((clock.now - 1000.0, line))
    assert [at for at, _ in lines] == [10.0, 20.0, 30.0]
    first = lines[0][1]
    assert first.event == "progress"
    assert first.fields == {
        "queued": 80,
        "done": 20,
        "rate": 2.0,
        "eta_s": 40,
        "elapsed_s": 10.0,
        "outcomes": {"captioned": 20},
    }
    assert lines[2][1].fields["done"] == 60
    assert lines[2][1].fields["eta_s"] == 20
    clock.now += 5.0
    finish(progress, 38)
    finish(progress, 2, "failed")
    final = progress.observe(0)
    assert final is not None
    assert final.event == "burst_done"
    assert final.fields == {
        "done": 100,
        "elapsed_s": 35.0,
        "rate": 2.86,
        "outcomes": {"captioned": 98, "failed": 2},
    }
    assert not progress.active
    assert progress.observe(0) is None  # said once


def test_jobs_finished_before_the_first_busy_look_belong_to_the_burst(clock: Clock) -> None:
    # The main loop looks once a second: the burst began at the last look that saw no work.
    progress = Progress(every=10.0, clock=clock)
    assert progress.observe(0) is None
    clock.now += 1.0
    finish(progress, 18)
    assert progress.observe(62) is None
    clock.now += 9.0
    finish(progress, 20)
    line = progress.observe(42)
    assert line is not None
    assert line.fields["done"] == 38
    assert line.fields["elapsed_s"] == 10.0
    assert line.fields["rate"] == 3.8
    clock.now += 2.0
    finish(progress, 42)
    final = progress.observe(0)
    assert final is not None and final.fields["done"] == 80
    assert final.fields["elapsed_s"] == 12.0


def test_a_burst_shorter_than_the_interval_gets_no_line(clock: Clock) -> None:
    progress = Progress(every=10.0, clock=clock)
    assert progress.observe(5) is None
    clock.now += 9.0
    finish(progress, 5)
    assert progress.observe(0) is None


def test_rate_is_smoothed_over_intervals(clock: Clock) -> None:
    progress = Progress(every=10.0, clock=clock)
    progress.observe(1000)
    clock.now += 10.0
    finish(progress, 40)  # 4/s
    first = progress.observe(960)
    assert first is not None and first.fields["rate"] == 4.0
    clock.now += 10.0
    finish(progress, 20)  # 2/s: the estimate moves halfway
    second = progress.observe(940)
    assert second is not None
    assert second.fields["rate"] == 3.0
    assert second.fields["eta_s"] == 314  # ceil(940 / 3)
    assert second.fields["done"] == 60


def test_eta_is_null_when_nothing_finished_and_a_stalled_queue_says_it_once(
    clock: Clock,
) -> None:
    # The API is paused: nothing finishes. One line says so (eta unknown), then silence
    # until something changes.
    progress = Progress(every=10.0, clock=clock)
    progress.observe(50)
    clock.now += 10.0
    stalled = progress.observe(50)
    assert stalled is not None
    assert stalled.fields["rate"] == 0.0
    assert stalled.fields["eta_s"] is None
    assert stalled.fields["done"] == 0
    for _ in range(5):
        clock.now += 10.0
        assert progress.observe(50) is None
    clock.now += 10.0
    finish(progress, 10)
    resumed = progress.observe(40)
    assert resumed is not None and resumed.fields["done"] == 10
    assert resumed.fields["eta_s"] is not None


def test_requeued_jobs_are_counted_but_not_done(clock: Clock) -> None:
    progress = Progress(every=5.0, clock=clock)
    progress.observe(10)
    clock.now += 5.0
    finish(progress, 3)
    finish(progress, 4, "requeued")
    line = progress.observe(7)
    assert line is not None
    assert line.fields["done"] == 3
    assert line.fields["outcomes"] == {"captioned": 3, "requeued": 4}
    assert progress.done_ever == 3


def test_a_late_tick_keeps_the_beat_without_a_flurry(clock: Clock) -> None:
    progress = Progress(every=10.0, clock=clock)
    progress.observe(500)
    clock.now += 35.0  # the main loop was held up
    finish(progress, 35)
    assert progress.observe(465) is not None
    clock.now += 1.0
    finish(progress, 1)
    assert progress.observe(464) is None  # no line owed for the missed intervals
    clock.now += 4.0
    finish(progress, 4)
    assert progress.observe(460) is not None  # the beat: 40 s after the start


def test_counts_start_afresh_with_each_burst(clock: Clock) -> None:
    progress = Progress(every=10.0, clock=clock)
    finish(progress, 7)  # finished while idle: no burst's
    progress.observe(0)
    progress.observe(20)
    clock.now += 10.0
    finish(progress, 10)
    line = progress.observe(10)
    assert line is not None and line.fields["done"] == 10
    clock.now += 5.0
    finish(progress, 10)
    assert progress.observe(0) is not None
    progress.observe(30)
    clock.now += 10.0
    finish(progress, 3)
    second = progress.observe(27)
    assert second is not None
    assert second.fields["done"] == 3
    assert second.fields["elapsed_s"] == 10.0
    assert progress.done_ever == 30  # the --once bar counts across bursts


def test_the_interval_comes_from_the_environment_for_tests() -> None:
    assert every_from_env({}) == DEFAULT_EVERY_S
    assert every_from_env({EVERY_ENV: "0.5"}) == 0.5
    for bad in ("0", "-1", "soon", "nan", "inf"):
        with pytest.raises(ConfigError) as caught:
            every_from_env({EVERY_ENV: bad})
        assert caught.value.problems == [
            f"{EVERY_ENV}: expected a positive number of seconds, got {bad!r}"
        ]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_stream_writes_log_lines_above_the_bar() -> None:
    terminal = FakeTerminal()
    bar = TerminalBar(terminal)
    assert bar.isatty()
    bar.write("before\n")
    bar.update(0, 0)  # nothing to do: no bar
    assert terminal.getvalue() == "before\n"
    bar.update(1, 3)
    bar.write("a line\n")
    bar.update(3, 3)
    bar.close()
    out = terminal.getvalue()
    before, _, after = out.partition("a line\n")
    # tqdm blanked the bar's row and went back to its start before writing the line, then drew
    # the bar again below it; it leaves the final count on the terminal.
    assert before.startswith("before\n\rimages:   0%|")
    blanked = before.split("\r")
    assert blanked[-1] == "" and blanked[-2].strip() == ""
    assert "1/3" in after
    last = after.rsplit("\r", 1)[1]
    assert last.startswith("images: 100%|") and "| 3/3 [" in last and last.endswith("img/s]\n")
    bar.write("after\n")
    assert terminal.getvalue() == out + "after\n"
