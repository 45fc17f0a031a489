"""The benchmark's moving parts: the stand-ins and the daemon as subprocesses, /proc readings,
the daemon's JSON log, test images and the state database of a daemon that ran for weeks.

Everything is bounded: every wait has a deadline, every loop a count, and every process started
here is stopped by `Procs.close()` (SIGTERM, then SIGKILL) whatever happens.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from camwatch.store import Store  # noqa: E402
from camwatch.testing import jpeg_with_caption, sample_images  # noqa: E402

API_KEY = "bench-key-not-secret"
WEBHOOK_SECRET = "bench-webhook-secret"
CLK_TCK = os.sysconf("SC_CLK_TCK")
ALERT_CAPTION = "It shows a person standing at the front door holding a parcel, waiting."
QUIET_CAPTION = "A quiet scene with nothing unusual."


class Timeout(Exception):
    """A scenario's deadline passed."""


def env() -> dict[str, str]:
    """Return the environment for child processes: this work tree's camwatch first."""
    out = dict(os.environ)
    out["PYTHONPATH"] = str(ROOT) + (os.pathsep + out["PYTHONPATH"] if "PYTHONPATH" in out else "")
    out.pop("NOTIFY_SOCKET", None)
    out.pop("WATCHDOG_USEC", None)
    return out


# -- /proc ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """Return a process's user + system CPU seconds so far (all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> tuple[float, float]:
    """Return (busy, total) CPU seconds of the whole machine so far, all cores."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / CLK_TCK, sum(fields) / CLK_TCK


def memory_kb(pid: int) -> dict[str, int]:
    """Return a process's VmHWM (peak RSS), VmRSS and its parts (RssAnon: the heap; RssFile,
    RssShmem: mapped files such as SQLite's WAL index) in kB."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0])
    return out


def machine() -> dict[str, Any]:
    """Return what the figures were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            model = next((ln.split(":", 1)[1].strip() for ln in handle if "model name" in ln), "")
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
    }


# -- images -----------------------------------------------------------------------------------


def _base_jpeg() -> bytes:
    return next(data for name, data, _ in sample_images() if name.endswith(".jpg"))


def image_bytes(caption: str, pad_kb: int = 0, salt: int = 0) -> bytes:
    """Return a real JPEG the stand-in captions as `caption`, padded to about `pad_kb` kB with an
    APP15 segment (so its size is a snapshot's, not a thumbnail's) and made unique by `salt`."""
    base = _base_jpeg()
    filler = b""
    if pad_kb:
        size = min(pad_kb * 1024, 0xFFF0)
        chunk = os.urandom(64)
        payload = (salt.to_bytes(8, "big") + chunk * (size // 64 + 1))[:size]
        filler = b"\xff\xef" + (len(payload) + 2).to_bytes(2, "big") + payload
    elif salt:
        payload = b"bench" + salt.to_bytes(8, "big")
        filler = b"\xff\xef" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg_with_caption(caption, b"\xff\xd8" + filler + base[2:])


def write_file(path: Path, data: bytes) -> float:
    """Write a file in place, as a camera or `cp` does; return when it was complete."""
    with open(path, "wb") as handle:
        handle.write(data)
    return time.time()


# -- child processes --------------------------------------------------------------------------


class Procs:
    """Every child process of one scenario; `close()` stops them all."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []
        self.interrupt_first: list[subprocess.Popen[bytes]] = []  # profilers: SIGINT, then wait

    def spawn(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, env=env(), **kwargs)
        self.children.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.interrupt_first:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.interrupt_first.clear()
        for proc in self.children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 12.0
        for proc in self.children:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.children.clear()

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _first_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """Read the URL a stand-in prints first."""
    stream = proc.stdout
    assert stream is not None
    box: list[bytes] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box or not box[0].strip():
        raise Timeout(f"stand-in did not print its URL within {timeout:g}s")
    return box[0].decode().strip()


def start_api(procs: Procs, latency: float) -> tuple[str, int]:
    """Start the stand-in caption API as its own process; return its URL and pid."""
    proc = procs.spawn(
        [
            sys.executable,
            "-m",
            "camwatch.testing",
            "api",
            "--port",
            "0",
            "--latency",
            str(latency),
            "--api-key",
            API_KEY,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    return _first_line(proc, 15.0), proc.pid


@dataclass(frozen=True)
class Arrival:
    """One webhook POST as the receiver saw it."""

    wall: float
    image: str
    status: int


class Hooks:
    """The webhook receiver (bench/hook_recorder.py) in its own process, streaming arrivals."""

    def __init__(self, procs: Procs) -> None:
        self.proc = procs.spawn(
            [sys.executable, str(BENCH / "hook_recorder.py")],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.url = _first_line(self.proc, 15.0)
        self.arrivals: list[Arrival] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, name="hooks-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # ends when the recorder exits
            try:
                item = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                self.arrivals.append(Arrival(item["t"], item.get("image") or "", item["status"]))
                self._cond.notify_all()

    def count(self) -> int:
        with self._cond:
            return len(self.arrivals)

    def wait_for(self, n: int, timeout: float) -> bool:
        """Wait until `n` POSTs arrived. Return whether they did in time."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.arrivals) >= n, timeout)

    def snapshot(self) -> list[Arrival]:
        with self._cond:
            return list(self.arrivals)


class DaemonLog:
    """The daemon's JSON log file, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self._handle: IO[str] | None = None
        self._partial = ""

    def poll(self) -> list[dict[str, Any]]:
        """Read the lines written since the last call; return their events."""
        if self._handle is None:
            if not self.path.exists():
                return []
            self._handle = open(self.path, encoding="utf-8", errors="replace")  # noqa: SIM115
        chunk = self._handle.read()
        if not chunk:
            return []
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()
        new = []
        for line in lines:
            if line.startswith("{"):
                try:
                    new.append(json.loads(line))
                except ValueError:
                    continue
        self.events.extend(new)
        return new

    def wait(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float,
        count: int = 1,
        alive: Callable[[], None] = lambda: None,
    ) -> list[dict[str, Any]]:
        """Wait until `count` events satisfy `predicate`; return them. Raise Timeout, or what
        `alive` raises when the writer is gone."""
        deadline = time.monotonic() + timeout
        found = [e for e in self.events if predicate(e)]
        while len(found) < count:
            if time.monotonic() > deadline:
                raise Timeout(f"{len(found)}/{count} log events in {timeout:.0f}s")
            alive()
            time.sleep(0.01)
            found += [e for e in self.poll() if predicate(e)]
        return found[:count]

    def named(self, name: str) -> list[dict[str, Any]]:
        self.poll()
        return [e for e in self.events if e.get("event") == name]

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def event_time(event: dict[str, Any]) -> float:
    """Return an event's `timestamp` as a Unix time."""
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


CONFIG = """\
caption:
  base_url: {api}
  api_key: {key}
  concurrency: {concurrency}
  timeout: 60s
  retry: {{attempts: 3, backoff_initial: 500ms, backoff_max: 2s}}
cameras:
{cameras}
debounce: {debounce}
complete_timeout: 30s
state_dir: {state}
rules:
  - name: person-at-door
    any: ["person", "someone"]
    none: ["poster", "statue"]
    severity: warning
  - name: person-down
    any: ["lying on the ground", "collapsed", "unconscious"]
    severity: critical
    cooldown: 5m
  - name: vehicle
    any: ["car", "truck", "van"]
    severity: info
  - name: smoke
    any: ["smoke", "fire", "flames"]
    severity: critical
webhooks:
  - name: bench
    url: {hook}
    secret: {secret}
    timeout: 10s
log: {{level: info, format: json}}
"""


@dataclass
class Daemon:
    """One `camwatch run` subprocess with its folders, config and log."""

    root: Path
    proc: subprocess.Popen[bytes]
    log: DaemonLog
    started: float  # time.time() just before it was spawned
    cameras: list[Path]

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def db(self) -> Path:
        return self.root / "state" / "camwatch.db"

    def wait_ready(self, timeout: float) -> float:
        """Wait for the `ready` event; return its time."""
        return event_time(self.wait_event("ready", timeout)[0])

    def wait_event(
        self,
        name: str,
        timeout: float,
        count: int = 1,
        where: Callable[[dict[str, Any]], bool] = lambda e: True,
    ) -> list[dict[str, Any]]:
        """Wait until the log holds `count` events `name` for which `where` holds."""
        return self.log.wait(
            lambda e: e.get("event") == name and where(e), timeout, count, self.check_alive
        )

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {self.proc.returncode}: see {self.log.path}")

    def image_rows(self) -> int:
        """Return how many image records the state database holds (read-only, beside the
        daemon's WAL writer)."""
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT COUNT(*) FROM images").fetchone()[0])
        finally:
            db.close()

    def stop(self, timeout: float = 12.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.poll()
        self.log.close()
        return self.proc.returncode


def camera_dirs(root: Path, count: int) -> list[Path]:
    """Create `count` camera folders under `root/cameras`; return them."""
    dirs = [root / "cameras" / f"cam{i}" for i in range(count)]
    for folder in dirs:
        folder.mkdir(parents=True, exist_ok=True)
    return dirs


def start_daemon(
    procs: Procs,
    root: Path,
    api: str,
    hook: str,
    cameras: int = 4,
    concurrency: int = 16,
    debounce: float = 0.5,
    extra: str = "",
) -> Daemon:
    """Write a config under `root` (with `extra` YAML appended) and start `camwatch run` on
    it."""
    dirs = camera_dirs(root, cameras)
    cams = "\n".join(f"  - name: {d.name}\n    path: {d}" for d in dirs)
    config = root / "config.yaml"
    config.write_text(
        CONFIG.format(
            api=api,
            key=API_KEY,
            concurrency=concurrency,
            cameras=cams,
            debounce=f"{debounce}s",
            state=root / "state",
            hook=hook,
            secret=WEBHOOK_SECRET,
        )
        + extra,
        encoding="utf-8",
    )
    return run_daemon(procs, root, config, dirs)


def run_daemon(procs: Procs, root: Path, config: Path, dirs: list[Path]) -> Daemon:
    """Start `camwatch run -c config` (its log in `root/daemon.log`), profiled with py-spy when
    CAMWATCH_BENCH_PROFILE names a folder."""
    log_path = root / "daemon.log"
    handle = open(log_path, "wb")  # noqa: SIM115 - the child holds it; closed below
    started = time.time()
    try:
        proc = procs.spawn(
            [sys.executable, "-m", "camwatch", "run", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=handle,
        )
    finally:
        handle.close()
    profile = os.environ.get("CAMWATCH_BENCH_PROFILE")
    if profile:
        # py-spy samples the daemon from outside (100 Hz, every thread); stopped with SIGINT it
        # writes collapsed stacks, one file per daemon.
        out = Path(profile) / f"{root.name}-{proc.pid}.txt"
        spy = procs.spawn(
            [
                "py-spy",
                "record",
                "--nonblocking",
                "--gil",
                "-p",
                str(proc.pid),
                "-r",
                "200",
                "-f",
                "raw",
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.interrupt_first.append(spy)
    return Daemon(root, proc, DaemonLog(log_path), started, dirs)


# -- a state database with history ------------------------------------------------------------


def build_tree(cameras: list[Path], total: int, days: int = 25) -> list[tuple[str, str, str]]:
    """Fill the camera folders with `total` small real JPEGs in day folders, as cameras leave
    them (cam/2026-10-01/12-00-00-0001.jpg), their mtimes spread over the past `days` days.
    Return (camera, path, relpath) of each, oldest first."""
    data = image_bytes(QUIET_CAPTION)
    now = time.time()
    per_cam = -(-total // len(cameras))
    per_day = -(-per_cam // days)
    out: list[tuple[str, str, str]] = []
    step = days * 86400.0 / max(per_cam, 1)
    for c, cam in enumerate(cameras):
        made = 0
        for day in range(days):
            if made >= per_cam or len(out) >= total:
                break
            folder = cam / f"2026-10-{day + 1:02d}"
            folder.mkdir(exist_ok=True)
            for k in range(per_day):
                if made >= per_cam or len(out) >= total:
                    break
                path = folder / f"{k:05d}-c{c}.jpg"
                with open(path, "wb") as handle:
                    handle.write(data)
                when = now - days * 86400.0 - 3600 + made * step
                os.utime(path, ns=(int(when * 1e9), int(when * 1e9)))
                out.append((cam.name, str(path), f"{folder.name}/{path.name}"))
                made += 1
    return out


def build_done_db(state_dir: Path, files: Iterable[tuple[str, str, str]]) -> int:
    """Create the state database of a daemon that has captioned every one of `files`, through
    the Store's own schema: a `done` row per image with its real size, mtime and sha256, a
    caption and tokens, timestamps in the order they happened, and, for one image in 20, an
    alert delivered to the webhook. Return how many rows were written."""
    import hashlib
    import uuid

    Store(state_dir).close()  # the schema and pragmas exactly as the daemon makes them
    db = sqlite3.connect(state_dir / "camwatch.db", isolation_level=None)
    rows = []
    alerts = []
    digests: dict[tuple[int, int], str] = {}
    for image_id, (camera, path, rel) in enumerate(files, start=1):
        st = os.stat(path)
        key = (st.st_size, st.st_ino)
        if key not in digests:
            with open(path, "rb") as handle:
                digests[key] = hashlib.sha256(handle.read()).hexdigest()
        seen = st.st_mtime
        done = seen + 0.9
        rows.append(
            (
                image_id,
                camera,
                path,
                rel,
                st.st_size,
                st.st_mtime_ns,
                digests[key],
                QUIET_CAPTION,
                291,
                10,
                301,
                seen,
                done,
                done,
            )
        )
        if image_id % 20 == 0:
            body = json.dumps({"id": str(uuid.uuid4()), "image": path, "caption": QUIET_CAPTION})
            alerts.append(
                (str(uuid.uuid4()), image_id, "person-at-door", camera, body, done, done + 0.05)
            )
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO images (id, camera, path, relpath, size, mtime_ns, sha256, state, prio,"
        " attempts, next_at, caption, tokens_input, tokens_output, tokens_total, detected_at,"
        " updated_at, captioned_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'done', 0, 0, 0, ?, ?, ?, ?,"
        " ?, ?, ?)",
        rows,
    )
    db.executemany(
        "INSERT INTO alerts (event_id, image_id, rule, camera, target_kind, target, body, state,"
        " attempts, next_at, created_at, delivered_at) VALUES (?, ?, ?, ?, 'webhook', 'bench',"
        " ?, 'delivered', 1, ?, ?, ?)",
        [(e, i, r, c, b, t, t, d) for e, i, r, c, b, t, d in alerts],
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return len(rows)


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (0..100) of `values`, nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(math.ceil(q / 100 * len(ordered)) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]
