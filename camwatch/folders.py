"""A camera folder as camwatch sees it: is it there and readable, which filesystem is it on
(and so which way to watch it), and which files are in it.

Symbolic links are never followed and hidden folders never entered: nothing outside a camera's
folder is read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from camwatch.config import CameraConfig
from camwatch.mounts import is_remote, mount_of


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
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if recursive:
                                stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            yield entry.path
                    except OSError:
                        continue  # gone between the listing and the look
        except OSError:
            continue


def folder_problem(path: str) -> str | None:
    """Return why a camera folder cannot be watched now ("missing", "not a directory",
    "permission denied", ...), or None if it can."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return exc.strerror.lower() if exc.strerror else str(exc)
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    try:
        with os.scandir(path) as entries:
            next(entries, None)
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return exc.strerror.lower() if exc.strerror else str(exc)
    return None


def identity(path: str) -> tuple[int, int] | None:
    """Return (device, inode) of a folder, or None if it is not there: a folder deleted and
    created again, or a share mounted over it, has another."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def choose_mode(camera: CameraConfig) -> tuple[str, str]:
    """Return (mode, fstype) for a camera: its configured mode, or for `auto`, poll on network
    and FUSE filesystems and inotify elsewhere."""
    mount = mount_of(str(camera.path))
    fstype = mount.fstype if mount is not None else "unknown"
    if camera.watch != "auto":
        return camera.watch, fstype
    return ("poll" if is_remote(fstype) else "inotify"), fstype
