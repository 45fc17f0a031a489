"""What `check-config` checks on this machine, as the user running it: what `run` would trip on.

A file can be valid and still fail at start: the state_dir cannot be created or written (`run`
exits 74 on its first database write), or a camera folder cannot be read (the daemon starts,
warns `camera_unavailable`, and captions nothing from it). These depend on the machine and the
user, not on the file, so they are not part of loading a configuration (a reload does not
check them); `check-config` runs them after loading.

Each problem says which user (name and uid), which folder and how to fix it. Run as root,
nothing is reported that only another user would meet: the check sees what its own user sees,
so check as the service's user (or read docs/systemd.md, whose sandbox no check here can see).
"""

from __future__ import annotations

import os
import pwd
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from camwatch.config.models import Config
from camwatch.folders import folder_problem

# The files `run` opens for reading and writing in the state_dir (store/database.py, runlock.py).
STATE_FILES = ("camwatch.db", "camwatch.db-wal", "camwatch.db-shm", "camwatch.lock")
_SERVICE_GROUP = "camwatch-cams"  # packaging/sysusers.d/camwatch.conf, docs/systemd.md


@dataclass(frozen=True)
class Findings:
    """What the preflight found: errors (`run` would fail: exit 78) and warnings (exit 0)."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class User:
    """The user the checks run as: its name (the uid when it has no passwd entry) and uid."""

    name: str
    uid: int

    @classmethod
    def current(cls) -> User:
        """Return the process's effective user."""
        uid = os.geteuid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:  # a uid without a passwd entry (a container, systemd's DynamicUser)
            name = str(uid)
        return cls(name, uid)

    def __str__(self) -> str:
        return f"user {self.name} (uid {self.uid})"


def preflight(config: Config, user: User | None = None) -> Findings:
    """Given a valid configuration, return what would stop `run`, or hamper it, for `user`
    (default: the process's): the state_dir (errors) and the camera folders (warnings)."""
    user = user or User.current()
    warnings: list[str] = []
    for i, camera in enumerate(config.cameras):
        warning = camera_warning(f"cameras[{i}].path", camera.path, user)
        if warning is not None:
            warnings.append(warning)
    return Findings(state_dir_problems(config.state_dir, user), warnings)


def _can(path: Path | str, mode: int) -> bool:
    """Return whether this process may access `path` in `mode` (os.R_OK, ...), judged by its
    effective ids, as opening the file would be. With both ids equal (the usual case) this is
    the kernel's plain access(2), which reads ACLs and read-only mounts; an effective-id check
    is asked for only when they differ (a setuid start), where older C libraries may judge by
    the mode bits alone."""
    effective = os.geteuid() != os.getuid() and os.access in os.supports_effective_ids
    try:
        return os.access(path, mode, effective_ids=effective)
    except (OSError, ValueError):
        return False


def _blocked_parent(path: Path) -> Path | None:
    """Return the first folder above `path` that this user cannot enter (no search permission),
    or None: without it nothing below can be reached, whatever its own permissions."""
    for parent in reversed(path.parents):  # from "/" down: each is reachable when it is asked
        if not os.path.isdir(parent):
            return None  # missing (or a file): not a matter of permissions
        if not _can(parent, os.X_OK):
            return parent
    return None


def _grant(user: User, access: str, folder: Path, recursive: bool) -> str:
    """Return the setfacl commands that give `user` `access` to `folder`, as docs/systemd.md
    gives them to the service's group: recursive, and the default ACL for files made later."""
    who, quoted = f"u:{user.name}:{access}", shlex.quote(str(folder))
    if not recursive:
        return f"setfacl -m {who} {quoted}"
    return f"setfacl -R -m {who} {quoted} && setfacl -R -d -m {who} {quoted}"


_FOR_SERVICE = f"(for the systemd service, grant the group {_SERVICE_GROUP}: docs/systemd.md)"


def camera_warning(field_path: str, path: Path, user: User) -> str | None:
    """Return a warning if `user` cannot list and enter the camera folder `path` (naming the
    user, the folder and the setfacl that grants it), or if it is missing or not a folder;
    None if the daemon can watch it."""
    problem = folder_problem(str(path))
    if problem not in (None, "permission denied"):
        return (
            f"{field_path}: {str(path)!r} is {problem}; the daemon starts anyway and watches it"
            " once it is there"
        )
    blocked = _blocked_parent(path)
    if blocked is not None:
        return (
            f"{field_path}: {user} cannot enter {str(blocked)!r}, a folder above"
            f" {str(path)!r}, so the daemon cannot see this camera's images; grant it:"
            f" {_grant(user, 'x', blocked, recursive=False)} {_FOR_SERVICE}"
        )
    if problem is not None or not _can(path, os.R_OK | os.X_OK):
        return (
            f"{field_path}: {user} cannot read the folder {str(path)!r}, so the daemon cannot"
            f" see this camera's images; grant it: {_grant(user, 'rX', path, recursive=True)}"
            f" {_FOR_SERVICE}"
        )
    return None


_STATE_FIX = (
    "under systemd, keep state_dir: /var/lib/camwatch and let StateDirectory=camwatch"
    " create it (docs/systemd.md)"
)


def state_dir_problems(state_dir: Path, user: User) -> list[str]:
    """Return why `user` could not create or write `state_dir` and the files `run` keeps in
    it (naming the user and the fix), or nothing if it can."""
    path = Path(os.path.abspath(state_dir))
    shown, quoted, owner = repr(str(path)), shlex.quote(str(path)), shlex.quote(user.name)
    blocked = _blocked_parent(path)
    if blocked is not None:
        return [
            f"state_dir: {user} cannot enter {str(blocked)!r}, a folder above {shown};"
            f" grant it ({_grant(user, 'x', blocked, recursive=False)}), or choose another"
            f" state_dir; {_STATE_FIX}"
        ]
    if not os.path.lexists(path):
        existing = next(p for p in path.parents if os.path.lexists(p))
        if not existing.is_dir():
            return [f"state_dir: {shown} cannot be created: {str(existing)!r} is not a folder"]
        if _can(existing, os.W_OK | os.X_OK):
            return []  # `run` creates it
        if _read_only(existing):
            return [
                f"state_dir: {shown} does not exist and cannot be created: {str(existing)!r} is"
                f" on a read-only file system; choose a state_dir on a writable one, or"
                f" {_STATE_FIX}"
            ]
        return [
            f"state_dir: {shown} does not exist and {user} cannot create it in"
            f" {str(existing)!r}; create it for that user (install -d -o {owner} {quoted}),"
            f" or {_STATE_FIX}"
        ]
    if not path.is_dir():
        return [f"state_dir: {shown} is not a folder; choose a folder (it is created if missing)"]
    if _read_only(path):
        return [
            f"state_dir: {shown} is on a read-only file system; choose a state_dir on a writable"
            f" one, or {_STATE_FIX}"
        ]
    if not _can(path, os.W_OK | os.X_OK):
        return [
            f"state_dir: {shown} is not writable by {user}; give it to that user"
            f" (chown -R {owner} {quoted}), or {_STATE_FIX}"
        ]
    problems = []
    for name in STATE_FILES:
        file = path / name
        if os.path.lexists(file) and not _can(file, os.R_OK | os.W_OK):
            problems.append(
                f"state_dir: {str(file)!r} cannot be read and written by {user} (another"
                f" user's?); give the folder to that user (chown -R {owner} {quoted}), or"
                f" {_STATE_FIX}"
            )
    return problems


def _read_only(path: Path) -> bool:
    """Return whether `path` is on a file system mounted read-only."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
