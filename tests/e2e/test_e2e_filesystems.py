"""End to end: camera folders on every filesystem, and folders that come and go. A real FUSE
mount (bindfs) polled and unmounted under the daemon, folders missing at start or deleted while
watched, unreadable folders and files seen by a daemon that is not root, a real inotify queue
overflow, and the inotify watch limit reached (in a user namespace of our own)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from camwatch.testing import StandinCaptionAPI, WebhookReceiver

from .support import (
    SECRET_ENV,
    ConfigWriter,
    Daemon,
    Tree,
    base_config,
    daemon_env,
    drop,
    image,
    sha256,
    uploads_of,
    wait_until,
)

StartDaemon = Callable[..., Daemon]

POLL = "300ms"  # poll_interval, and so how often a missing folder is looked for
FAST = {"debounce": "200ms"}


def _fast(config: ConfigWriter, **changes: Any) -> dict[str, Any]:
    """The base configuration with short timings: debounce 0.2 s, poll_interval 0.3 s."""
    data = config.data(**FAST)
    for camera in data["cameras"]:
        camera["poll_interval"] = POLL
    data.update(changes)
    return data


def _uploaded(api: StandinCaptionAPI) -> set[str]:
    return {r.sha256 for r in uploads_of(api)}


def _index_of(daemon: Daemon, event: dict[str, Any]) -> int:
    return next(i for i, e in enumerate(daemon.events) if e is event)


def _later_than(daemon: Daemon, event: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """Return a predicate: the event was logged after `event`."""
    events = daemon.events
    seen = {id(e) for e in events[: _index_of(daemon, event) + 1]}
    return lambda e: id(e) not in seen


@pytest.fixture
def start_wrapped() -> Iterator[Callable[..., Daemon]]:
    """Like `start_daemon`, for a daemon run through a wrapper that execs it (setpriv,
    unshare): `start(prefix, config, env=None, cwd=None)`. Every one is stopped at the end, and
    none may have logged a traceback."""
    started: list[Daemon] = []

    def start(
        prefix: Sequence[str],
        config: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        wait_ready: bool = True,
    ) -> Daemon:
        daemon = Daemon(config, (), env, cwd)
        daemon.argv = [*prefix, *daemon.argv]
        started.append(daemon)
        return daemon.start(wait_ready=wait_ready)

    yield start
    for daemon in started:
        daemon.close()
    for daemon in started:
        assert not daemon.tracebacks(), f"the daemon logged a traceback\n{daemon.tail()}"


# -- a real FUSE mount -------------------------------------------------------------------------


def _mount(backing: Path, point: Path) -> None:
    result = subprocess.run(
        ["bindfs", str(backing), str(point)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, f"bindfs failed: {result.stderr}"
    wait_until(lambda: os.path.ismount(point), 10, f"{point} mounted")


def _unmount(point: Path) -> None:
    for argv in (["fusermount", "-u"], ["fusermount3", "-u"], ["umount", "-l"]):
        if not os.path.ismount(point):
            return
        if shutil.which(argv[0]) is None:
            continue
        subprocess.run([*argv, str(point)], capture_output=True, timeout=30, check=False)
    wait_until(lambda: not os.path.ismount(point), 10, f"{point} unmounted")


def test_a_fuse_mount_is_polled_and_survives_unmount_and_remount(
    tree: Tree,
    api: StandinCaptionAPI,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    if shutil.which("bindfs") is None:
        pytest.skip("bindfs is not installed")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is missing: no FUSE here")
    backing = tree.root / "nas-backing"  # the NAS's own disk, written by "another host"
    point = tree.root / "cams" / "nas"
    backing.mkdir()
    point.mkdir()
    _mount(backing, point)
    try:
        data = _fast(config)
        data["cameras"].append({"name": "nas", "path": str(point), "poll_interval": POLL})
        daemon = start_daemon(config.write(data))
        watched = daemon.wait_event("camera_watched", camera="nas")
        assert watched["mode"] == "poll", watched
        assert watched["fstype"].startswith("fuse"), watched
        front = daemon.wait_event("camera_watched", camera="frontdoor")
        assert front["mode"] == "inotify", front

        # Written on the backing folder: no inotify event reaches the mount point.
        first = {
            "a.jpg": drop(backing / "a.jpg", image("NAS frame a: an empty yard.")),
            "sub/b.jpg": drop(backing / "sub" / "b.jpg", image("NAS frame b: an empty yard.")),
        }
        for rel in first:
            daemon.wait_event("image_captioned", path=str(point / rel))
        assert {sha256(p.read_bytes()) for p in first.values()} <= _uploaded(api)

        _unmount(point)
        gone = daemon.wait_event("camera_unavailable", camera="nas")
        assert "unmounted" in gone["reason"], gone
        after_gone = _index_of(daemon, gone)
        meanwhile = {
            "c.jpg": drop(backing / "c.jpg", image("NAS frame c: written while unmounted.")),
            "sub/d.jpg": drop(backing / "sub" / "d.jpg", image("NAS frame d: also meanwhile.")),
        }
        # Several look-again periods pass with the share unmounted: the empty mount point
        # beneath is not the camera folder.
        looked = time.monotonic()
        wait_until(lambda: time.monotonic() - looked > 1.2, 5, "a few look-again periods")
        # Checked at the end, so that a failure here still shows how the rest went.
        early = [
            e
            for e in daemon.events[after_gone:]
            if e.get("event") == "camera_watched" and e.get("camera") == "nas"
        ]

        _mount(backing, point)
        again = daemon.wait_event(
            "camera_watched", camera="nas", mode="poll", predicate=_later_than(daemon, gone)
        )
        assert again["fstype"].startswith("fuse"), again
        for rel in meanwhile:
            daemon.wait_event("image_captioned", path=str(point / rel))
        assert {sha256(p.read_bytes()) for p in meanwhile.values()} <= _uploaded(api)

        # And it is polled again: a file written after the remount is captioned too.
        late = drop(backing / "e.jpg", image("NAS frame e: after the remount."))
        daemon.wait_event("image_captioned", path=str(point / "e.jpg"))
        assert sha256(late.read_bytes()) in _uploaded(api)

        assert len(daemon.named("camera_unavailable", camera="nas")) == 1, daemon.tail()
        assert not daemon.named("camera_unavailable", camera="frontdoor")
        assert len(daemon.named("camera_watched", camera="frontdoor")) == 1
        assert daemon.terminate()[0] == 0
        # The empty folder under an unmounted share is not the camera's folder: no
        # camera_watched until the share is mounted again.
        assert not early, f"camera_watched while the share was unmounted: {early}"
        assert len(daemon.named("camera_watched", camera="nas")) == 2, daemon.named(
            "camera_watched", camera="nas"
        )
    finally:
        _unmount(point)


# -- folders that come and go ------------------------------------------------------------------


def test_a_folder_missing_at_start_is_watched_once_it_appears(
    tree: Tree,
    api: StandinCaptionAPI,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    garage = tree.root / "cams" / "garage"  # not there yet
    data = _fast(config)
    data["cameras"].append({"name": "garage", "path": str(garage), "poll_interval": POLL})
    daemon = start_daemon(config.write(data))  # reaches `ready` all the same
    missing = daemon.wait_event("camera_unavailable", camera="garage")
    assert missing["reason"] == "missing", missing
    assert missing["level"] == "warning", missing

    front = drop(tree.frontdoor / "front.jpg", image("The front door, nothing there."))
    daemon.wait_event("image_captioned", path=str(front))

    garage.mkdir()
    inside = drop(garage / "g.jpg", image("The garage, an empty floor."))
    watched = daemon.wait_event("camera_watched", camera="garage")
    assert watched["mode"] == "inotify", watched
    daemon.wait_event("image_captioned", path=str(inside))
    later = drop(garage / "later" / "h.jpg", image("The garage, later on."))
    daemon.wait_event("image_captioned", path=str(later))
    assert {sha256(p.read_bytes()) for p in (front, inside, later)} <= _uploaded(api)
    assert len(daemon.named("camera_unavailable", camera="garage")) == 1
    assert not daemon.named("camera_unavailable", camera="frontdoor")
    assert daemon.terminate()[0] == 0


def test_a_folder_deleted_and_created_again_is_watched_again(
    tree: Tree,
    api: StandinCaptionAPI,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(config.write(_fast(config)))
    watched = daemon.wait_event("camera_watched", camera="frontdoor")
    assert watched["mode"] == "inotify", watched
    before = drop(tree.frontdoor / "before.jpg", image("Before: an empty porch."))
    daemon.wait_event("image_captioned", path=str(before))

    shutil.rmtree(tree.frontdoor)
    gone = daemon.wait_event("camera_unavailable", camera="frontdoor")
    assert gone["reason"] == "missing", gone
    # The other camera is not disturbed meanwhile.
    other = drop(tree.driveway / "other.jpg", image("The driveway while frontdoor is away."))
    daemon.wait_event("image_captioned", path=str(other))

    tree.frontdoor.mkdir()
    back = [
        drop(tree.frontdoor / "back-1.jpg", image("Back 1: an empty porch.")),
        drop(tree.frontdoor / "day" / "back-2.jpg", image("Back 2: an empty porch.")),
    ]
    again = daemon.wait_event(
        "camera_watched", camera="frontdoor", predicate=_later_than(daemon, gone)
    )
    assert again["mode"] == "inotify", again
    for target in back:
        daemon.wait_event("image_captioned", path=str(target))
    live = drop(tree.frontdoor / "live.jpg", image("Live after the re-creation."))
    daemon.wait_event("image_captioned", path=str(live))
    assert {sha256(p.read_bytes()) for p in (*back, live, other)} <= _uploaded(api)

    assert len(daemon.named("camera_unavailable", camera="frontdoor")) == 1, daemon.tail()
    assert not daemon.named("camera_unavailable", camera="driveway")
    assert len(daemon.named("camera_watched", camera="driveway")) == 1
    assert daemon.terminate()[0] == 0


# -- a daemon that is not root -----------------------------------------------------------------

NOBODY = 65534
AS_NOBODY = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")


@pytest.fixture
def nobody_tree() -> Iterator[Tree]:
    """A camera tree that uid 65534 can traverse (tmp_path's parents are private to root), with
    a state dir it owns. Removed at the end."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the daemon as another user")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    base = Path(os.path.realpath(tempfile.mkdtemp(prefix="camwatch-e2e-nobody-")))
    try:
        base.chmod(0o755)
        probe = subprocess.run(
            [*AS_NOBODY, sys.executable, "-c", "import camwatch.cli, camwatch.service"],
            capture_output=True,
            text=True,
            env=daemon_env({"HOME": str(base)}),
            timeout=60,
            check=False,
        )
        if probe.returncode != 0:
            pytest.skip(f"uid {NOBODY} cannot run the project's Python: {probe.stderr[-300:]}")
        for sub in ("cams/frontdoor", "cams/driveway", "state", "archive", "outside"):
            (base / sub).mkdir(parents=True)
            (base / sub).chmod(0o755)
        os.chown(base / "state", NOBODY, NOBODY)
        yield Tree(
            root=base,
            frontdoor=base / "cams" / "frontdoor",
            driveway=base / "cams" / "driveway",
            state=base / "state",
            archive=base / "archive",
            outside=base / "outside",
        )
    finally:
        for folder, _, _ in os.walk(base):  # root could remove it anyway; be tidy
            os.chmod(folder, 0o755)
        shutil.rmtree(base, ignore_errors=True)


def _nobody_config(
    tree: Tree, api: StandinCaptionAPI, hooks: WebhookReceiver, **changes: Any
) -> ConfigWriter:
    writer = ConfigWriter(tree.root / "config.yaml", base_config(tree, api, hooks))
    data = writer.data(**FAST)
    for camera in data["cameras"]:
        camera["poll_interval"] = POLL
    data.update(changes)
    writer.base = data
    path = writer.write()
    path.chmod(0o644)
    return writer


def test_as_nobody_an_unreadable_folder_waits_until_it_is_readable(
    nobody_tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    start_wrapped: Callable[..., Daemon],
) -> None:
    tree = nobody_tree
    locked = tree.root / "cams" / "locked"
    early = drop(locked / "early.jpg", image("Locked camera: an early frame."))
    early.chmod(0o644)
    locked.chmod(0o000)
    writer = _nobody_config(tree, api, hooks)
    data = writer.data()
    data["cameras"].append({"name": "locked", "path": str(locked), "poll_interval": POLL})
    writer.base = data
    path = writer.write()

    env = {**SECRET_ENV, "HOME": str(tree.root)}
    daemon = start_wrapped(AS_NOBODY, path, env=env, cwd=tree.root)  # ready all the same
    denied = daemon.wait_event("camera_unavailable", camera="locked")
    assert denied["reason"] == "permission denied", denied
    front = drop(tree.frontdoor / "front.jpg", image("The front door as nobody sees it."))
    daemon.wait_event("image_captioned", path=str(front))

    locked.chmod(0o755)
    watched = daemon.wait_event("camera_watched", camera="locked")
    assert watched["mode"] == "inotify", watched
    daemon.wait_event("image_captioned", path=str(early))  # there all along: the scan finds it
    late = drop(locked / "late.jpg", image("Locked camera: a frame after the chmod."))
    daemon.wait_event("image_captioned", path=str(late))
    assert {sha256(p.read_bytes()) for p in (front, early, late)} <= _uploaded(api)
    assert len(daemon.named("camera_unavailable", camera="locked")) == 1
    assert daemon.terminate()[0] == 0


def test_as_nobody_an_unreadable_file_is_reported_at_once_and_captioned_after_chmod(
    nobody_tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    start_wrapped: Callable[..., Daemon],
) -> None:
    tree = nobody_tree
    path = _nobody_config(tree, api, hooks, complete_timeout="60s").write()
    env = {**SECRET_ENV, "HOME": str(tree.root)}
    daemon = start_wrapped(AS_NOBODY, path, env=env, cwd=tree.root)
    daemon.wait_event("camera_watched", camera="frontdoor")

    data = image("A snapshot nobody may read yet.")
    secret = tree.frontdoor / "secret.jpg"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o000)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    closed_at = time.monotonic()
    assert secret.stat().st_mode & 0o777 == 0
    unreadable = daemon.wait_event("file_unreadable", path=str(secret), timeout=20)
    took = time.monotonic() - closed_at
    assert unreadable["reason"] == "permission denied", unreadable
    assert unreadable["camera"] == "frontdoor", unreadable
    assert took < 10, f"file_unreadable came {took:.1f}s after the close (complete_timeout 60s)"
    assert sha256(data) not in _uploaded(api)
    assert not daemon.named("file_incomplete_skipped")

    secret.chmod(0o644)
    daemon.wait_event("image_captioned", path=str(secret))
    assert sha256(data) in _uploaded(api)
    assert daemon.terminate()[0] == 0


# -- the kernel's limits, for real -------------------------------------------------------------

MAX_QUEUED = Path("/proc/sys/fs/inotify/max_queued_events")


def test_a_real_inotify_overflow_is_followed_by_a_scan_and_nothing_is_lost(
    tree: Tree,
    api: StandinCaptionAPI,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    try:
        old = MAX_QUEUED.read_text().strip()
        MAX_QUEUED.write_text("64\n")
    except OSError as exc:
        pytest.skip(f"cannot lower {MAX_QUEUED}: {exc}")
    data = _fast(config)
    data["caption"]["concurrency"] = 4
    try:
        # The queue size is fixed when the daemon's inotify instance is made (before `ready`).
        daemon = start_daemon(config.write(data))
        daemon.wait_event("camera_watched", camera="frontdoor")
    finally:
        MAX_QUEUED.write_text(old + "\n")
    assert MAX_QUEUED.read_text().strip() == old
    daemon.wait_event("scan_finished", camera="frontdoor")

    count = 400
    burst: dict[str, bytes] = {}
    daemon.send(signal.SIGSTOP)  # it reads no event meanwhile: the kernel queue overflows
    try:
        for i in range(count):
            payload = image(f"burst {i}")
            drop(tree.frontdoor / f"burst-{i:03d}.jpg", payload)
            burst[sha256(payload)] = payload
    finally:
        daemon.send(signal.SIGCONT)
    assert len(burst) == count

    overflow = daemon.wait_event("watch_overflow", camera="frontdoor")
    assert overflow["level"] == "warning", overflow
    daemon.wait_event("scan_finished", camera="frontdoor", predicate=_later_than(daemon, overflow))
    wait_until(
        lambda: set(burst) <= _uploaded(api),
        90,
        f"all {count} files of the burst uploaded",
    )
    wanted = {str(tree.frontdoor / f"burst-{i:03d}.jpg") for i in range(count)}
    try:
        wait_until(
            lambda: wanted <= {e["path"] for e in daemon.named("image_captioned")},
            30,
            "every file of the burst captioned",
        )
    except BaseException:
        missing = wanted - {e["path"] for e in daemon.named("image_captioned")}
        about = [e for e in daemon.events if e.get("path") in missing][:20]
        print("MISSING", len(missing), about)
        print("TAIL", daemon.tail(40))
        raise
    captioned = [e["path"] for e in daemon.named("image_captioned") if e["path"] in wanted]
    assert len(captioned) == count, "a file of the burst was captioned twice"
    assert daemon.terminate()[0] == 0


WATCH_LIMIT = 3
IN_USERNS = (
    "unshare",
    "--user",
    "--map-root-user",
    "sh",
    "-c",
    f'echo {WATCH_LIMIT} > /proc/sys/user/max_inotify_watches && exec "$@"',
    "sh",
)


def test_the_inotify_watch_limit_falls_back_to_polling(
    tree: Tree,
    api: StandinCaptionAPI,
    config: ConfigWriter,
    start_wrapped: Callable[..., Daemon],
) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    probe = subprocess.run(
        [*IN_USERNS, "cat", "/proc/sys/user/max_inotify_watches"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0 or probe.stdout.strip() != str(WATCH_LIMIT):
        pytest.skip(f"cannot lower the watch limit in a user namespace: {probe.stderr[-300:]}")

    # frontdoor takes one watch; driveway needs one per folder, more than are left.
    subs = [tree.driveway / f"day-{i}" for i in range(5)]
    for sub in subs:
        sub.mkdir()
    daemon = start_wrapped(IN_USERNS, config.write(_fast(config)))
    limit = daemon.wait_event("inotify_limit_reached", camera="driveway")
    assert limit["level"] == "error", limit
    assert "fs.inotify.max_user_watches" in limit["reason"], limit
    polled = daemon.wait_event("camera_watched", camera="driveway", mode="poll")
    front = daemon.wait_event("camera_watched", camera="frontdoor")
    assert front["mode"] == "inotify", front
    assert polled["fstype"] == front["fstype"], (polled, front)  # same disk; the limit made it poll

    written = [
        drop(subs[3] / "deep.jpg", image("A car deep in a subfolder.")),
        drop(tree.driveway / "top.jpg", image("A car at the top of the driveway.")),
        drop(tree.frontdoor / "front.jpg", image("The front door, watched by inotify.")),
    ]
    for target in written:
        daemon.wait_event("image_captioned", path=str(target))
    assert {sha256(p.read_bytes()) for p in written} <= _uploaded(api)
    assert len(daemon.named("inotify_limit_reached")) == 1, daemon.tail()
    assert daemon.terminate()[0] == 0
