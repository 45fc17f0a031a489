"""The start-up scan: queue every file in the camera folders that is not yet done.

Runs on its own thread after the watches are in place, so no file written during the scan is
missed and the watcher is never blocked. A file whose record says it was finished with the same
size and mtime is passed over without reading it, which keeps a restart over 100,000 done files
cheap. Old files go straight to the queue, oldest first; files changed within `debounce` go
through the debouncer like new ones.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from camwatch.config import CameraConfig
from camwatch.errors import StateError
from camwatch.files import relative_candidate
from camwatch.folders import walk_candidates
from camwatch.log import get_logger
from camwatch.store import FINAL_STATES, NewImage, Store

log = get_logger(__name__)

_BATCH = 2000


@dataclass
class ScanResult:
    """What a scan found."""

    seen: int = 0
    queued: int = 0
    settling: int = 0
    already_done: int = 0


def scan_camera(
    camera: CameraConfig,
    store: Store,
    touch: Callable[[str, str, str], None],
    debounce: float,
    stopping: Callable[[], bool] = lambda: False,
    finished: Callable[[str, str], None] | None = None,
) -> ScanResult:
    """Given a camera, queue its files that are not yet done. `touch` receives files too young
    to be settled; `finished` receives files done before whose after-action still has to run."""
    result = ScanResult()
    known = store.known_files(camera.name)
    root = str(camera.path)
    now = time.time()
    old: list[NewImage] = []
    for path in walk_candidates(root, camera.recursive):
        if stopping():
            break
        try:
            image = _consider(camera, root, path, known, now, debounce, touch, finished, result)
        except Exception:  # one odd file must not end the scan for the files after it
            log.warning(
                "file_skipped",
                camera=camera.name,
                path=path,
                outcome="skipped",
                reason="could not be considered",
                exc_info=True,
            )
            continue
        if image is not None:
            old.append(image)
    old.sort(key=lambda image: image.mtime_ns)
    for start in range(0, len(old), _BATCH):
        if stopping():
            break
        result.queued += _queue(store, old[start : start + _BATCH])
    return result


def _consider(
    camera: CameraConfig,
    root: str,
    path: str,
    known: dict[str, tuple[int | None, int | None, str]],
    now: float,
    debounce: float,
    touch: Callable[[str, str, str], None],
    finished: Callable[[str, str], None] | None,
    result: ScanResult,
) -> NewImage | None:
    """Given one file found, return it if it should go to the queue now; hand it to `touch` if
    it is still settling."""
    rel = relative_candidate(root, path)
    if rel is None:
        return None
    result.seen += 1
    try:
        st = os.lstat(path)
    except OSError:
        return None
    record = known.get(path)
    if record is not None:
        size, mtime_ns, state = record
        if state in ("pending", "captioning"):
            return None  # already queued (recovery resumes it)
        if state in FINAL_STATES and (size, mtime_ns) == (st.st_size, st.st_mtime_ns):
            result.already_done += 1
            if state == "done" and finished is not None:
                finished(camera.name, path)
            return None
    if now - st.st_mtime < debounce:
        touch(camera.name, path, rel)
        result.settling += 1
        return None
    return NewImage(camera.name, path, rel, st.st_size, st.st_mtime_ns, now, prio=1)


def _queue(store: Store, batch: list[NewImage]) -> int:
    """Queue a batch; if the store refuses it for something other than its own state, queue
    the files one by one and skip those it refuses, so one cannot hold back the rest."""
    try:
        return store.add_pending(batch)
    except StateError:
        raise
    except Exception:
        if len(batch) == 1:
            log.warning(
                "file_skipped",
                camera=batch[0].camera,
                path=batch[0].path,
                outcome="skipped",
                reason="cannot be queued",
                exc_info=True,
            )
            return 0
        return sum(_queue(store, [image]) for image in batch)


class Scanner:
    """One thread that scans cameras on request (at start, and whenever a folder comes back or
    lost events), one at a time, each camera at most once in the queue."""

    def __init__(self, scan: Callable[[str], None]) -> None:
        self._scan = scan
        self._wanted: list[str] = []
        self._cond = threading.Condition()
        self._busy = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="scan", daemon=True)
        self._thread.start()

    def request(self, *cameras: str) -> None:
        """Scan these cameras soon."""
        with self._cond:
            for name in cameras:
                if name not in self._wanted:
                    self._wanted.append(name)
            self._cond.notify()

    def idle(self) -> bool:
        """Return whether no scan runs or waits."""
        with self._cond:
            return not self._wanted and not self._busy

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._wanted and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                name = self._wanted.pop(0)
                self._busy = True
            try:
                self._scan(name)
            except Exception:  # the next request must still be served
                log.exception("scan_failed", camera=name)
            finally:
                with self._cond:
                    self._busy = False
