"""Which filesystem a camera folder is on, and so whether inotify can see its changes.

inotify reports only what passes through this machine's kernel: on a network or FUSE filesystem a
file written by another host (a NAS's own FTP server, a camera writing over SMB) raises no event,
so such folders are polled. The filesystem type comes from `/proc/self/mountinfo`, read each time
a camera is watched (mounts change while the daemon runs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MOUNTINFO = "/proc/self/mountinfo"

# Filesystems on which other hosts write: inotify stays silent for their changes.
_NETWORK_TYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "afs", "fuse"}
)


@dataclass(frozen=True)
class Mount:
    """One line of the mount table: where a filesystem is mounted and its type."""

    mount_id: int
    mount_point: str
    fstype: str


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash in paths as octal escapes (\040 ...).
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    raw = "".join(out).encode("latin-1", "surrogateescape")
    return os.fsdecode(raw)


def parse_mountinfo(text: str) -> list[Mount]:
    """Given the text of a mountinfo file, return its mounts in order (later ones stack on top
    of earlier ones at the same point)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-")
            mounts.append(Mount(int(fields[0]), _unescape(fields[4]), fields[sep + 1]))
        except (ValueError, IndexError):
            continue  # a line in a format we do not know: not worth failing a watch over
    return mounts


def read_mounts(path: str = MOUNTINFO) -> list[Mount]:
    """Return this process's mount table, or an empty list where there is none."""
    try:
        with open(path, encoding="latin-1") as handle:
            return parse_mountinfo(handle.read())
    except OSError:
        return []


def mount_of(path: str, mounts: list[Mount] | None = None) -> Mount | None:
    """Given a resolved absolute path, return the mount it is on (the longest mount point that
    contains it; the last one mounted there), or None if the table is unknown."""
    best: Mount | None = None
    for mount in read_mounts() if mounts is None else mounts:
        point = mount.mount_point
        inside = path == point or point == "/" or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.mount_point)):
            best = mount
    return best


def is_remote(fstype: str) -> bool:
    """Return whether changes on a filesystem of this type can come from another host, unseen
    by inotify: network filesystems and every FUSE filesystem (`fuse`, `fuse.sshfs`, ...)."""
    return fstype in _NETWORK_TYPES or fstype.startswith(("fuse.", "fuseblk", "nfs"))


def is_mount_point(point: str, mounts: list[Mount] | None = None) -> bool:
    """Return whether something is mounted at `point` now."""
    return any(m.mount_point == point for m in (read_mounts() if mounts is None else mounts))
