"""Polling a camera's folder tree where inotify sees nothing: NFS, SMB, sshfs and other FUSE mounts.

inotify only reports writes made through this kernel, so a camera writing to a network share
from another host is invisible to it. `TreePoller.round()` is called every `poll_interval`
seconds instead and reports what changed since the last round.

A round costs about one open + fstat per FOLDER, not one stat per file: a folder's mtime
changes whenever an entry is added, removed or renamed in it, so only folders whose mtime (or
inode) changed are listed again. Four things the folder mtime does not show are covered by
small, bounded extra work:

- coarse mtimes (FAT, SMB: 1-2 s; even ext4 only ticks once per jiffy): a file added in the
  same tick as the last listing leaves the mtime unchanged. A folder is listed again until one
  listing happens `racy_seconds` after its change was first seen (git's racy-clean check);
- appends and rewrites do not touch the folder: each file reported as changed is re-stat'ed
  every round until it has been stable for `settle_rounds` rounds and `settle_seconds`;
- an old file rewritten in place: every folder is swept (listed, every file stat'ed) once per
  `full_sweep` seconds, staggered so each round sweeps only its share;
- NFS caches folder attributes for up to a minute (acdirmax); opening a folder forces the
  client to revalidate them (close-to-open consistency), where lstat would not.

Only regular files with candidate names are remembered, one int per file (about 140 bytes
per file with its name: 14 MB for 100,000). No thread, no sleep: the caller owns the schedule:

    poller = TreePoller(str(camera.path), camera.recursive)
    poller.baseline()  # before the start-up scan, so nothing written during it is missed
    while not stopping.wait(poll_interval):
        try:
            result = poller.round()
        except OSError:
            ...  # camera unavailable; keep calling round(): it reports the difference
        for path in result.changed: ...  # like an inotify write: debounce it
        for path in result.gone: ...  # like a delete
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from camwatch.files import is_candidate_name

# O_NOFOLLOW: a folder replaced by a symbolic link is gone, never followed.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY
# A folder that fails to open with one of these is no longer there (ELOOP: now a symlink).
_GONE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})


def _sig(st: os.stat_result) -> int:
    # One int instead of a (size, mtime_ns) tuple: a third of the memory per file, still exact
    # (sizes stay below 2**64).
    return (st.st_mtime_ns << 64) | st.st_size


def _reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    return (exc.strerror or type(exc).__name__).lower()


@dataclass
class PollResult:
    """What one round found, plus counters for benchmarks and logs."""

    changed: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    folders_checked: int = 0
    folders_listed: int = 0
    stats: int = 0
    settling: int = 0


class _Folder:
    """What is remembered of one folder: its identity, its candidate files and subfolders."""

    __slots__ = (
        "dev",
        "files",
        "ino",
        "listed_at",
        "mtime_ns",
        "racy_until",
        "subdirs",
        "sweep_due",
        "unreadable",
    )

    def __init__(self) -> None:
        self.dev = -1
        self.ino = -1
        self.mtime_ns: int | None = None  # None until listed once
        self.files: dict[str, int] = {}  # name -> _sig
        self.subdirs: set[str] = set()
        self.listed_at = 0.0
        self.racy_until = 0.0
        self.sweep_due = 0.0
        # (reason, ino, mtime_ns) last reported, so an unreadable folder is reported once.
        self.unreadable: tuple[str, int, int] | None = None


class _Settling:
    """A file re-stat'ed every round because it changed recently."""

    __slots__ = ("changed_at", "checked", "sig", "stable")

    def __init__(self, sig: int, now: float, round_no: int) -> None:
        self.sig = sig
        self.changed_at = now
        self.stable = 0
        self.checked = round_no


class TreePoller:
    """Reports new, changed and removed candidate files below `root`, one `round()` at a time."""

    def __init__(
        self,
        root: str,
        recursive: bool = True,
        is_candidate: Callable[[str], bool] = is_candidate_name,
        clock: Callable[[], float] = time.time,
        *,
        full_sweep: float = 60.0,
        settle_rounds: int = 3,
        settle_seconds: float = 5.0,
        racy_seconds: float = 2.0,
    ) -> None:
        self.root = os.path.normpath(os.fspath(root))
        self.recursive = recursive
        self._is_candidate = is_candidate
        self._clock = clock
        self.full_sweep = full_sweep
        self.settle_rounds = settle_rounds
        self.settle_seconds = settle_seconds
        self.racy_seconds = racy_seconds
        # Insertion order puts every folder after its parent (a folder is only found by
        # listing its parent), so a round sees a removed parent before its children.
        self._folders: dict[str, _Folder] = {}
        self._settling: dict[str, _Settling] = {}
        self._pending_unreadable: list[tuple[str, str]] = []
        self._round = 0

    @property
    def file_count(self) -> int:
        """Return how many candidate files are remembered (walks the folders: not per round)."""
        return sum(len(folder.files) for folder in self._folders.values())

    @property
    def folder_count(self) -> int:
        """Return how many folders are remembered."""
        return len(self._folders)

    def baseline(self) -> None:
        """List the whole tree and remember it without reporting any file: the start-up scan
        queues what is already there. Folders found unreadable are reported by the first
        round(). Raise OSError if the root cannot be listed."""
        now = self._clock()
        self._folders = {}
        self._settling = {}
        self._pending_unreadable = []
        self._round += 1
        fd = os.open(self.root, _ROOT_FLAGS)
        root = _Folder()
        self._folders[self.root] = root
        sink = PollResult()
        try:
            added = self._list(self.root, root, fd, os.fstat(fd), now, sink, report=False)
        finally:
            os.close(fd)
        self._walk_new(self.root, added, now, sink, report=False)
        self._pending_unreadable = sink.unreadable
        # Spread the first sweep over one period so later rounds each sweep their share
        # instead of the whole tree at once every `full_sweep` seconds.
        count = len(self._folders)
        for i, folder in enumerate(self._folders.values()):
            folder.sweep_due = now + self.full_sweep * (i + 1) / count

    def round(self) -> PollResult:
        """Check the tree once and return what changed since the last round (or baseline).
        Raise OSError if the root is missing or unreadable; the state is kept, so a later
        round after the root is back reports the difference."""
        now = self._clock()
        self._round += 1
        out = PollResult()
        fd = os.open(self.root, _ROOT_FLAGS)
        out.unreadable.extend(self._pending_unreadable)
        self._pending_unreadable = []
        # Taken before anything is listed: folders found in this round were listed just now.
        paths = list(self._folders)
        root = self._folders.setdefault(self.root, _Folder())
        self._check(self.root, root, fd, now, out)
        for path in paths:
            folder = self._folders.get(path)
            if folder is None or path == self.root:
                continue  # None: went with a parent earlier in this round
            try:
                fd = os.open(path, _DIR_FLAGS)
            except OSError as exc:
                self._unopenable(path, folder, exc, out)
                continue
            self._check(path, folder, fd, now, out)
        self._settle(now, out)
        out.settling = len(self._settling)
        return out

    # -- one folder ---------------------------------------------------------------------------

    def _check(self, path: str, folder: _Folder, fd: int, now: float, out: PollResult) -> None:
        """Given an open folder, list it if anything says it may have changed. Closes fd."""
        out.folders_checked += 1
        try:
            st = os.fstat(fd)
            out.stats += 1
            if not (
                st.st_mtime_ns != folder.mtime_ns
                or st.st_ino != folder.ino
                or st.st_dev != folder.dev
                or folder.listed_at < folder.racy_until
                or now >= folder.sweep_due
                or folder.sweep_due - now > self.full_sweep  # the clock was set back
                or folder.unreadable is not None
            ):
                return
            added = self._list(path, folder, fd, st, now, out, report=True)
        except OSError as exc:
            if path == self.root:
                raise
            self._mark_unreadable(path, folder, _reason(exc), out)
            return
        finally:
            os.close(fd)
        self._walk_new(path, added, now, out, report=True)

    def _list(
        self,
        path: str,
        folder: _Folder,
        fd: int,
        st: os.stat_result,
        now: float,
        out: PollResult,
        report: bool,
    ) -> list[str]:
        """Given an open folder and its fstat taken before reading it (so a change made while
        listing leaves the mtime kept here behind, and the next round lists it again), update
        what is remembered of it and report the differences. Return the names of subfolders
        not seen before."""
        out.folders_listed += 1
        old = folder.files
        files: dict[str, int] = {}
        subdirs: set[str] = set()
        denied = False
        with os.scandir(fd) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if self.recursive:
                            subdirs.add(name)
                        continue
                    if not self._is_candidate(name) or not entry.is_file(follow_symlinks=False):
                        continue
                    est = entry.stat(follow_symlinks=False)
                except PermissionError:
                    # A folder we may read but not search (r without x): keep what we knew
                    # rather than report its files gone.
                    denied = True
                    if name in old:
                        files[name] = old[name]
                    continue
                except OSError:
                    continue  # vanished between the listing and the stat
                out.stats += 1
                if stat.S_ISREG(est.st_mode):
                    files[name] = _sig(est)

        if report:
            for name, sig in files.items():
                if old.get(name) != sig:
                    file_path = os.path.join(path, name)
                    out.changed.append(file_path)
                    self._settling[file_path] = _Settling(sig, now, self._round)
            for name in old.keys() - files.keys():
                file_path = os.path.join(path, name)
                out.gone.append(file_path)
                self._settling.pop(file_path, None)
        else:
            # Files written just before the baseline may still be growing.
            young = int((now - self.settle_seconds) * 1e9)
            for name, sig in files.items():
                if sig >> 64 >= young:
                    self._settling[os.path.join(path, name)] = _Settling(sig, now, self._round)

        for name in folder.subdirs - subdirs:
            self._drop(os.path.join(path, name), out)
        added = list(subdirs - folder.subdirs)

        moved = report and (
            st.st_mtime_ns != folder.mtime_ns or st.st_ino != folder.ino or st.st_dev != folder.dev
        )
        if moved:
            # The change happened before now, so the mtime tick it fell in ends before
            # now + racy_seconds whatever the server's clock says: one listing after that
            # sees everything added in the same tick.
            folder.racy_until = now + self.racy_seconds
        mtime = st.st_mtime_ns / 1e9
        if abs(now - mtime) < self.racy_seconds:
            # Without a change seen (the baseline) only the clock can tell. A little ahead
            # counts too (a server's clock or a coarse kernel clock); far ahead is left to the
            # sweep, else a skewed server would have its folders listed every round.
            folder.racy_until = max(folder.racy_until, mtime + self.racy_seconds)
        folder.files = files
        folder.subdirs = subdirs
        folder.dev, folder.ino, folder.mtime_ns = st.st_dev, st.st_ino, st.st_mtime_ns
        folder.listed_at = now
        folder.sweep_due = now + self.full_sweep
        if denied:
            self._mark_unreadable(path, folder, "permission denied", out)
        else:
            folder.unreadable = None
        return added

    def _walk_new(
        self, parent: str, names: list[str], now: float, out: PollResult, report: bool
    ) -> None:
        """List new subfolders of `parent` and everything below them, one open folder at a
        time (an explicit stack: no recursion limit on deep trees)."""
        stack = [(parent, name) for name in names]
        while stack:
            above, name = stack.pop()
            path = os.path.join(above, name)
            try:
                fd = os.open(path, _DIR_FLAGS)
            except OSError as exc:
                if exc.errno in _GONE:
                    self._folders[above].subdirs.discard(name)
                    continue
                folder = _Folder()
                self._folders[path] = folder
                self._mark_unreadable(path, folder, _reason(exc), out)
                continue
            try:
                st = os.fstat(fd)
                out.stats += 1
                if self._is_loop(above, st):
                    # A bind mount of an ancestor: entering it would never end.
                    out.unreadable.append((path, "folder loop"))
                    continue
                folder = _Folder()
                self._folders[path] = folder
                try:
                    added = self._list(path, folder, fd, st, now, out, report)
                except OSError as exc:
                    self._mark_unreadable(path, folder, _reason(exc), out)
                    continue
            finally:
                os.close(fd)
            stack.extend((path, sub) for sub in added)

    def _is_loop(self, above: str, st: os.stat_result) -> bool:
        path = above
        while True:
            folder = self._folders.get(path)
            if folder is None:
                return False
            if (folder.dev, folder.ino) == (st.st_dev, st.st_ino):
                return True
            if path == self.root:
                return False
            path = os.path.dirname(path)

    def _unopenable(self, path: str, folder: _Folder, exc: OSError, out: PollResult) -> None:
        if exc.errno in _GONE:
            self._drop(path, out)
            parent = self._folders.get(os.path.dirname(path))
            if parent is not None:
                # Forgotten by the parent too, so it is found as new if it comes back.
                parent.subdirs.discard(os.path.basename(path))
            return
        self._mark_unreadable(path, folder, _reason(exc), out)

    def _mark_unreadable(self, path: str, folder: _Folder, reason: str, out: PollResult) -> None:
        try:
            st = os.lstat(path)
            key = (reason, st.st_ino, st.st_mtime_ns)
        except OSError:
            key = (reason, -1, -1)
        if folder.unreadable != key:
            folder.unreadable = key
            out.unreadable.append((path, reason))

    def _drop(self, path: str, out: PollResult) -> None:
        """Forget a folder and everything below it, reporting its files gone."""
        stack = [path]
        while stack:
            current = stack.pop()
            folder = self._folders.pop(current, None)
            if folder is None:
                continue
            for name in folder.files:
                file_path = os.path.join(current, name)
                out.gone.append(file_path)
                self._settling.pop(file_path, None)
            stack.extend(os.path.join(current, sub) for sub in folder.subdirs)

    # -- settling files -----------------------------------------------------------------------

    def _settle(self, now: float, out: PollResult) -> None:
        """Re-stat the files that changed recently: appends do not change the folder."""
        for path, entry in list(self._settling.items()):
            if entry.checked == self._round:
                continue  # just reported by a listing in this round
            entry.checked = self._round
            folder_path, name = os.path.split(path)
            try:
                st = os.lstat(path)
                out.stats += 1
            except (FileNotFoundError, NotADirectoryError):
                st = None
            except OSError:
                # Its folder cannot be searched any more: the folder check reports that.
                del self._settling[path]
                continue
            folder = self._folders.get(folder_path)
            if st is None or not stat.S_ISREG(st.st_mode):
                del self._settling[path]
                if folder is not None and folder.files.pop(name, None) is not None:
                    out.gone.append(path)
                continue
            sig = _sig(st)
            if sig != entry.sig:
                entry.sig, entry.changed_at, entry.stable = sig, now, 0
                out.changed.append(path)
                if folder is not None:
                    folder.files[name] = sig
                continue
            entry.stable += 1
            entry.changed_at = min(entry.changed_at, now)  # the clock was set back
            if entry.stable >= self.settle_rounds and now - entry.changed_at >= self.settle_seconds:
                del self._settling[path]
