"""watchdog observers on each camera's folder: filter events, hand paths to the debouncer.

The handler runs on watchdog's thread and must never block: it only filters names and calls
`Debouncer.touch`, which takes a lock and pushes on a heap.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from watchdog.events import (
    DirMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from camwatch.config import CameraConfig
from camwatch.files import relative_candidate
from camwatch.log import get_logger

log = get_logger(__name__)

Touch = Callable[[str, str, str], None]  # (camera, path, relpath)
Forget = Callable[[str], None]


def _text(path: bytes | str) -> str:
    return os.fsdecode(path)


class CameraHandler(FileSystemEventHandler):
    """Turns one camera's file events into candidate paths."""

    def __init__(self, camera: CameraConfig, touch: Touch, forget: Forget) -> None:
        self.camera = camera
        self.root = str(camera.path)
        self._touch = touch
        self._forget = forget

    def _offer(self, path: str) -> None:
        rel = relative_candidate(self.root, path)
        if rel is None or (not self.camera.recursive and os.sep in rel):
            return  # not a snapshot, or in a subfolder of a camera with `recursive: false`
        self._touch(self.camera.name, os.path.normpath(path), rel)

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        src = _text(event.src_path)
        if kind in ("created", "modified", "closed"):
            if not event.is_directory:
                self._offer(src)
        elif kind == "moved":
            dest = _text(event.dest_path)
            if isinstance(event, DirMovedEvent):
                # A folder moved in brings files no event announced: look inside it.
                for path in walk_candidates(dest, self.camera.recursive):
                    self._offer(path)
            else:
                self._forget(src)
                self._offer(dest)  # `x.jpg.part` -> `x.jpg` lands here
        elif kind == "deleted" and not event.is_directory:
            self._forget(src)


def walk_candidates(top: str, recursive: bool = True) -> Iterable[str]:
    """Given a folder, yield the paths of regular files below it, not following symbolic links
    and not entering hidden folders."""
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if recursive:
                            stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        yield entry.path
        except OSError:
            continue


class Watcher:
    """One watchdog observer for every camera; cameras can be re-synced on reload."""

    def __init__(self, touch: Touch, forget: Forget, observer: BaseObserver | None = None) -> None:
        self._touch = touch
        self._forget = forget
        self._observer = observer or Observer()
        self._observer.name = "watchdog"
        self._watches: dict[str, tuple[CameraConfig, ObservedWatch]] = {}
        self._started = False

    def sync(self, cameras: Iterable[CameraConfig]) -> list[str]:
        """Watch exactly `cameras`: add new ones, drop removed ones, re-add changed ones. Return
        the names of cameras newly watched."""
        wanted = {c.name: c for c in cameras}
        for name in list(self._watches):
            camera, watch = self._watches[name]
            if wanted.get(name) != camera:
                self._observer.unschedule(watch)
                del self._watches[name]
        added = []
        for name, camera in wanted.items():
            if name in self._watches:
                continue
            handler = CameraHandler(camera, self._touch, self._forget)
            watch = self._observer.schedule(handler, str(camera.path), recursive=camera.recursive)
            self._watches[name] = (camera, watch)
            added.append(name)
            log.info("camera_watched", camera=name, path=str(camera.path))
        if not self._started:
            self._observer.start()
            self._started = True
        return added

    def is_alive(self) -> bool:
        """Return whether the observer thread runs."""
        return self._observer.is_alive()

    def stop(self) -> None:
        """Stop watching."""
        if self._started:
            self._observer.stop()
            self._observer.join(5)
