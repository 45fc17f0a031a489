"""TreePoller on real files: what a round reports, what it never reports, and what it costs.

Rounds are driven directly with an injected clock, so no test sleeps. Folder mtimes are set
back with os.utime where a test needs a change the folder's mtime does not show (appends,
rewrites in place, a coarse-mtime filesystem adding a file within the same tick).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from camwatch.poller import PollResult, TreePoller

NOBODY = 65534


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def write(path: Path, data: bytes = b"\xff\xd8 not much of a jpeg") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def set_mtime(path: Path, mtime_ns: int) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def mtime_ns(path: Path) -> int:
    return os.lstat(path).st_mtime_ns


def poller(root: Path, clock: Clock, **kwargs: Any) -> TreePoller:
    kwargs.setdefault("full_sweep", 1000.0)
    p = TreePoller(str(root), clock=clock, **kwargs)
    p.baseline()
    return p


def quiet(result: PollResult) -> bool:
    return not (result.changed or result.gone or result.unreadable)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cam(tmp_path: Path) -> Path:
    root = tmp_path / "cam"
    root.mkdir()
    return root


# -- what is reported --------------------------------------------------------------------------


def test_baseline_reports_nothing(cam: Path, clock: Clock) -> None:
    write(cam / "a.jpg")
    write(cam / "2026-01-01" / "10" / "b.png")
    p = poller(cam, clock)
    assert p.file_count == 2
    assert p.folder_count == 3
    assert quiet(p.round())
    clock.advance(10)
    assert quiet(p.round())


def test_new_file_is_reported_in_the_next_round(cam: Path, clock: Clock) -> None:
    write(cam / "day" / "old.jpg")
    p = poller(cam, clock)
    new = write(cam / "day" / "new.JPG")
    clock.advance(2)
    assert p.round().changed == [str(new)]
    clock.advance(2)
    assert quiet(p.round())


def test_round_without_baseline_reports_everything(cam: Path, clock: Clock) -> None:
    a = write(cam / "a.jpg")
    b = write(cam / "sub" / "b.jpg")
    p = TreePoller(str(cam), clock=clock)
    assert sorted(p.round().changed) == sorted([str(a), str(b)])


def test_append_to_a_new_file_is_reported_while_it_settles(cam: Path, clock: Clock) -> None:
    p = poller(cam, clock)
    path = write(cam / "a.jpg", b"\xff\xd8part")
    clock.advance(10)
    assert p.round().changed == [str(path)]
    clock.advance(10)
    assert p.round().folders_listed == 1  # once more, after the change's racy window
    folder_mtime = mtime_ns(cam)
    with open(path, "ab") as handle:
        handle.write(b"more bytes")
    set_mtime(cam, folder_mtime)  # an append never changes the folder; make sure of it
    clock.advance(1)
    result = p.round()  # only the settling re-stat can see it
    assert result.changed == [str(path)]
    assert result.folders_listed == 0
    assert result.settling == 1


def test_append_to_a_file_written_just_before_the_baseline(cam: Path, clock: Clock) -> None:
    path = write(cam / "a.jpg", b"\xff\xd8part")
    p = poller(cam, clock)
    with open(path, "ab") as handle:
        handle.write(b"rest")
    clock.advance(10)
    assert p.round().changed == [str(path)]


def test_a_file_stops_settling_after_settle_rounds_and_seconds(cam: Path, clock: Clock) -> None:
    p = poller(cam, clock, settle_rounds=3, settle_seconds=5.0)
    write(cam / "a.jpg")
    clock.advance(10)
    assert p.round().settling == 1
    clock.advance(1)
    assert p.round().settling == 1  # stable 1
    clock.advance(1)
    assert p.round().settling == 1  # stable 2
    clock.advance(1)
    assert p.round().settling == 1  # stable 3 but only 3 s since the change
    clock.advance(2)
    result = p.round()
    assert result.settling == 0
    clock.advance(10)
    assert p.round().stats == p.folder_count  # one fstat per folder, nothing else


def test_removed_file_is_gone(cam: Path, clock: Clock) -> None:
    path = write(cam / "day" / "a.jpg")
    write(cam / "day" / "b.jpg")
    p = poller(cam, clock)
    path.unlink()
    clock.advance(2)
    result = p.round()
    assert result.gone == [str(path)]
    assert result.changed == []


def test_new_subfolders_are_listed_at_once(cam: Path, clock: Clock) -> None:
    write(cam / "2026-01-01" / "a.jpg")
    p = poller(cam, clock)
    new = [
        write(cam / "2026-01-02" / "b.jpg"),
        write(cam / "2026-01-02" / "10" / "c.jpg"),
        write(cam / "2026-01-02" / "10" / "11" / "d.png"),
        write(cam / "2026-01-01" / "12" / "e.jpg"),
    ]
    clock.advance(2)
    result = p.round()
    assert sorted(result.changed) == sorted(str(path) for path in new)
    clock.advance(10)
    assert quiet(p.round())


def test_removed_subfolder_takes_its_subtree(cam: Path, clock: Clock) -> None:
    keep = write(cam / "keep" / "k.jpg")
    gone = [
        write(cam / "day" / "a.jpg"),
        write(cam / "day" / "10" / "b.jpg"),
        write(cam / "day" / "10" / "11" / "c.jpg"),
    ]
    p = poller(cam, clock)
    shutil.rmtree(cam / "day")
    clock.advance(2)
    result = p.round()
    assert sorted(result.gone) == sorted(str(path) for path in gone)
    assert p.folder_count == 2
    assert p.file_count == 1
    # Back again: reported as new.
    back = write(cam / "day" / "a.jpg")
    clock.advance(2)
    assert p.round().changed == [str(back)]
    assert keep.exists()


def test_folder_replaced_by_a_file_or_a_symlink_is_gone(
    cam: Path, clock: Clock, tmp_path: Path
) -> None:
    a = write(cam / "one" / "a.jpg")
    b = write(cam / "two" / "b.jpg")
    outside = tmp_path / "outside"
    write(outside / "x.jpg")
    p = poller(cam, clock)
    shutil.rmtree(cam / "one")
    write(cam / "one", b"now a file")
    shutil.rmtree(cam / "two")
    (cam / "two").symlink_to(outside, target_is_directory=True)
    clock.advance(2)
    result = p.round()
    assert sorted(result.gone) == sorted([str(a), str(b)])
    assert result.changed == []


def test_non_recursive_ignores_subfolders(cam: Path, clock: Clock) -> None:
    write(cam / "sub" / "a.jpg")
    p = poller(cam, clock, recursive=False)
    assert p.folder_count == 1
    top = write(cam / "top.jpg")
    write(cam / "sub" / "b.jpg")
    write(cam / "new" / "c.jpg")
    clock.advance(2)
    assert p.round().changed == [str(top)]


def test_hidden_entries_and_other_names_are_ignored(cam: Path, clock: Clock) -> None:
    p = poller(cam, clock)
    write(cam / ".hidden.jpg")
    write(cam / ".cache" / "a.jpg")
    write(cam / "day" / ".thumbs" / "b.jpg")
    write(cam / "notes.txt")
    write(cam / "x.jpg.part")
    write(cam / "x.jpg~")
    (cam / "folder.jpg").mkdir()  # a folder with an image name is not a file
    (cam / "fifo.jpg").parent.mkdir(exist_ok=True)
    os.mkfifo(cam / "fifo.jpg")
    real = write(cam / "folder.jpg" / "real.jpeg")
    clock.advance(2)
    assert p.round().changed == [str(real)]
    assert p.file_count == 1


def test_custom_candidate_predicate(cam: Path, clock: Clock) -> None:
    p = poller(cam, clock, is_candidate=lambda name: name.endswith(".raw"))
    raw = write(cam / "a.raw")
    write(cam / "b.jpg")
    clock.advance(2)
    assert p.round().changed == [str(raw)]


def test_symbolic_links_are_never_followed(cam: Path, clock: Clock, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    target = write(outside / "real.jpg")
    (cam / "link.jpg").symlink_to(target)
    (cam / "linkdir").symlink_to(outside, target_is_directory=True)
    (cam / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    p = poller(cam, clock)
    assert p.file_count == 0
    assert p.folder_count == 1
    write(outside / "more.jpg")
    with open(target, "ab") as handle:
        handle.write(b"grown")
    (cam / "late.jpg").symlink_to(target)
    (cam / "latedir").symlink_to(outside, target_is_directory=True)
    clock.advance(2)
    result = p.round()
    assert quiet(result)
    assert result.folders_listed == 1  # the root changed, and was listed


def test_names_that_are_not_utf8_or_hold_a_newline(cam: Path, clock: Clock) -> None:
    p = poller(cam, clock)
    folder = os.fsencode(cam / "day")
    os.mkdir(folder)
    raw = folder + b"/caf\xe9.jpg"
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"\xff\xd8")
    os.close(fd)
    os.mkdir(folder + b"/\xff\xfe")
    raw_in_bad_folder = folder + b"/\xff\xfe/x.jpg"
    fd = os.open(raw_in_bad_folder, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.close(fd)
    newline = write(cam / "day" / "line\nbreak.jpg")
    clock.advance(2)
    result = p.round()
    assert sorted(result.changed) == sorted(
        [os.fsdecode(raw), os.fsdecode(raw_in_bad_folder), str(newline)]
    )
    # The reported str paths lead back to the same files.
    assert all(os.path.isfile(path) for path in result.changed)
    os.unlink(raw)
    newline.unlink()
    clock.advance(2)
    assert sorted(p.round().gone) == sorted([os.fsdecode(raw), str(newline)])


def test_a_bind_mounted_ancestor_is_not_entered(cam: Path, clock: Clock) -> None:
    # Symbolic links are never followed, but a bind mount looks like a plain folder.
    write(cam / "a.jpg")
    loop = cam / "sub" / "loop"
    loop.mkdir(parents=True)
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        pytest.skip("needs root and mount(8)")
    done = subprocess.run(
        [mount, "--bind", str(cam), str(loop)], capture_output=True, timeout=30, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"bind mounts not allowed here: {done.stderr!r}")
    try:
        p = poller(cam, clock)
        assert (p.folder_count, p.file_count) == (2, 1)
        assert p.round().unreadable == [(str(loop), "folder loop")]
        clock.advance(10)
        assert quiet(p.round())
    finally:
        subprocess.run(["umount", "-l", str(loop)], capture_output=True, timeout=30, check=False)


# -- the root ----------------------------------------------------------------------------------


def test_missing_root_raises(tmp_path: Path, clock: Clock) -> None:
    with pytest.raises(FileNotFoundError):
        TreePoller(str(tmp_path / "absent"), clock=clock).baseline()
    write(tmp_path / "file.jpg")
    with pytest.raises(NotADirectoryError):
        TreePoller(str(tmp_path / "file.jpg"), clock=clock).baseline()


def test_root_removed_raises_and_recovers(cam: Path, clock: Clock) -> None:
    old = write(cam / "day" / "a.jpg")
    p = poller(cam, clock)
    shutil.rmtree(cam)
    clock.advance(2)
    with pytest.raises(OSError):
        p.round()
    with pytest.raises(OSError):
        p.round()
    new = write(cam / "b.jpg")
    clock.advance(2)
    result = p.round()
    assert result.changed == [str(new)]
    assert result.gone == [str(old)]


def test_root_replaced_by_a_file_raises(cam: Path, clock: Clock) -> None:
    p = poller(cam, clock)
    cam.rmdir()
    write(cam, b"not a folder")
    with pytest.raises(NotADirectoryError):
        p.round()


# -- unreadable folders ------------------------------------------------------------------------


def unreadable_scenario(top: str) -> dict[str, Any]:
    """Build a tree with a mode-000 subfolder below `top` and poll it: run as the owner of
    `top`, not as root. Return what the rounds reported."""
    clock = Clock()
    cam = Path(top) / "cam"
    locked = cam / "locked"
    inside = write(locked / "a.jpg")
    write(cam / "ok" / "b.jpg")
    locked.chmod(0)
    p = TreePoller(str(cam), clock=clock, full_sweep=1000.0)
    p.baseline()
    first = p.round()
    clock.advance(2)
    second = p.round()
    clock.advance(61)  # a sweep does not report it again either
    swept = TreePoller(str(cam), clock=clock, full_sweep=1.0)
    swept.baseline()
    swept_rounds = [swept.round().unreadable]
    clock.advance(2)
    swept_rounds.append(swept.round().unreadable)
    # Readable again: what was inside is reported once, as new.
    locked.chmod(0o755)
    clock.advance(2)
    third = p.round()
    locked.chmod(0)
    clock.advance(2)
    fourth = p.round()
    locked.chmod(0o755)
    # The root itself unreadable: the camera is unavailable.
    cam.chmod(0)
    try:
        p.round()
        root_error = ""
    except OSError as exc:
        root_error = type(exc).__name__
    finally:
        cam.chmod(0o755)
    return {
        "first": first.unreadable,
        "second": second.unreadable,
        "swept": swept_rounds,
        "third_changed": third.changed,
        "third_unreadable": third.unreadable,
        "fourth": fourth.unreadable,
        "root_error": root_error,
        "locked": str(locked),
        "inside": str(inside),
    }


def check_unreadable(report: dict[str, Any]) -> None:
    """Given what unreadable_scenario returned (through JSON: pairs are lists), check it."""
    report = json.loads(json.dumps(report))
    assert report["first"] == [[report["locked"], "permission denied"]]
    assert report["second"] == []
    assert [len(unreadable) for unreadable in report["swept"]] == [1, 0]
    assert report["third_changed"] == [report["inside"]]
    assert report["third_unreadable"] == []
    assert report["fourth"] == report["first"]  # unreadable again: reported again
    assert report["root_error"] == "PermissionError"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 folder")
def test_unreadable_subfolder_is_reported_once(tmp_path: Path) -> None:
    check_unreadable(unreadable_scenario(str(tmp_path)))


@pytest.mark.skipif(os.geteuid() != 0, reason="the unprivileged run covers it")
def test_unreadable_subfolder_as_an_unprivileged_user(tmp_path: Path) -> None:
    # Root reads everything, so the scenario runs in a forked child that became nobody, in a
    # folder nobody can reach (pytest's tmp_path is private to root). Forked, not exec'd: the
    # interpreter may live where nobody cannot read it.
    top = tempfile.mkdtemp(prefix="camwatch-poller-")
    try:
        os.chown(top, NOBODY, NOBODY)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            status = 1
            try:
                os.close(read_end)
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                payload = json.dumps(unreadable_scenario(top))
                status = 0
            except BaseException as exc:
                payload = repr(exc)
            finally:
                os.write(write_end, payload.encode())
                os._exit(status)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            payload = pipe.read().decode()
        _, wait_status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(wait_status) == 0, payload
        check_unreadable(json.loads(payload))
    finally:
        shutil.rmtree(top, ignore_errors=True)

    # And as root, a mode-000 folder is simply read: nothing crashes, nothing is missed.
    clock = Clock()
    cam = tmp_path / "cam"
    write(cam / "locked" / "a.jpg")
    (cam / "locked").chmod(0)
    p = poller(cam, clock)
    new = write(cam / "locked" / "b.jpg")
    clock.advance(2)
    result = p.round()
    assert result.changed == [str(new)]
    assert result.unreadable == []


# -- changes the folder mtime does not show ----------------------------------------------------


def test_full_sweep_finds_an_old_file_rewritten_in_place(cam: Path, clock: Clock) -> None:
    path = write(cam / "day" / "a.jpg", b"\xff\xd8first")
    long_ago = time.time_ns() - 3600 * 10**9
    set_mtime(path, long_ago)
    set_mtime(cam / "day", long_ago)
    set_mtime(cam, long_ago)
    p = poller(cam, clock, full_sweep=30.0)
    path.write_bytes(b"\xff\xd8other")  # same size, same folder entries
    set_mtime(cam / "day", long_ago)
    clock.advance(5)
    result = p.round()
    assert quiet(result)
    assert result.folders_listed == 0
    clock.advance(25)
    result = p.round()
    assert result.changed == [str(path)]
    assert result.folders_listed == 2
    clock.advance(5)
    assert p.round().folders_listed == 0  # swept folders are due again in 30 s


def test_a_clock_set_back_does_not_postpone_the_sweep(cam: Path, clock: Clock) -> None:
    path = write(cam / "a.jpg", b"\xff\xd8first")
    long_ago = time.time_ns() - 3600 * 10**9
    set_mtime(path, long_ago)
    set_mtime(cam, long_ago)
    p = poller(cam, clock, full_sweep=30.0)
    path.write_bytes(b"\xff\xd8other")
    set_mtime(cam, long_ago)
    clock.advance(-600)
    assert p.round().changed == [str(path)]
    clock.advance(5)
    assert p.round().folders_listed == 0


def test_full_sweep_is_spread_over_the_period(cam: Path, clock: Clock) -> None:
    for day in range(10):
        write(cam / f"d{day}" / "a.jpg")
    clock.advance(100)  # nothing racy, nothing settling
    p = poller(cam, clock, full_sweep=10.0)
    listed = []
    for _ in range(10):
        clock.advance(1)
        listed.append(p.round().folders_listed)
    assert sum(listed) == 11
    assert max(listed) <= 2


def test_racy_folder_is_listed_again(cam: Path, clock: Clock) -> None:
    # A coarse-mtime filesystem: a file added in the same tick leaves the mtime unchanged.
    write(cam / "a.jpg")
    tick = int((clock.now - 1) * 1e9)
    set_mtime(cam, tick)
    p = poller(cam, clock)  # listed 1 s after the tick: racy
    b = write(cam / "b.jpg")
    set_mtime(cam, tick)
    clock.advance(1)
    assert p.round().changed == [str(b)]
    clock.advance(2)
    assert p.round().folders_listed == 0  # listed after its tick ended: no longer racy


def test_folder_listed_long_after_its_tick_is_not_racy(cam: Path, clock: Clock) -> None:
    write(cam / "a.jpg")
    tick = int((clock.now - 10) * 1e9)
    set_mtime(cam, tick)
    p = poller(cam, clock, full_sweep=20.0)
    b = write(cam / "b.jpg")
    set_mtime(cam, tick)  # cannot happen on a real filesystem; shows the cost model
    clock.advance(1)
    result = p.round()
    assert quiet(result)
    assert result.folders_listed == 0
    clock.advance(20)
    assert p.round().changed == [str(b)]  # the sweep finds it


def test_a_changed_folder_stays_racy_whatever_the_server_clock(cam: Path, clock: Clock) -> None:
    # The server's clock is far behind: mtimes look old, yet a change just seen means the
    # tick it fell in may still be open.
    skewed = int((clock.now - 500) * 1e9)
    set_mtime(cam, skewed)
    p = poller(cam, clock)
    a = write(cam / "a.jpg")
    set_mtime(cam, skewed + 10**9)
    clock.advance(1)
    assert p.round().changed == [str(a)]
    b = write(cam / "b.jpg")
    set_mtime(cam, skewed + 10**9)  # same tick
    clock.advance(1)
    assert p.round().changed == [str(b)]
    clock.advance(1)
    assert p.round().folders_listed == 1  # the last listing still fell inside the window
    clock.advance(1)
    assert p.round().folders_listed == 0


# -- cost --------------------------------------------------------------------------------------


def test_a_quiet_round_lists_nothing(cam: Path, clock: Clock) -> None:
    for day in range(5):
        for hour in range(4):
            for n in range(3):
                write(cam / f"d{day}" / f"h{hour}" / f"{n}.jpg")
    p = poller(cam, clock)
    assert (p.folder_count, p.file_count) == (26, 60)
    for _ in range(3):  # the baseline's young files settle
        clock.advance(5)
        p.round()
    clock.advance(5)
    result = p.round()
    assert quiet(result)
    assert (result.folders_checked, result.folders_listed, result.stats) == (26, 0, 26)
    new = write(cam / "d3" / "h1" / "new.jpg")
    clock.advance(5)
    result = p.round()
    assert result.changed == [str(new)]
    assert result.folders_listed == 1
    assert result.stats == 26 + 4  # the folders, then the four files of the one listed
