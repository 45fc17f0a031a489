"""The `after:` action on a captioned file: keep it, delete it, or move it to `archive_dir`.

The file is reached the way it was read (camwatch.files.open_folder): each folder below the
camera's root opened relative to the one above it, never through a symbolic link, and the file
is then deleted or linked by its name in that open folder. Checking the path and then deleting
or moving it by path again would follow a folder swapped for a link in between, and delete or
archive a file outside the camera folder.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from camwatch.errors import UnsafePath
from camwatch.files import open_folder, parts_below

# The archive is walked like a camera folder: its sub-folders are named after the uploaders'
# folders, and a link planted there (an archive inside a camera folder, say) must not be followed.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
_COPY_CHUNK = 1 << 20


def free_name(target: Path) -> Path:
    """Given a wanted path, return it, or `name-1.jpg`, `name-2.jpg`, ... if it is taken."""
    if not os.path.lexists(target):
        return target
    for n in range(1, 100_000):
        candidate = target.with_name(f"{target.stem}-{n}{target.suffix}")
        if not os.path.lexists(candidate):
            return candidate
    raise FileExistsError(f"no free name for {target}")


def _taken(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _free_name_at(name: str, dir_fd: int) -> str:
    """`free_name` inside an open folder."""
    if not _taken(name, dir_fd):
        return name
    stem, suffix = os.path.splitext(name)
    for n in range(1, 100_000):
        candidate = f"{stem}-{n}{suffix}"
        if not _taken(candidate, dir_fd):
            return candidate
    raise FileExistsError(f"no free name for {name}")


def _make_folders(top: Path, names: list[str]) -> int:
    """Open `top` (created if missing: the administrator's archive folder), then create and open
    each of `names` inside the previous one without following a link. Return the last one's
    descriptor."""
    top.mkdir(parents=True, exist_ok=True)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names:
            if name in ("", ".", "..") or os.sep in name:
                raise UnsafePath("resolves outside the archive folder")
            with suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=fd)
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except NotADirectoryError:
                raise UnsafePath("is not a folder in the archive (a symbolic link?)") from None
            os.close(fd)
            fd = sub
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def _source(root: str | os.PathLike[str], path: str) -> Iterator[tuple[int, str]]:
    """Yield the open folder of a file below a camera's root (reached without following a link)
    and the file's name in it."""
    parts = parts_below(root, path)
    folder = open_folder(root, parts[:-1])
    try:
        yield folder, parts[-1]
    finally:
        os.close(folder)


def _copy_into(src_fd: int, st: os.stat_result, name: str, dir_fd: int) -> None:
    """Copy an open file into a new file `name` of an open folder (which must not exist yet),
    with its permission bits and times; remove the partial copy if that fails."""
    out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    try:
        try:
            offset = 0
            while chunk := os.pread(src_fd, _COPY_CHUNK, offset):
                offset += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
            os.fchmod(out, stat.S_IMODE(st.st_mode))
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(out)
    except BaseException:
        with suppress(OSError):  # the copy's own error is the one to report
            os.unlink(name, dir_fd=dir_fd)
        raise


def _move_at(src_dir: int, name: str, top: Path, folders: list[str], wanted: str) -> Path:
    """Move the file `name` of an open camera folder to `top/folders.../wanted` or the next free
    name beside it, never replacing a file. Return where it went."""
    try:
        src_fd = os.open(name, _FILE_FLAGS, dir_fd=src_dir)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath("is a symbolic link") from None
        raise
    try:
        st = os.fstat(src_fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath("is not a regular file")
        if st.st_nlink > 1:
            # The same bytes may have a name outside the camera folder: never archive them.
            raise UnsafePath("has more than one hard link")
        dst_dir = _make_folders(top, folders)
        try:
            placed = _place(src_dir, name, src_fd, st, dst_dir, wanted)
        finally:
            os.close(dst_dir)
    finally:
        os.close(src_fd)
    return top.joinpath(*folders, placed)


def _place(
    src_dir: int, name: str, src_fd: int, st: os.stat_result, dst_dir: int, wanted: str
) -> str:
    """Put the checked file (`src_fd`, named `name` in `src_dir`) into `dst_dir` under a free
    name, then remove it from the camera folder. Return the name it got."""
    for _ in range(100):
        dest = _free_name_at(wanted, dst_dir)
        try:
            # No follow: linkat links the entry itself, and fails if dest exists (no overwrite,
            # even in a race).
            os.link(name, dest, src_dir_fd=src_dir, dst_dir_fd=dst_dir, follow_symlinks=False)
        except FileExistsError:
            continue
        except FileNotFoundError:
            raise
        except OSError:
            # Another filesystem (EXDEV) or no hard links there: copy the file already open
            # (the one checked), never the name again, into a file that must not exist yet.
            try:
                _copy_into(src_fd, st, dest, dst_dir)
            except FileExistsError:
                continue
        else:
            linked = os.stat(dest, dir_fd=dst_dir, follow_symlinks=False)
            if (linked.st_dev, linked.st_ino) != (st.st_dev, st.st_ino):
                # The name was swapped (for a link or another file) between the check and the
                # link: take back what was linked and leave everything else as it is.
                os.unlink(dest, dir_fd=dst_dir)
                raise UnsafePath("was replaced while being moved")
        os.unlink(name, dir_fd=src_dir)
        return dest
    raise FileExistsError(f"no free name for {wanted}")


def move_without_overwrite(
    src: str, target: Path, root: str | os.PathLike[str] | None = None
) -> Path:
    """Move `src` to `target` or the next free name beside it, never replacing a file, even if
    another process creates one at the same moment. Return where it went. `src` is reached from
    the camera's folder `root` without following a link (by default from its own folder: only
    the file's name is then protected)."""
    base = os.path.dirname(os.path.abspath(src)) if root is None else root
    with _source(base, src) as (folder, name):
        return _move_at(folder, name, target.parent, [], target.name)


def _camera_root(path: str, relpath: str) -> str:
    """Return the camera's folder of a file from its path and its path relative to the folder,
    which the watcher built as `root/relpath`."""
    rel = os.path.normpath(relpath)
    full = os.path.normpath(path)
    if os.path.isabs(rel) or rel.split(os.sep)[0] == ".." or not full.endswith(os.sep + rel):
        raise UnsafePath("is not below its camera folder")
    return full[: -len(rel) - 1] or os.sep


def apply_after(
    action: str,
    archive_dir: Path | None,
    camera: str,
    path: str,
    relpath: str,
    root: str | os.PathLike[str] | None = None,
) -> str | None:
    """Apply `after:` to a captioned file. Return the new path for a move, else None.

    The file is reached from the camera's resolved folder `root` (by default the part of `path`
    before `relpath`), each folder on the way opened without following a symbolic link; raise
    UnsafePath if one is a link."""
    if action not in ("delete", "move"):
        return None
    base = _camera_root(path, relpath) if root is None else root
    with _source(base, path) as (folder, name):
        if action == "delete":
            # Removes this name in this folder only: a link is removed, never what it points to.
            os.unlink(name, dir_fd=folder)
            return None
        assert archive_dir is not None
        # The archive keeps the camera's sub-path; its folders are walked like the camera's.
        rel = Path(os.path.normpath(relpath))
        below = [*Path(camera).parts, *rel.parts[:-1]]
        return str(_move_at(folder, name, Path(archive_dir), below, rel.name))


def finish_file(
    action: str,
    archive_dir: Path | None,
    camera: str,
    path: str,
    relpath: str,
    blog: Any,
    root: str | os.PathLike[str] | None = None,
) -> str | None:
    """Apply `after:` to a captioned file and log what was done (`image_moved`,
    `image_deleted`). Return the error text if it could not be done (logged as a warning)."""
    if action == "keep":
        return None
    try:
        moved = apply_after(action, archive_dir, camera, path, relpath, root)
    except (OSError, UnsafePath) as exc:
        blog.warning("after_action_failed", action=action, error=str(exc))
        return str(exc)
    blog.info("image_" + ("moved" if moved else "deleted"), to=moved)
    return None
