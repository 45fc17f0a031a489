"""Polling a large camera tree: camwatch's TreePoller against watchdog's PollingObserver.

    python bench/poll.py                      # 100,000 files in 2,000 folders, 20 rounds
    python bench/poll.py --files 10000 --folders 200 --rounds 10
    python bench/poll.py --dir /mnt/nfs/tmp   # build the tree on a network mount instead

Builds an NVR-like tree in a temporary folder (day folders x hour folders, tiny .jpg files with
mtimes a day old), then for each poller: one baseline, then N rounds, each after writing
`--new` files into random folders. A PollingObserver round is exactly what its emitter does:
a new DirectorySnapshot(stat=os.stat, listdir=os.scandir) and a DirectorySnapshotDiff against
the previous one.

TreePoller runs on a simulated clock that advances 2 s (the default poll_interval) per round,
so its racy re-listings, settling re-stats and staggered sweep (1/30 of the folders per round
with full_sweep 60 s) cost what they cost in the daemon; the rounds themselves run back to back.
A second TreePoller row turns the sweep off: the floor, one open + fstat per folder plus the
folders that changed.
CPU is time.process_time() around the round (one thread), wall is time.perf_counter().
Memory is measured in a separate pass under tracemalloc (slower, so not timed): "held" is
what the poller's structure keeps after its baseline, "peak" the most allocated during one
round on top of the memory in use before it.

Every new file must be reported by TreePoller (and by watchdog, as files_created); a missing
one fails the run. The whole run is bounded (--budget seconds for the timed rounds of each
poller) and removes its temporary folder.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from watchdog.utils.dirsnapshot import DirectorySnapshot, DirectorySnapshotDiff

from camwatch.poller import TreePoller

POLL_INTERVAL = 2.0
JPEG = b"\xff\xd8\xff\xe0 tiny \xff\xd9"
DAY_NS = 86_400 * 10**9


@dataclass
class Tree:
    """The benchmark's folder tree."""

    root: str
    folders: list[str]
    files: int
    build_seconds: float


@dataclass
class Run:
    """One poller's figures."""

    name: str
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    listed: list[int] = field(default_factory=list)
    stats: list[int] = field(default_factory=list)
    baseline_cpu: float = 0.0
    new_files: int = 0
    reported: int = 0
    held: int = -1  # -1: not measured
    peak: int = -1
    note: str = ""


def build_tree(top: str, files: int, folders: int) -> Tree:
    """Write `files` tiny JPEG-named files spread over `folders` day/hour folders, all a day
    old, the way an NVR's tree looks after 40 days."""
    start = time.perf_counter()
    root = os.path.join(top, "cam")
    os.mkdir(root)
    days = max(1, round(folders / 50))
    hours = max(1, folders // days)
    old = time.time_ns() - DAY_NS
    paths = []
    for d in range(days):
        day = os.path.join(root, f"2026-01-{d + 1:02d}")
        os.mkdir(day)
        for h in range(hours):
            paths.append(os.path.join(day, f"{h:02d}"))
            os.mkdir(paths[-1])
    per_folder, extra = divmod(files, len(paths))
    for i, folder in enumerate(paths):
        for n in range(per_folder + (1 if i < extra else 0)):
            path = os.path.join(folder, f"{n:05d}.jpg")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, JPEG)
            os.close(fd)
            os.utime(path, ns=(old, old))
        os.utime(folder, ns=(old, old))
    for d in range(days):
        day = os.path.join(root, f"2026-01-{d + 1:02d}")
        os.utime(day, ns=(old, old))
    os.utime(root, ns=(old, old))
    return Tree(root, paths, files, time.perf_counter() - start)


def add_files(tree: Tree, rng: random.Random, count: int, tag: str) -> set[str]:
    """Write `count` new files in random folders; return their paths."""
    new = set()
    for i in range(count):
        path = os.path.join(rng.choice(tree.folders), f"new-{tag}-{i}.jpg")
        with open(path, "wb") as handle:
            handle.write(JPEG)
        new.add(path)
    return new


class SimClock:
    """A clock for TreePoller that moves one poll interval per round."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def watchdog_snapshot(root: str) -> DirectorySnapshot:
    # What PollingEmitter._take_snapshot does, with its default stat and listdir.
    return DirectorySnapshot(root, recursive=True, stat=os.stat, listdir=os.scandir)


def run_treepoller(
    tree: Tree, rounds: int, new: int, seed: int, budget: float, sweep: bool = True
) -> Run:
    name = "camwatch TreePoller" if sweep else "camwatch TreePoller, no full sweep"
    run = Run(name)
    rng = random.Random(seed)
    clock = SimClock()
    poller = TreePoller(tree.root, clock=clock, full_sweep=60.0 if sweep else float("inf"))
    cpu0 = time.process_time()
    poller.baseline()
    run.baseline_cpu = time.process_time() - cpu0
    deadline = time.monotonic() + budget
    missing: set[str] = set()
    for k in range(rounds):
        if time.monotonic() > deadline:
            run.note = f"stopped after {k} rounds (budget {budget:.0f}s)"
            break
        added = add_files(tree, rng, new, f"tp{int(sweep)}-{k}")
        clock.now += POLL_INTERVAL
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = poller.round()
        run.cpu.append(time.process_time() - cpu0)
        run.wall.append(time.perf_counter() - wall0)
        run.listed.append(result.folders_listed)
        run.stats.append(result.stats)
        changed = set(result.changed)
        missing |= added - changed
        run.new_files += len(added)
        run.reported += len(added & changed)
    if missing:
        raise SystemExit(f"TreePoller missed {len(missing)} new files, e.g. {sorted(missing)[:3]}")
    return run


def run_watchdog(tree: Tree, rounds: int, new: int, seed: int, budget: float) -> Run:
    run = Run("watchdog PollingObserver (DirectorySnapshot + Diff)")
    rng = random.Random(seed)
    cpu0 = time.process_time()
    snapshot = watchdog_snapshot(tree.root)
    run.baseline_cpu = time.process_time() - cpu0
    deadline = time.monotonic() + budget
    for k in range(rounds):
        if time.monotonic() > deadline:
            run.note = f"stopped after {k} rounds (budget {budget:.0f}s)"
            break
        added = add_files(tree, rng, new, f"wd{k}")
        cpu0, wall0 = time.process_time(), time.perf_counter()
        fresh = watchdog_snapshot(tree.root)
        diff = DirectorySnapshotDiff(snapshot, fresh)
        run.cpu.append(time.process_time() - cpu0)
        run.wall.append(time.perf_counter() - wall0)
        snapshot = fresh
        # Every entry (files and folders) is stat'ed, plus a statx for its birth time.
        run.listed.append(sum(1 for p in fresh.paths if fresh.isdir(p)))
        run.stats.append(len(fresh.paths))
        run.new_files += len(added)
        run.reported += len(added & set(diff.files_created))
    return run


def measure_memory(run: Run, start: Callable[[], object], step: Callable[[object], object]) -> None:
    """Fill run.held (bytes kept by the structure `start` builds) and run.peak (bytes allocated
    at most during one `step` on top of what was in use before it), under tracemalloc."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        state = start()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.reset_peak()
        in_use = tracemalloc.get_traced_memory()[0]
        kept = step(state)
        peak = tracemalloc.get_traced_memory()[1] - in_use
        del kept, state
    finally:
        tracemalloc.stop()
    run.held, run.peak = held, peak


def memory_pass(tree: Tree, ours: Run, theirs: Run, new: int, seed: int) -> None:
    rng = random.Random(seed + 1)
    clock = SimClock()

    def tp_start() -> TreePoller:
        poller = TreePoller(tree.root, clock=clock)
        poller.baseline()
        return poller

    def tp_step(poller: object) -> object:
        add_files(tree, rng, new, "mem-tp")
        clock.now += POLL_INTERVAL
        assert isinstance(poller, TreePoller)
        return poller.round()

    def wd_step(snapshot: object) -> object:
        add_files(tree, rng, new, "mem-wd")
        assert isinstance(snapshot, DirectorySnapshot)
        fresh = watchdog_snapshot(tree.root)
        # Both snapshots and the diff are alive at the diff, as in PollingEmitter.
        return fresh, DirectorySnapshotDiff(snapshot, fresh)

    measure_memory(ours, tp_start, tp_step)
    measure_memory(theirs, lambda: watchdog_snapshot(tree.root), wd_step)


def pct(values: list[float], p: float) -> float:
    """Return the nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def mb(size: int) -> str:
    if size < 0:
        return "-"
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.0f} kB"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.0f}x" if a > 0 and b > 0 else "-"


def table(runs: list[Run]) -> str:
    head = (
        "| poller | rounds | CPU/round median | CPU/round p95 | wall/round median "
        "| wall/round p95 | folders listed/round | stats/round | baseline CPU "
        "| memory held | peak in a round | new files reported |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in runs:
        lines.append(
            f"| {r.name} | {len(r.cpu)} | {ms(statistics.median(r.cpu))} | {ms(pct(r.cpu, 95))} "
            f"| {ms(statistics.median(r.wall))} | {ms(pct(r.wall, 95))} "
            f"| {statistics.median(r.listed):.0f} | {statistics.median(r.stats):.0f} "
            f"| {ms(r.baseline_cpu)} | {mb(r.held)} | {mb(r.peak)} "
            f"| {r.reported}/{r.new_files} |"
        )
    ours, theirs = runs[0], runs[-1]
    lines.append(
        f"| ratio watchdog / TreePoller | | "
        f"{ratio(statistics.median(theirs.cpu), statistics.median(ours.cpu))} "
        f"| {ratio(pct(theirs.cpu, 95), pct(ours.cpu, 95))} "
        f"| {ratio(statistics.median(theirs.wall), statistics.median(ours.wall))} "
        f"| {ratio(pct(theirs.wall, 95), pct(ours.wall, 95))} | | "
        f"| {ratio(theirs.baseline_cpu, ours.baseline_cpu)} "
        f"| {ratio(theirs.held, ours.held)} | {ratio(theirs.peak, ours.peak)} | |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--folders", type=int, default=2000)
    parser.add_argument("--new", type=int, default=10, help="new files before each round")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", default=None, help="where to build the tree (default: $TMPDIR)")
    parser.add_argument("--budget", type=float, default=90.0, help="seconds of rounds per poller")
    args = parser.parse_args(argv)
    if args.folders < 1 or args.files < 0 or args.rounds < 1:
        parser.error("need --folders >= 1, --files >= 0, --rounds >= 1")

    top = tempfile.mkdtemp(prefix="camwatch-poll-bench-", dir=args.dir)
    try:
        tree = build_tree(top, args.files, args.folders)
        print(
            f"tree: {tree.files:,} files in {len(tree.folders):,} folders "
            f"(built in {tree.build_seconds:.1f} s) under {top}",
            flush=True,
        )
        ours = run_treepoller(tree, args.rounds, args.new, args.seed, args.budget)
        print(f"TreePoller: {len(ours.cpu)} rounds done", flush=True)
        floor = run_treepoller(tree, args.rounds, args.new, args.seed, args.budget, sweep=False)
        theirs = run_watchdog(tree, args.rounds, args.new, args.seed, args.budget)
        print(f"watchdog: {len(theirs.cpu)} rounds done", flush=True)
        memory_pass(tree, ours, theirs, args.new, args.seed)
    finally:
        shutil.rmtree(top, ignore_errors=True)

    print()
    print(
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs; {args.new} new files before each round; TreePoller on a "
        f"simulated {POLL_INTERVAL:g} s poll interval; memory by tracemalloc (held = after "
        f"the baseline; peak = extra during one round)."
    )
    print()
    print(table([ours, floor, theirs]))
    for run in (ours, floor, theirs):
        if run.note:
            print(f"\n{run.name}: {run.note}")
    target = 0.100
    verdict = "meets" if statistics.median(ours.cpu) <= target else "MISSES"
    print(f"\nTreePoller {verdict} the target of <= {ms(target)} CPU per round (median).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
