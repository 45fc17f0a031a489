"""The start-up scan: queue every file in the camera folders that is not yet done.

Runs on its own thread after the watches are in place, so no file written during the scan is
missed and the watcher is never blocked. A file whose record says it was finished with the same
size and mtime is passed over without reading it, which keeps a restart over 100,000 done files
cheap. Old files go straight to the queue, oldest first; files changed within `debounce` go
through the debouncer like new ones.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from camwatch.config import CameraConfig
from camwatch.files import relative_candidate
from camwatch.log import get_logger
from camwatch.store import FINAL_STATES, NewImage, Store
from camwatch.watcher import walk_candidates

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
        rel = relative_candidate(root, path)
        if rel is None:
            continue
        result.seen += 1
        try:
            st = os.lstat(path)
        except OSError:
            continue
        record = known.get(path)
        if record is not None:
            size, mtime_ns, state = record
            if state in ("pending", "captioning"):
                continue  # already queued (recovery resumes it)
            if state in FINAL_STATES and (size, mtime_ns) == (st.st_size, st.st_mtime_ns):
                result.already_done += 1
                if state == "done" and finished is not None:
                    finished(camera.name, path)
                continue
        if now - st.st_mtime < debounce:
            touch(camera.name, path, rel)
            result.settling += 1
            continue
        old.append(NewImage(camera.name, path, rel, st.st_size, st.st_mtime_ns, now, prio=1))
    old.sort(key=lambda image: image.mtime_ns)
    for start in range(0, len(old), _BATCH):
        if stopping():
            break
        result.queued += store.add_pending(old[start : start + _BATCH])
    return result
