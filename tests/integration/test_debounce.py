"""The debouncer on real files: quiet periods, completeness, give-up, and one thread for all."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from camwatch.debounce import Debouncer, ReadyFile
from camwatch.errors import StateError

pytestmark = pytest.mark.usefixtures("no_thread_leaks")

Poll = Callable[..., None]


class Collector:
    """The debouncer's `emit`: records what was emitted and when; can refuse the first calls."""

    def __init__(self, fail_first: int = 0) -> None:
        self._lock = threading.Lock()
        self._fail = fail_first
        self.calls = 0
        self.items: list[tuple[ReadyFile, float]] = []

    def __call__(self, batch: list[ReadyFile]) -> None:
        with self._lock:
            self.calls += 1
            if self._fail > 0:
                self._fail -= 1
                raise StateError("queue unavailable")
            now = time.monotonic()
            self.items.extend((item, now) for item in batch)

    def paths(self) -> list[str]:
        with self._lock:
            return [item.path for item, _ in self.items]

    def ready(self) -> list[ReadyFile]:
        with self._lock:
            return [item for item, _ in self.items]


Start = Callable[..., tuple[Debouncer, Collector]]


@pytest.fixture
def start() -> Iterator[Start]:
    """Return `start(debounce, complete_timeout=5.0, fail_first=0)`: a running Debouncer and
    its Collector; every one is stopped after the test."""
    running: list[Debouncer] = []

    def make(
        debounce: float, complete_timeout: float = 5.0, fail_first: int = 0
    ) -> tuple[Debouncer, Collector]:
        collector = Collector(fail_first)
        debouncer = Debouncer(collector, debounce, complete_timeout)
        debouncer.start()
        running.append(debouncer)
        return debouncer, collector

    yield make
    for debouncer in running:
        debouncer.stop()


@pytest.fixture
def cam(tmp_path: Path) -> Path:
    folder = tmp_path / "cam"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("announce_every_write", [True, False])
def test_file_written_in_chunks_is_emitted_once_after_the_last_write(
    start: Start,
    cam: Path,
    make_image: Callable[..., bytes],
    poll: Poll,
    announce_every_write: bool,
) -> None:
    debounce = 0.4
    debouncer, collector = start(debounce)
    data = make_image("JPEG", 3, (320, 240))
    path = cam / "slow.jpg"
    chunks = [data[i : i + len(data) // 4 + 1] for i in range(0, len(data), len(data) // 4 + 1)]
    assert len(chunks) >= 4
    with path.open("wb") as out:
        for n, chunk in enumerate(chunks):
            before_write = time.monotonic()  # the file's mtime is no earlier than this
            out.write(chunk)
            out.flush()
            if announce_every_write or n == 0:
                debouncer.touch("front", str(path), "slow.jpg")
            if n < len(chunks) - 1:
                time.sleep(0.1)  # a slow camera: pauses shorter than the debounce
    last_write = before_write

    poll(lambda: collector.paths(), message="the file to be emitted")
    ((item, emitted_at),) = collector.items
    assert item.size == len(data)
    assert item.mtime_ns == path.stat().st_mtime_ns
    assert (item.camera, item.path, item.relpath) == ("front", str(path), "slow.jpg")
    # Not before it had been quiet for `debounce` (a little slack for mtime granularity).
    assert emitted_at >= last_write + debounce - 0.05
    assert len(debouncer) == 0  # nothing left that could emit it a second time


def test_incomplete_file_is_skipped_after_complete_timeout_then_considered_again(
    start: Start, cam: Path, jpeg: bytes, poll: Poll
) -> None:
    debouncer, collector = start(0.1, complete_timeout=0.3)
    path = cam / "broken.jpg"
    path.write_bytes(jpeg[: len(jpeg) // 2])
    with capture_logs() as logs:
        debouncer.touch("front", str(path), "broken.jpg")
        poll(lambda: len(debouncer) == 0, message="the incomplete file to be dropped")
    assert collector.items == []
    skipped = [e for e in logs if e["event"] == "file_incomplete_skipped"]
    assert len(skipped) == 1
    assert skipped[0]["camera"] == "front"
    assert skipped[0]["path"] == str(path)
    assert skipped[0]["log_level"] == "warning"

    path.write_bytes(jpeg)  # it changes again later: the watcher touches it again
    debouncer.touch("front", str(path), "broken.jpg")
    poll(lambda: collector.paths(), message="the completed file")
    assert collector.ready()[0].size == len(jpeg)


def test_file_that_becomes_complete_later_is_emitted(
    start: Start, cam: Path, jpeg: bytes, poll: Poll
) -> None:
    debouncer, collector = start(0.1, complete_timeout=10)
    path = cam / "late.jpg"
    path.write_bytes(jpeg[:100])
    debouncer.touch("front", str(path), "late.jpg")
    time.sleep(0.5)  # the writer stalls long past the debounce: the file is checked, incomplete
    assert collector.items == []
    with path.open("ab") as out:
        out.write(jpeg[100:])  # finished without another event
    poll(lambda: collector.paths(), message="the completed file")
    (item,) = collector.ready()
    assert item.size == len(jpeg)


def test_settled_file_is_emitted_without_waiting(
    start: Start, cam: Path, jpeg: bytes, poll: Poll
) -> None:
    debouncer, collector = start(debounce=60)  # far longer than the poll below allows
    path = cam / "old.jpg"
    path.write_bytes(jpeg)
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    debouncer.touch("front", str(path), "old.jpg", settled=True)
    poll(lambda: collector.paths(), timeout=5, message="the settled file")
    assert collector.paths() == [str(path)]


def test_detected_at_is_when_first_seen(start: Start, cam: Path, jpeg: bytes, poll: Poll) -> None:
    debouncer, collector = start(0.2)
    path = cam / "a.jpg"
    path.write_bytes(jpeg)
    before = time.time()
    debouncer.touch("front", str(path), "a.jpg")
    after = time.time()
    debouncer.touch("front", str(path), "a.jpg")  # a second event does not move detected_at
    poll(lambda: collector.paths(), message="the file")
    assert before <= collector.ready()[0].detected_at <= after


def test_one_thread_for_many_files(start: Start, cam: Path, jpeg: bytes, poll: Poll) -> None:
    debouncer, collector = start(0.2)
    before = set(threading.enumerate())

    def new_threads() -> list[str]:
        return [t.name for t in set(threading.enumerate()) - before]

    paths = []
    for n in range(200):
        path = cam / f"{n:03d}.jpg"
        path.write_bytes(jpeg)
        debouncer.touch("front", str(path), path.name)
        paths.append(str(path))
    assert new_threads() == []  # no thread or timer per file
    poll(lambda: len(collector.items) == 200, message="200 files")
    assert sorted(collector.paths()) == paths
    assert new_threads() == []


def test_deleted_forgotten_and_symlinked_files_are_never_emitted(
    start: Start, cam: Path, tmp_path: Path, jpeg: bytes, poll: Poll
) -> None:
    debouncer, collector = start(0.1)
    deleted = cam / "deleted.jpg"
    deleted.write_bytes(jpeg)
    forgotten = cam / "forgotten.jpg"
    forgotten.write_bytes(jpeg)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(jpeg)
    link = cam / "link.jpg"
    link.symlink_to(outside)
    folder = cam / "folder.jpg"
    folder.mkdir()
    for path in (deleted, forgotten, link, folder):
        debouncer.touch("front", str(path), path.name)
    deleted.unlink()
    debouncer.forget(str(forgotten))
    # A sentinel touched last: once it is out, every earlier deadline has been handled.
    sentinel = cam / "sentinel.jpg"
    sentinel.write_bytes(jpeg)
    debouncer.touch("front", str(sentinel), sentinel.name)
    poll(lambda: collector.paths(), message="the sentinel")
    poll(lambda: len(debouncer) == 0, message="everything to be handled")
    assert collector.paths() == [str(sentinel)]


def test_an_mtime_in_the_future_still_settles(
    start: Start, cam: Path, jpeg: bytes, poll: Poll
) -> None:
    debouncer, collector = start(0.2)
    path = cam / "skewed.jpg"
    path.write_bytes(jpeg)
    future = time.time() + 3600  # a file server whose clock runs an hour ahead
    os.utime(path, (future, future))
    debouncer.touch("front", str(path), path.name)
    poll(lambda: collector.paths(), message="the file with a future mtime")


def test_a_failing_emit_is_retried(start: Start, cam: Path, jpeg: bytes, poll: Poll) -> None:
    debouncer, collector = start(0.1, fail_first=1)
    path = cam / "a.jpg"
    path.write_bytes(jpeg)
    debouncer.touch("front", str(path), path.name)
    poll(lambda: collector.paths(), message="the file after a failed emit")
    assert collector.calls == 2
    assert collector.paths() == [str(path)]


def test_stop_ends_the_thread_and_drops_what_was_settling(cam: Path, jpeg: bytes) -> None:
    collector = Collector()
    debouncer = Debouncer(collector, 30, 60)
    debouncer.stop()  # before start: nothing to join
    debouncer = Debouncer(collector, 30, 60)
    debouncer.start()
    path = cam / "a.jpg"
    path.write_bytes(jpeg)
    debouncer.touch("front", str(path), path.name)
    assert debouncer.pending_paths() == [("front", str(path), "a.jpg")]
    debouncer.stop()
    assert not debouncer._thread.is_alive()
    assert collector.items == []


def test_a_closed_complete_file_is_emitted_without_waiting(
    start: Start, cam: Path, jpeg: bytes, poll: Poll
) -> None:
    debouncer, collector = start(30.0)  # a quiet period no test would wait for
    path = cam / "closed.jpg"
    path.write_bytes(jpeg)
    debouncer.touch("front", str(path), path.name)  # the creation: waits 30 s
    debouncer.closed("front", str(path), path.name)  # the writer closed it: look now
    poll(lambda: collector.paths(), timeout=5.0, message="the closed file")
    assert collector.paths() == [str(path)]


def test_a_closed_incomplete_file_waits_for_debounce(
    start: Start, cam: Path, jpeg: bytes, poll: Poll
) -> None:
    debouncer, collector = start(0.5)
    path = cam / "cut.jpg"
    path.write_bytes(jpeg[: len(jpeg) // 2])
    debouncer.closed("front", str(path), path.name)
    poll(lambda: len(debouncer) == 1, message="the file to be tracked")
    path.write_bytes(jpeg)  # the rest arrives; no event is needed, the debouncer looks again
    poll(lambda: collector.paths(), message="the completed file")
    ((item, _at),) = collector.items
    assert item.size == len(jpeg)


def test_a_late_event_about_an_unchanged_file_is_not_emitted_twice(
    start: Start, cam: Path, jpeg: bytes, poll: Poll
) -> None:
    debouncer, collector = start(0.05)
    path = cam / "once.jpg"
    path.write_bytes(jpeg)
    debouncer.closed("front", str(path), path.name)
    poll(lambda: collector.paths(), message="the file")
    debouncer.touch("front", str(path), path.name)  # e.g. an attribute change
    poll(lambda: len(debouncer) == 0, message="the late event to be handled")
    path.write_bytes(jpeg + b"\0")  # a real change is emitted again
    debouncer.touch("front", str(path), path.name)
    poll(lambda: len(collector.paths()) == 2, message="the changed file")


def test_one_file_the_queue_refuses_does_not_hold_back_the_others(
    cam: Path, jpeg: bytes, poll: Poll
) -> None:
    taken: list[str] = []

    def emit(batch: list[ReadyFile]) -> None:
        # What an unstorable name did before names were stored as bytes: refuse the batch.
        if any("bad" in item.path for item in batch):
            raise UnicodeEncodeError("utf-8", "bad", 0, 1, "surrogates not allowed")
        taken.extend(item.path for item in batch)

    debouncer = Debouncer(emit, 0.05, 5.0)
    debouncer.start()
    try:
        for name in ("a.jpg", "bad.jpg", "c.jpg"):
            (cam / name).write_bytes(jpeg)
            debouncer.touch("front", str(cam / name), name, settled=True)
        poll(lambda: len(taken) == 2 and len(debouncer) == 0, message="the good files")
        assert sorted(taken) == [str(cam / "a.jpg"), str(cam / "c.jpg")]
    finally:
        debouncer.stop()


def test_an_unreadable_file_is_reported_at_once(
    start: Start, cam: Path, jpeg: bytes, poll: Poll, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every file (the e2e tests cover this as another user)")
    debouncer, collector = start(0.05, complete_timeout=600.0)
    path = cam / "private.jpg"
    path.write_bytes(jpeg)
    path.chmod(0)
    debouncer.closed("front", str(path), path.name)
    poll(lambda: len(debouncer) == 0, message="the file to be dropped")
    assert "file_unreadable" in capsys.readouterr().out
    assert collector.paths() == []
