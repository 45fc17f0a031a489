"""Pickup latency with the default config: from a file being complete (closed after writing, or
renamed into place) to its upload reaching the caption API.

    python bench/pickup.py            # 50 files per scenario, about 30 seconds
    python bench/pickup.py --n 20
    python bench/pickup.py --log-level debug   # also: complete -> queued, from the daemon log

The daemon queues a complete image at once when inotify reports that its writer closed it or
that it was renamed into place; any other change still waits for `debounce`. Scenarios, each
with N real JPEGs of 64 kB (bench/harness.py's `image_bytes`), written 100-200 ms apart into one
camera folder so that no file waits behind another:

- close:  written in place (open, write, close), watch `auto` (inotify on a local filesystem);
- rename: written as `name.jpg.part`, then renamed to `name.jpg`, watch `auto`;
- poll:   written in place with `watch: poll` forced (reference): a change seen by the poller
  still waits for `debounce`, so expect about debounce + up to one poll interval.

The real daemon (`python -m camwatch run`) runs as a subprocess on the harness's config with the
defaults that matter here (`debounce`, `watch`, `poll_interval`, `caption.concurrency` are read
from camwatch.config's defaults). The stand-in caption API runs in this process
(`camwatch.testing.StandinCaptionAPI`, latency L): it records `time.time()` as each request
arrives (`RecordedRequest.wall_time`, taken when the request's headers have been read), and the
upload is matched to its file by the sha256 of the bytes. Latency = that arrival - the
`time.time()` this script took right after `close()` (or `os.rename`): both are the same
machine's clock. The first files of each scenario are not counted (connection set-up).

Every wait has a deadline; the daemon is stopped (SIGTERM, then SIGKILL) and the temporary
folders removed whatever happens (`CAMWATCH_BENCH_KEEP=1` keeps them, with the daemon's log).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h

from camwatch.config import CameraConfig, CaptionConfig, Config
from camwatch.testing import StandinCaptionAPI, WebhookReceiver

DEBOUNCE = float(Config.model_fields["debounce"].default)  # 2s
POLL_INTERVAL = float(CameraConfig.model_fields["poll_interval"].default)  # 2s
CONCURRENCY = int(CaptionConfig.model_fields["concurrency"].default)  # 4
L = 0.1  # stand-in API latency: it only holds a request slot, it is not part of the figure
IMAGE_KB = 64
GAP_S = (0.1, 0.2)  # between two files
WARMUP = 2  # files per scenario not counted
TARGET_P50_MS = 30.0  # close and rename (inotify)

SCENARIOS = {
    # name: (how the file is written, watch mode in the config; None: the default `auto`)
    "close": ("close", None),
    "rename": ("rename", None),
    "poll": ("close", "poll"),
}
TITLES = {
    "close": "written in place, closed (inotify)",
    "rename": "written as .part, renamed (inotify)",
    "poll": "written in place, closed (`watch: poll`, reference)",
}


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self, cap: float | None = None) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise h.Timeout(f"scenario deadline of {self.seconds:.0f}s passed")
        return left if cap is None else min(left, cap)


def start_daemon(
    procs: h.Procs, root: Path, api: str, hook: str, watch: str | None, log_level: str
) -> h.Daemon:
    """h.start_daemon's config and subprocess, with the default debounce and concurrency, one
    camera, and `watch:` set on it when given."""
    dirs = h.camera_dirs(root, 1)
    extra = f"\n    watch: {watch}" if watch else ""
    cams = "\n".join(f"  - name: {d.name}\n    path: {d}{extra}" for d in dirs)
    text = h.CONFIG.format(
        api=api,
        key=h.API_KEY,
        concurrency=CONCURRENCY,
        cameras=cams,
        debounce=f"{DEBOUNCE:g}s",
        state=root / "state",
        hook=hook,
        secret=h.WEBHOOK_SECRET,
    )
    if log_level != "info":
        text = text.replace("log: {level: info,", f"log: {{level: {log_level},")
    config = root / "config.yaml"
    config.write_text(text, encoding="utf-8")
    return h.run_daemon(procs, root, config, dirs)


def arrivals_by_digest(api: StandinCaptionAPI) -> dict[str, float]:
    """Return sha256 -> the first arrival (time.time()) of an upload of those bytes."""
    out: dict[str, float] = {}
    for req in api.requests:
        if req.sha256 is not None and (req.sha256 not in out or req.wall_time < out[req.sha256]):
            out[req.sha256] = req.wall_time
    return out


def run_scenario(name: str, n: int, tmp: Path, dl: Deadline, log_level: str) -> dict[str, Any]:
    how, watch = SCENARIOS[name]
    total = n + WARMUP
    datas = [h.image_bytes(h.QUIET_CAPTION, IMAGE_KB, salt=i + 1) for i in range(total)]
    digests = [hashlib.sha256(d).hexdigest() for d in datas]
    complete: dict[str, float] = {}  # sha256 -> time.time() right after close/rename
    paths: dict[str, str] = {}
    rng = random.Random(7)
    api = StandinCaptionAPI(api_key=h.API_KEY, latency=L)
    hooks = WebhookReceiver()  # the config needs a webhook; quiet captions match no rule
    api.start()
    hooks.start()
    try:
        with h.Procs() as procs:
            daemon = start_daemon(procs, tmp, api.url, hooks.url, watch, log_level)
            try:
                daemon.wait_ready(dl.left(30))
                modes = [e.get("mode") for e in daemon.log.named("camera_watched")]
                folder = daemon.cameras[0]
                begin = time.monotonic() + 0.5
                for i, (data, digest) in enumerate(zip(datas, digests, strict=True)):
                    time.sleep(max(begin - time.monotonic(), 0))
                    dl.left()
                    daemon.check_alive()
                    path = folder / f"{name}-{i:04d}.jpg"
                    if how == "rename":
                        part = folder / f"{path.name}.part"
                        with open(part, "wb") as handle:
                            handle.write(data)
                        os.rename(part, path)
                        complete[digest] = time.time()
                    else:
                        with open(path, "wb") as handle:
                            handle.write(data)
                        complete[digest] = time.time()
                    paths[digest] = str(path)
                    begin += rng.uniform(*GAP_S)
                while True:
                    got = arrivals_by_digest(api)
                    if all(d in got for d in digests):
                        break
                    if dl.end - time.monotonic() <= 0:
                        missing = [paths[d] for d in digests if d not in got]
                        raise h.Timeout(
                            f"{total - len(missing)}/{total} uploads arrived; first missing"
                            f" {missing[0]}; daemon log {daemon.log.path}"
                        )
                    daemon.check_alive()
                    time.sleep(0.05)
            finally:
                daemon.stop()
    finally:
        hooks.stop()
        api.stop()
    counted = digests[WARMUP:]
    lat = [(got[d] - complete[d]) * 1000 for d in counted]
    out: dict[str, Any] = {
        "scenario": name,
        "n": len(counted),
        "modes": modes,
        "p50_ms": statistics.median(lat),
        "p95_ms": h.percentile(lat, 95),
        "max_ms": max(lat),
        "min_ms": min(lat),
        "uploads": len(api.requests),
    }
    # Daemon.stop() read the log to its end and closed it: its events are all in `events`.
    queued = {
        e.get("path"): h.event_time(e)
        for e in daemon.log.events
        if e.get("event") == "image_queued"
    }
    if queued:
        to_queue = [(queued[paths[d]] - complete[d]) * 1000 for d in counted if paths[d] in queued]
        if to_queue:
            out["queued_p50_ms"] = statistics.median(to_queue)
            out["queued_max_ms"] = max(to_queue)
    # An instant pickup that was not: the daemon's own account of the slowest file.
    slow = watch is None and out["p50_ms"] > TARGET_P50_MS
    out["slow"] = evidence(daemon, paths, complete, got, counted) if slow else []
    return out


def evidence(
    daemon: h.Daemon,
    paths: dict[str, str],
    complete: dict[str, float],
    got: dict[str, float],
    counted: list[str],
) -> list[str]:
    """Return the daemon's log lines about the slowest file, for a slow scenario's report."""
    worst = max(counted, key=lambda d: got[d] - complete[d])
    lines = [
        f"slowest: {paths[worst]}: complete {complete[worst]:.3f}, upload arrived"
        f" {got[worst]:.3f} (+{(got[worst] - complete[worst]) * 1000:.0f} ms)"
    ]
    for e in daemon.log.events:
        if e.get("path") == paths[worst] or e.get("event") == "camera_watched":
            rest = {k: v for k, v in e.items() if k not in ("timestamp", "event", "level")}
            lines.append(f"  {e.get('timestamp')} {e.get('event')} {json.dumps(rest)}")
    return lines


def fmt(ms: float) -> str:
    return f"{ms:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="files per scenario (default 50)")
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(SCENARIOS))
    parser.add_argument(
        "--log-level",
        choices=["info", "debug"],
        default="info",
        help="the daemon's log level; debug adds complete -> queued (image_queued events)",
    )
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    only = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    base = Path(tempfile.mkdtemp(prefix="camwatch-pickup-"))
    results: dict[str, dict[str, Any]] = {}
    try:
        for name in only:
            tmp = base / name
            tmp.mkdir()
            budget = 60 + (args.n + WARMUP) * (GAP_S[1] + 0.1) + 3 * (DEBOUNCE + POLL_INTERVAL)
            started = time.monotonic()
            try:
                results[name] = run_scenario(name, args.n, tmp, Deadline(budget), args.log_level)
            except Exception as exc:  # one broken scenario must not lose the others' figures
                traceback.print_exc()
                results[name] = {"scenario": name, "error": f"{type(exc).__name__}: {exc}"}
            took = time.monotonic() - started
            brief = {
                k: round(v, 1) if isinstance(v, float) else v for k, v in results[name].items()
            }
            brief.pop("slow", None)
            print(f"  {name}: {took:.1f}s {brief}", file=sys.stderr, flush=True)
    finally:
        if os.environ.get("CAMWATCH_BENCH_KEEP"):
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)

    head = ["scenario", "n", "p50 ms", "p95 ms", "max ms"]
    rows = []
    for name in only:
        r = results[name]
        if "error" in r:
            rows.append([TITLES[name], "-", r["error"], "", ""])
        else:
            rows.append(
                [TITLES[name], str(r["n"]), fmt(r["p50_ms"]), fmt(r["p95_ms"]), fmt(r["max_ms"])]
            )
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    info = h.machine()
    print(
        f"\nConfig: debounce {DEBOUNCE:g}s, watch auto (poll row: watch poll, poll_interval"
        f" {POLL_INTERVAL:g}s), caption.concurrency {CONCURRENCY}, stand-in API latency"
        f" {L * 1000:.0f} ms (not counted), 1 camera, {IMAGE_KB} kB JPEGs"
        f" {GAP_S[0] * 1000:.0f}-{GAP_S[1] * 1000:.0f} ms apart, first {WARMUP} not counted;"
        f" {info['cores']} cores ({info['cpu']}), Python {info['python']}."
        " Latency: upload arrival at the stand-in - time.time() right after close()/rename()."
    )
    for name in only:
        r = results[name]
        if r.get("modes"):
            extra = ""
            if "queued_p50_ms" in r:
                extra = (
                    f", complete -> queued p50 {fmt(r['queued_p50_ms'])} ms"
                    f" (max {fmt(r['queued_max_ms'])} ms)"
                )
            print(f"{name}: watch mode {','.join(map(str, r['modes']))}{extra}")
        for line in r.get("slow", []):
            print(line)
    slow = [
        n for n in only if SCENARIOS[n][1] is None and results[n].get("p50_ms", 0) > TARGET_P50_MS
    ]
    if slow:
        print(f"MISSED p50 <= {TARGET_P50_MS:g} ms: {', '.join(slow)}")
    return 1 if slow or any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
