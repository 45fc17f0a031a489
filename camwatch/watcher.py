"""Each camera's folder, watched by inotify or polled, and looked for again when it goes away.

One thread per camera supervises its folder: it picks the mode (`auto` polls network and FUSE
filesystems, where inotify sees no write made by another host), falls back to polling when the
inotify watch limit is reached, polls every `poll_interval` in poll mode, and every
`min(poll_interval, 5 s)` checks that the folder is still the one it watches (same device and
inode, readable). A folder that went away is reported once (`camera_unavailable`) and looked for
again; when it is back it is watched again (`camera_watched`) and scanned, so nothing written
meanwhile is missed. A hung network mount blocks only its own camera's thread.

Events reach the debouncer, which never blocks: a file closed after writing or renamed into
place is looked at at once (`closed`), any other change waits for `debounce` (`touch`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from watchdog.events import DirMovedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.inotify import InotifyObserver

from camwatch.config import CameraConfig
from camwatch.files import relative_candidate
from camwatch.folders import choose_mode, folder_problem, identity, walk_candidates
from camwatch.log import get_logger
from camwatch.mounts import is_mount_point, mount_of
from camwatch.poller import TreePoller

log = get_logger(__name__)

Touch = Callable[[str, str, str], None]  # (camera, path, relpath)
Forget = Callable[[str], None]
Rescan = Callable[[str], None]  # camera name: list its folder and queue what is not done

_LOOK_AGAIN_MAX_S = 5.0  # a missing folder is looked for at least this often
_LIMIT_ERRNOS = (errno.ENOSPC, errno.EMFILE)


@dataclass(frozen=True)
class Sinks:
    """Where a camera's findings go: the debouncer's three doors and a rescan request."""

    touch: Touch  # changed: wait for `debounce`
    closed: Touch  # closed after writing or renamed into place: look now
    forget: Forget  # deleted or moved away
    rescan: Rescan  # events were lost, or the folder came back: list it again


class CameraHandler(FileSystemEventHandler):
    """Turns one camera's inotify events into candidate paths (on watchdog's thread: it only
    filters names and calls the debouncer, which never blocks)."""

    def __init__(self, camera: CameraConfig, sinks: Sinks, on_root_gone: Callable[[], None]):
        self.camera = camera
        self.root = str(camera.path)
        self._sinks = sinks
        self._root_gone = on_root_gone

    def offer(self, path: str, door: Touch) -> None:
        """Hand `path` to `door` if it names a snapshot of this camera."""
        rel = relative_candidate(self.root, path)
        if rel is None or (not self.camera.recursive and os.sep in rel):
            return  # not a snapshot, or in a subfolder of a camera with `recursive: false`
        door(self.camera.name, os.path.normpath(path), rel)

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self._dispatch(event)
        except Exception:  # one odd event or name must not stop watchdog's thread
            log.exception("watch_event_failed", camera=self.camera.name)

    def _dispatch(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        src = os.fsdecode(event.src_path)
        sinks = self._sinks
        if kind == "closed":
            self.offer(src, sinks.closed)  # the writer is done with it
        elif kind in ("created", "modified", "attrib"):
            if not event.is_directory:
                self.offer(src, sinks.touch)
        elif kind == "moved":
            dest = os.fsdecode(event.dest_path)
            if isinstance(event, DirMovedEvent):
                # A folder moved in from outside brings files no event announced: look inside
                # it. (A folder moved within the camera comes with a move event per file.)
                if dest and not src:
                    for path in walk_candidates(dest, self.camera.recursive):
                        self.offer(path, sinks.closed)
            else:
                if src:
                    sinks.forget(src)
                if dest:
                    self.offer(dest, sinks.closed)  # `x.jpg.part` -> `x.jpg`, or moved in
        elif kind == "deleted":
            if not event.is_directory:
                sinks.forget(src)
            elif os.path.normpath(src) == self.root:
                self._root_gone()
        elif kind == "events_lost":
            log.warning(
                "watch_overflow",
                camera=self.camera.name,
                reason="inotify queue overflowed; scanning the folder again",
            )
            sinks.rescan(self.camera.name)


class CameraWatch:
    """One camera's folder and the thread that keeps it watched."""

    def __init__(self, camera: CameraConfig, sinks: Sinks, observer: BaseObserver) -> None:
        self.camera = camera
        self.root = str(camera.path)
        self._sinks = sinks
        self._observer = observer
        self._handler = CameraHandler(camera, sinks, self.nudge)
        self._stop = threading.Event()
        self._nudge = threading.Event()
        self._lock = threading.Lock()
        self.mode: str | None = None  # None: not watched now
        self._watch: ObservedWatch | None = None
        self._poller: TreePoller | None = None
        self._identity: tuple[int, int] | None = None
        self._mount_point: str | None = None
        self._unavailable: str | None = None  # the reason last logged
        self._limit_hit = False
        self._thread = threading.Thread(target=self._run, name=f"watch-{camera.name}", daemon=True)

    @property
    def check_every(self) -> float:
        return min(self.camera.poll_interval, _LOOK_AGAIN_MAX_S)

    def start(self) -> bool:
        """Try to watch the folder now, then keep it watched on the camera's thread. Return
        whether it is watched now."""
        watched = self._try_watch()
        self._thread.start()
        return watched

    def stop(self) -> None:
        """Stop watching and end the thread."""
        self._stop.set()
        self._nudge.set()
        self._unwatch()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def nudge(self) -> None:
        """Look at the folder soon (its root was deleted)."""
        self._nudge.set()

    def limit_reached(self) -> None:
        """The inotify watch limit was hit below this folder: switch to polling."""
        self._limit_hit = True
        self._nudge.set()

    # -- the camera's thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._nudge.wait(self.check_every)
            self._nudge.clear()
            if self._stop.is_set():
                return
            try:
                self._tick()
            except Exception:  # the camera must stay supervised whatever one round met
                log.exception("watch_check_failed", camera=self.camera.name)

    def _tick(self) -> None:
        if self.mode is None:
            if self._try_watch():
                self._sinks.rescan(self.camera.name)
            return
        if self._limit_hit and self.mode == "inotify":
            log.error(
                "inotify_limit_reached",
                camera=self.camera.name,
                reason="inotify watch limit reached below the folder; polling it instead"
                " (raise the sysctl fs.inotify.max_user_watches to watch it with inotify)",
            )
            self._unwatch()
            self._start_poll("inotify limit")
            self._sinks.rescan(self.camera.name)
            return
        gone = self._gone_reason()
        if gone is not None:
            self._unwatch()
            self._report_unavailable(gone)
            return
        if self._identity != identity(self.root):
            # Deleted and created again, or a share mounted over it: the old watch sees nothing.
            self._unwatch()
            if self._try_watch():
                self._sinks.rescan(self.camera.name)
            return
        if self._poller is not None:
            self._poll_round()

    def _gone_reason(self) -> str | None:
        problem = folder_problem(self.root)
        if problem is not None:
            return problem
        if self._mount_point is not None and not is_mount_point(self._mount_point):
            return f"unmounted ({self._mount_point})"
        return None

    # -- starting and stopping a watch ---------------------------------------------------------

    def _try_watch(self) -> bool:
        problem = folder_problem(self.root)
        if problem is None and self._mount_point and not is_mount_point(self._mount_point):
            # The share it was on is unmounted: the empty folder beneath is not the camera's.
            problem = f"unmounted ({self._mount_point})"
        if problem is not None:
            self._report_unavailable(problem)
            return False
        mode, fstype = choose_mode(self.camera)
        mount = mount_of(self.root)
        # Remember a share's own mount point: once it is unmounted, the empty folder beneath
        # is not the camera folder.
        self._mount_point = (
            mount.mount_point if mount is not None and mount.mount_point != "/" else None
        )
        self._identity = identity(self.root)
        self._limit_hit = False
        try:
            if mode == "inotify":
                try:
                    self._start_inotify()
                except OSError as exc:
                    if exc.errno not in _LIMIT_ERRNOS:
                        raise
                    log.error(
                        "inotify_limit_reached",
                        camera=self.camera.name,
                        reason=f"{exc.strerror or exc}; polling the folder instead (raise the"
                        " sysctl fs.inotify.max_user_watches to watch it with inotify)",
                    )
                    mode = "poll"
            if mode == "poll":
                self._start_poll(None)
        except OSError as exc:
            self._unwatch()
            self._report_unavailable(exc.strerror.lower() if exc.strerror else str(exc))
            return False
        self.mode = mode
        self._unavailable = None
        log.info(
            "camera_watched", camera=self.camera.name, path=self.root, mode=mode, fstype=fstype
        )
        return True

    def _start_inotify(self) -> None:
        with self._lock:
            self._watch = self._observer.schedule(
                self._handler, self.root, recursive=self.camera.recursive
            )

    def _start_poll(self, why: str | None) -> None:
        poller = TreePoller(self.root, recursive=self.camera.recursive)
        poller.baseline()  # what is there now is the scan's to queue
        with self._lock:
            self._poller = poller
        self.mode = "poll"
        if why is not None:
            log.info(
                "camera_watched",
                camera=self.camera.name,
                path=self.root,
                mode="poll",
                fstype=choose_mode(self.camera)[1],
                reason=why,
            )

    def _unwatch(self) -> None:
        with self._lock:
            watch, self._watch = self._watch, None
            self._poller = None
            self.mode = None
        if watch is not None:
            # Its emitter may already have ended with the deleted folder.
            with contextlib.suppress(KeyError, OSError, RuntimeError):
                self._observer.unschedule(watch)

    def _report_unavailable(self, reason: str) -> None:
        if self._unavailable is None:
            log.warning(
                "camera_unavailable",
                camera=self.camera.name,
                path=self.root,
                reason=reason,
                retry_every_s=self.check_every,
            )
        self._unavailable = reason

    # -- polling -------------------------------------------------------------------------------

    def _poll_round(self) -> None:
        poller = self._poller
        if poller is None:
            return
        try:
            result = poller.round()
        except OSError as exc:
            self._unwatch()
            self._report_unavailable(exc.strerror.lower() if exc.strerror else str(exc))
            return
        for path in result.gone:
            self._sinks.forget(path)
        for path in result.changed:
            self._handler.offer(path, self._sinks.touch)
        for folder, reason in result.unreadable:
            log.warning("folder_unreadable", camera=self.camera.name, path=folder, reason=reason)


class _LimitWatcher(logging.Filter):
    """Notices watchdog's "Unable to watch" warnings (the watch limit hit in a subfolder made
    after the watch began, which watchdog only logs) and tells the camera concerned."""

    def __init__(self, owner: Watcher) -> None:
        super().__init__()
        self._owner = owner

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Unable to watch"):
            self._owner.limit_reached(record.getMessage())
        return True


class Watcher:
    """Every camera's folder, each kept watched by its own CameraWatch; re-synced on reload."""

    def __init__(self, sinks: Sinks, observer: BaseObserver | None = None) -> None:
        self._sinks = sinks
        # Full events: a file moved in from outside the folder comes as a move (looked at at
        # once), not as a creation (which waits for `debounce`).
        self._observer = observer or InotifyObserver(generate_full_events=True)
        self._observer.name = "watchdog"
        self._cameras: dict[str, CameraWatch] = {}
        self._started = False
        self._filter = _LimitWatcher(self)
        logging.getLogger("watchdog.observers.inotify").addFilter(self._filter)

    def sync(self, cameras: Iterable[CameraConfig]) -> list[str]:
        """Watch exactly `cameras`: add new ones, drop removed ones, re-add changed ones. Return
        the names of cameras newly watched now (a camera whose folder is not there yet is
        watched, and scanned, when it appears)."""
        if not self._started:
            self._observer.start()
            self._started = True
        wanted = {c.name: c for c in cameras}
        for name in list(self._cameras):
            if wanted.get(name) != self._cameras[name].camera:
                self._cameras.pop(name).stop()
        added = []
        for name, camera in wanted.items():
            if name in self._cameras:
                continue
            watch = CameraWatch(camera, self._sinks, self._observer)
            self._cameras[name] = watch
            if watch.start():
                added.append(name)
        return added

    def modes(self) -> dict[str, str | None]:
        """Return each camera's watch mode now (None: its folder is unavailable)."""
        return {name: watch.mode for name, watch in self._cameras.items()}

    def states(self) -> dict[str, tuple[str | None, str | None]]:
        """Return each camera's watch mode and, when its folder is not watched, why (for
        /metrics and /healthz, from another thread: the dict is copied in one step)."""
        return {name: (w.mode, w._unavailable) for name, w in list(self._cameras.items())}

    def limit_reached(self, message: str) -> None:
        for watch in list(self._cameras.values()):
            if watch.root in message and watch.mode == "inotify":
                watch.limit_reached()

    def is_alive(self) -> bool:
        """Return whether the observer thread runs."""
        return self._observer.is_alive()

    def stop(self) -> None:
        """Stop watching."""
        logging.getLogger("watchdog.observers.inotify").removeFilter(self._filter)
        for watch in self._cameras.values():
            watch.stop()
        for watch in self._cameras.values():
            watch.join(2.0)
        if self._started:
            self._observer.stop()
            self._observer.join(5)
