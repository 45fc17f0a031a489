"""One thread that waits until each new file is finished: quiet for `debounce`, or closed by its
writer, and a whole image.

Files are kept in a dict and a heap of deadlines (no thread or timer per file). At a file's
deadline it is stat'ed: quiet means its mtime is at least `debounce` old (or, where the file
server's clock disagrees with ours, that its size and mtime stayed the same for `debounce` as we
watched). A file its writer closed or renamed into place needs no quiet period: it is checked at
once. A quiet or closed file is then walked for completeness (JPEG segments and scans up to the
final EOI, PNG chunks up to IEND); a complete one is emitted, an incomplete one is checked again
until `complete_timeout` after its last change, then dropped with a warning (a later change
brings it back through the watcher). A file we may not read is reported at once.
"""

from __future__ import annotations

import heapq
import itertools
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from camwatch.config import Config
from camwatch.errors import StateError
from camwatch.files import check_complete
from camwatch.log import get_logger
from camwatch.store import NewImage

log = get_logger(__name__)

_CLOCK_SKEW_S = 1.0  # an mtime further in the future than this is not trusted
_EMIT_RETRY_S = 2.0  # how soon files the queue could not take are offered again
_EMIT_BATCH = 500  # files handed to the queue at once: bounds memory and the store's lock time
_RECENT_MAX = 4096  # files remembered as handed over, to drop a late event about the same bytes


# A file that is quiet and complete is exactly what the queue takes: one record type for both.
ReadyFile = NewImage


@dataclass(slots=True)
class _Entry:
    camera: str
    path: str
    relpath: str
    detected_at: float
    deadline: float
    changed_at: float  # monotonic time of the last change we know of
    sig: tuple[int, int] | None = None
    sig_since: float = 0.0
    settled: bool = field(default=False)
    closed: bool = False  # the writer closed it or renamed it into place: no quiet period


def _skipped(event: str, camera: str, path: str, reason: str, **more: Any) -> None:
    log.warning(event, camera=camera, path=path, outcome="skipped", reason=reason, **more)


class Debouncer:
    """Collects touched files and emits them, in batches, once quiet and complete."""

    def __init__(
        self,
        emit: Callable[[list[ReadyFile]], None],
        debounce: float,
        complete_timeout: float,
        max_bytes: int = 1 << 62,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._emit = emit
        self.debounce = debounce
        self.complete_timeout = complete_timeout
        self.max_bytes = max_bytes  # larger files are not read here: the pipeline skips them
        # Each camera's resolved folder: files are opened one folder at a time below it, so a
        # folder swapped for a symbolic link is never followed (set by `tune`).
        self.roots: dict[str, str] = {}
        self._mono = monotonic
        self._wall = wall
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._emit_failing = False
        # A file handed over at once on close can be touched again by a late event (a folder's
        # synthetic creations, an attribute change): unchanged, it is not handed over twice.
        self._recent: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._thread = threading.Thread(target=self._run, name="debounce", daemon=True)

    def tune(self, config: Config) -> None:
        """Take the settings of a (new) configuration: the periods, the size limit and each
        camera's folder."""
        self.debounce = config.debounce
        self.complete_timeout = config.complete_timeout
        self.max_bytes = config.caption.max_image_bytes
        self.roots = {c.name: str(c.path) for c in config.cameras}

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; files still settling are dropped (the start-up scan finds them)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __len__(self) -> int:
        with self._cond:
            return len(self._entries)

    def touch(
        self, camera: str, path: str, relpath: str, settled: bool = False, delay: float = 0.0
    ) -> None:
        """Note that `path` appeared or changed. Never blocks on I/O. With `settled` (a file
        found at start whose mtime is already old) no further quiet period is needed; `delay`
        postpones the next look at it."""
        now = self._mono()
        with self._cond:
            entry = self._entries.get(path)
            deadline = (now if settled else now + self.debounce) + delay
            if entry is None:
                entry = _Entry(camera, path, relpath, self._wall(), deadline, now, settled=settled)
                self._entries[path] = entry
            else:
                entry.deadline = deadline
                entry.changed_at = now
                entry.settled = settled
                entry.closed = False
            heapq.heappush(self._heap, (deadline, next(self._seq), path))
            if self._heap[0][2] == path:
                self._cond.notify()

    def closed(self, camera: str, path: str, relpath: str) -> None:
        """Note that `path` was closed after writing or renamed into place: look at it now, and
        queue it at once if it is a complete image. Never blocks on I/O."""
        self.touch(camera, path, relpath, settled=True)
        with self._cond:
            entry = self._entries.get(path)
            if entry is not None:
                entry.closed = True

    def forget(self, path: str) -> None:
        """Stop tracking `path` (it was deleted or moved away)."""
        with self._cond:
            self._entries.pop(path, None)

    def pending_paths(self) -> list[tuple[str, str, str]]:
        """Return (camera, path, relpath) of every file still settling."""
        with self._cond:
            return [(e.camera, e.path, e.relpath) for e in self._entries.values()]

    def _run(self) -> None:
        while True:
            due: list[_Entry] = []
            with self._cond:
                while not self._stopping:
                    now = self._mono()
                    while self._heap and self._heap[0][0] <= now:
                        deadline, _, path = heapq.heappop(self._heap)
                        entry = self._entries.get(path)
                        if entry is not None and entry.deadline == deadline:
                            due.append(entry)
                    if due:
                        break
                    timeout = self._heap[0][0] - now if self._heap else None
                    self._cond.wait(timeout)
                if self._stopping:
                    return
            try:
                self._check_due(due)
            except Exception:  # the thread must outlive any one surprise
                log.exception("debounce_failed", files=len(due))

    def _check_due(self, due: list[_Entry]) -> None:
        ready: list[ReadyFile] = []
        for i, entry in enumerate(due):
            try:
                item = self._check(entry)
            except Exception:  # one odd file must not stop the thread
                log.exception("debounce_check_failed", camera=entry.camera, path=entry.path)
                self.forget(entry.path)
                item = None
            if item is not None:
                ready.append(item)
            # A burst of thousands goes to the queue in batches: workers start on the first
            # while the rest are checked, and no list of them all is ever held.
            if ready and (len(ready) >= _EMIT_BATCH or i == len(due) - 1):
                self._hand_over(ready)
                ready = []

    def _hand_over(self, ready: list[ReadyFile]) -> None:
        try:
            self._emit(ready)
        except StateError as exc:
            # The queue cannot take them (disk full, read-only state_dir): keep the files and
            # try again in a while. One error per failure streak, not one per retry.
            if not self._emit_failing:
                log.error("queue_write_failed", count=len(ready), error=str(exc))
            self._emit_failing = True
            for item in ready:
                self.touch(item.camera, item.path, item.relpath, settled=True, delay=_EMIT_RETRY_S)
            return
        except Exception:
            # Something about one file (its name, say) that the queue refuses: hand them over
            # one by one so that the others still go, and skip the one that cannot.
            if len(ready) > 1:
                for item in ready:
                    self._hand_over([item])
                return
            item = ready[0]
            _skipped("file_skipped", item.camera, item.path, "cannot be queued", exc_info=True)
            return
        for item in ready:
            self._recent[item.path] = (item.size, item.mtime_ns)
            self._recent.move_to_end(item.path)
        while len(self._recent) > _RECENT_MAX:
            self._recent.popitem(last=False)
        if self._emit_failing:
            self._emit_failing = False
            log.info("queue_write_recovered", count=len(ready))

    def _check(self, entry: _Entry) -> ReadyFile | None:
        """Look at a file whose deadline came: return it if ready, else reschedule or drop."""
        now = self._mono()
        try:
            st = os.lstat(entry.path)
        except FileNotFoundError:
            self.forget(entry.path)
            return None
        if not stat.S_ISREG(st.st_mode):
            self.forget(entry.path)  # symbolic links and the like are never read
            return None
        sig = (st.st_size, st.st_mtime_ns)
        if sig != entry.sig:
            if entry.sig is not None:
                entry.changed_at = now
            entry.sig, entry.sig_since = sig, now
        age = self._wall() - st.st_mtime_ns / 1e9
        trusted = age > -_CLOCK_SKEW_S
        quiet = (
            entry.settled
            or (trusted and age >= self.debounce)
            or (now - entry.sig_since >= self.debounce)
        )
        if not quiet:
            wait = self.debounce - age if trusted and age >= 0 else self.debounce
            return self._reschedule(entry, now + max(wait, 0.01))
        try:
            root = self.roots.get(entry.camera)
            complete = sig[0] > self.max_bytes or check_complete(entry.path, root)
        except PermissionError:
            # Said now, not as "incomplete" after complete_timeout; a change (chmod included)
            # brings it back through the watcher.
            _skipped("file_unreadable", entry.camera, entry.path, "permission denied")
            self.forget(entry.path)
            return None
        if complete:
            with self._cond:
                if self._entries.get(entry.path) is entry:
                    del self._entries[entry.path]
                else:
                    return None
            if self._recent.get(entry.path) == sig:
                return None
            return ReadyFile(
                entry.camera, entry.path, entry.relpath, sig[0], sig[1], entry.detected_at
            )
        if now - entry.changed_at >= self.complete_timeout:
            reason = f"not a complete JPEG/PNG {self.complete_timeout:g}s after its last change"
            _skipped("file_incomplete_skipped", entry.camera, entry.path, reason)
            self.forget(entry.path)
            return None
        if entry.closed:
            # Closed but not whole (a writer that closes and reopens, a cut upload): from now on
            # it waits to be quiet like any other file.
            entry.closed = entry.settled = False
            entry.sig, entry.sig_since = sig, now
            return self._reschedule(entry, now + max(self.debounce, 0.01))
        entry.settled = False
        return self._reschedule(entry, now + max(min(self.debounce, 2.0), 0.25))

    def _reschedule(self, entry: _Entry, deadline: float) -> None:
        with self._cond:
            if self._entries.get(entry.path) is entry:
                entry.deadline = deadline
                heapq.heappush(self._heap, (deadline, next(self._seq), entry.path))
        return None
