"""The mount table: which filesystem a camera folder is on, and whether inotify sees it."""

from __future__ import annotations

import pytest

from camwatch.mounts import (
    Mount,
    is_mount_point,
    is_remote,
    mount_of,
    parse_mountinfo,
    read_mounts,
)

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /tmp rw,nosuid shared:5 - tmpfs tmpfs rw
41 22 0:40 / /srv/nas rw,relatime - nfs4 nas:/export rw,vers=4.2
42 41 0:41 / /srv/nas/cams rw - cifs //nas/cams rw
43 22 0:42 / /mnt/my\\040share rw - fuse.sshfs me@host:/x rw
44 22 0:43 / /mnt/usb rw - vfat /dev/sdb1 rw
45 44 0:44 / /mnt/usb rw - fuse.bindfs /srv/real rw
this line is not a mount
"""


def test_parse_mountinfo_reads_points_and_types() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert [(m.mount_point, m.fstype) for m in mounts] == [
        ("/", "ext4"),
        ("/tmp", "tmpfs"),
        ("/srv/nas", "nfs4"),
        ("/srv/nas/cams", "cifs"),
        ("/mnt/my share", "fuse.sshfs"),  # \040 is a space
        ("/mnt/usb", "vfat"),
        ("/mnt/usb", "fuse.bindfs"),
    ]


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/srv/cameras/front", "ext4"),
        ("/tmp/x", "tmpfs"),
        ("/tmpfoo/x", "ext4"),  # a prefix of the name is not a parent folder
        ("/srv/nas/other", "nfs4"),
        ("/srv/nas/cams/front", "cifs"),  # the deepest mount wins
        ("/mnt/my share/front", "fuse.sshfs"),
        ("/mnt/usb/front", "fuse.bindfs"),  # the last mount stacked on a point wins
        ("/srv/nas", "nfs4"),
    ],
)
def test_mount_of_finds_the_deepest_mount(path: str, fstype: str) -> None:
    mount = mount_of(path, parse_mountinfo(MOUNTINFO))
    assert mount is not None and mount.fstype == fstype


@pytest.mark.parametrize(
    "fstype",
    [
        *("nfs", "nfs4", "cifs", "smb3", "9p", "ceph", "glusterfs", "lustre", "afs", "fuse"),
        *("fuse.sshfs", "fuse.bindfs", "fuseblk"),
    ],
)
def test_network_and_fuse_filesystems_are_remote(fstype: str) -> None:
    assert is_remote(fstype)


@pytest.mark.parametrize("fstype", ["ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "vfat"])
def test_local_filesystems_are_not_remote(fstype: str) -> None:
    assert not is_remote(fstype)


def test_is_mount_point() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert is_mount_point("/srv/nas", mounts)
    assert not is_mount_point("/srv", mounts)


def test_this_machines_table_has_a_root() -> None:
    mounts = read_mounts()
    assert any(m.mount_point == "/" for m in mounts)
    assert isinstance(mount_of("/", mounts), Mount)
    assert read_mounts("/nonexistent/mountinfo") == []
