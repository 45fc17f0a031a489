"""camwatch benchmarks: how close the daemon gets to the limit the caption API sets, and how far
ahead of a naive script it is.

    python bench/run.py            # the full sizes (about 8 minutes on 2 cores)
    python bench/run.py --quick    # reduced sizes, under 2 minutes
    python bench/run.py --only burst,latency
    python bench/run.py --only burst,scraped   # the burst with and without /metrics and /
                                               # fetched every second, side by side

Prints one table and writes bench/results.json. Every scenario runs the real `camwatch run` as a
subprocess on its own temporary folder and config, against the stand-in caption API
(`python -m camwatch.testing api`, fixed latency L) and a webhook receiver
(bench/hook_recorder.py), each in a process of its own, all on 127.0.0.1. With caption
concurrency C no daemon can caption more than C/L images a second, and no alert can arrive sooner
than L after its writer closed the file (a closed, complete image is queued at once, without
`debounce`): the figures are measured against those limits.
Each scenario has a deadline and reports a timeout rather than hang.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h
from scraper import Scraper

L = 0.1  # stand-in API latency, seconds
C = 16  # caption.concurrency
DEBOUNCE = 0.5
SLOW_L = 5.0  # the slow API of the memory scenario
IMAGE_KB = 64  # burst and latency images: about a snapshot's size
CAMERAS = 4
# The scraped burst: the listener on, with a token, and these paths fetched every second.
HTTP_TOKEN = "bench-http-token-not-secret"
HTTP_YAML = f"http: {{listen: 127.0.0.1:0, token: {HTTP_TOKEN}}}\n"
SCRAPED_PATHS = ("/metrics", "/")

SIZES = {
    "full": {
        "burst": 2000,
        "latency": 100,
        "memory": (1000, 10_000),
        "catchup": 100_000,
        "baseline": 2000,
        "rules_runs": 3000,
    },
    "quick": {
        "burst": 200,
        "latency": 20,
        "memory": (100, 1000),
        "catchup": 10_000,
        "baseline": 200,
        "rules_runs": 300,
    },
}


class Deadline:
    """A scenario's time budget."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self, cap: float | None = None) -> float:
        """Return the seconds left (at most `cap`). Raise h.Timeout when none are."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise h.Timeout(f"scenario deadline of {self.seconds:.0f}s passed")
        return left if cap is None else min(left, cap)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


# -- 1 and 3: the burst -----------------------------------------------------------------------


def burst(n: int, tmp: Path, dl: Deadline, scraped: bool = False) -> dict[str, Any]:
    """Drop `n` images at once into 4 cameras; measure throughput, CPU and memory. With
    `scraped`, the HTTP listener is on and `/metrics` and the timeline (`/`) are each fetched
    every second throughout (the daemon's CPU then includes answering them)."""
    datas = [h.image_bytes(h.ALERT_CAPTION, IMAGE_KB, salt=i + 1) for i in range(n)]
    scraper: Scraper | None = None
    with h.Procs() as procs:
        api, api_pid = h.start_api(procs, L)
        hooks = h.Hooks(procs)
        extra = HTTP_YAML if scraped else ""
        daemon = h.start_daemon(procs, tmp, api, hooks.url, CAMERAS, C, DEBOUNCE, extra=extra)
        daemon.wait_ready(dl.left(30))
        if scraped:
            port = daemon.wait_event("http_listening", dl.left(10))[0]["port"]
            scraper = Scraper(f"http://127.0.0.1:{port}", HTTP_TOKEN, SCRAPED_PATHS, every=1.0)
        time.sleep(0.5)  # let start-up settle: the figures are the burst's alone
        cpu0, api_cpu0 = h.cpu_seconds(daemon.pid), h.cpu_seconds(api_pid)
        hook_cpu0 = h.cpu_seconds(hooks.proc.pid)
        busy0, total0 = h.machine_busy()
        me0 = h.cpu_seconds(os.getpid())
        started = time.time()
        if scraper is not None:
            scraper.start()
        for i, data in enumerate(datas):
            h.write_file(daemon.cameras[i % CAMERAS] / f"img-{i:05d}.jpg", data)
        written = time.time()
        try:
            if not hooks.wait_for(n, dl.left()):
                raise h.Timeout(f"{hooks.count()}/{n} alerts before the deadline")
        finally:
            if scraper is not None:
                scraper.stop()
        last = time.time()
        cpu = h.cpu_seconds(daemon.pid) - cpu0
        api_cpu = h.cpu_seconds(api_pid) - api_cpu0
        hook_cpu = h.cpu_seconds(hooks.proc.pid) - hook_cpu0
        busy1, total1 = h.machine_busy()
        me = h.cpu_seconds(os.getpid()) - me0
        mem = h.memory_kb(daemon.pid)
        captions = daemon.wait_event("image_captioned", dl.left(30), count=n)
        daemon.stop()
    cap = sorted(h.event_time(e) for e in captions)
    arr = sorted(a.wall for a in hooks.snapshot())
    limit = C / L
    rate = n / (cap[-1] - cap[0] + L)
    alert_rate = n / (arr[-1] - arr[0] + L)
    # After the last file is written the benchmark's own writing no longer competes for CPU.
    after = [t for t in cap if t >= written]
    steady = (len(after) - 1) / (after[-1] - after[0]) if len(after) > 10 else float("nan")
    return {
        "images": n,
        "image_kb": IMAGE_KB,
        "write_s": round(written - started, 3),
        "limit_per_s": limit,
        "captioned_per_s": round(rate, 1),
        "efficiency": round(rate / limit, 3),
        "captioned_per_s_after_written": round(steady, 1),
        "alerts_per_s": round(alert_rate, 1),
        "alert_efficiency": round(alert_rate / limit, 3),
        "last_alert_after_written_s": round(last - written, 3),
        "first_written_to_last_alert_s": round(last - started, 3),
        "ideal_s": round(L + n / limit, 3),
        "daemon_cpu_s": round(cpu, 2),
        "cpu_ms_per_image": round(cpu / n * 1000, 2),
        "standin_api_cpu_ms_per_image": round(api_cpu / n * 1000, 2),
        "receiver_cpu_ms_per_image": round(hook_cpu / n * 1000, 2),
        "daemon_cores_busy": round(cpu / (last - started), 2),
        "others_cores_busy": {
            "standin_api": round(api_cpu / (last - started), 2),
            "receiver": round(hook_cpu / (last - started), 2),
            "benchmark": round(me / (last - started), 2),
            "rest_of_machine": round(
                (busy1 - busy0 - cpu - api_cpu - hook_cpu - me) / (last - started), 2
            ),
        },
        "machine_cores_busy": round((busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1), 2),
        "vmhwm_mb": round(mem["VmHWM"] / 1024, 1),
        **({"scrapes": scraper.summary()} if scraper is not None else {}),
    }


# -- 2: latency -------------------------------------------------------------------------------


def latency(k: int, tmp: Path, dl: Deadline, warmup: int = 3) -> dict[str, Any]:
    """Drop images one at a time, 200 ms apart; overhead = arrival - complete - L (a file closed
    after writing is queued at once: no debounce)."""
    gap = 0.2
    datas = [h.image_bytes(h.ALERT_CAPTION, IMAGE_KB, salt=i + 1) for i in range(k + warmup)]
    complete: dict[str, float] = {}
    with h.Procs() as procs:
        api, _ = h.start_api(procs, L)
        hooks = h.Hooks(procs)
        daemon = h.start_daemon(procs, tmp, api, hooks.url, CAMERAS, C, DEBOUNCE)
        daemon.wait_ready(dl.left(30))
        begin = time.monotonic() + 0.5
        for i, data in enumerate(datas):
            time.sleep(max(begin + i * gap - time.monotonic(), 0))
            dl.left()
            path = daemon.cameras[i % CAMERAS] / f"lat-{i:04d}.jpg"
            complete[str(path)] = h.write_file(path, data)
        if not hooks.wait_for(k + warmup, dl.left()):
            raise h.Timeout(f"{hooks.count()}/{k + warmup} alerts before the deadline")
        daemon.stop()
    arrivals = {a.image: a.wall for a in hooks.snapshot()}
    names = sorted(complete)[warmup:]
    overhead = [arrivals[p] - complete[p] - L for p in names]
    total = [arrivals[p] - complete[p] for p in names]
    return {
        "images": k,
        "gap_s": gap,
        "overhead_median_ms": _ms(statistics.median(overhead)),
        "overhead_p95_ms": _ms(h.percentile(overhead, 95)),
        "overhead_max_ms": _ms(max(overhead)),
        "overhead_min_ms": _ms(min(overhead)),
        "complete_to_alert_median_ms": _ms(statistics.median(total)),
    }


# -- 4: memory --------------------------------------------------------------------------------


INTAKE_PER_S = 1000  # how fast the memory scenario's files arrive: far above C / SLOW_L


def memory(n: int, tmp: Path, dl: Deadline, at_once: bool = False) -> dict[str, Any]:
    """Peak RSS of the daemon with `n` images queued behind a slow API. The files arrive at
    INTAKE_PER_S (the backlog builds in the queue), or with `at_once` all within a second (the
    daemon then also tracks all of them while they settle)."""
    staging = tmp / "staging"
    staging.mkdir(parents=True)
    names = []
    for i in range(n):
        path = staging / f"m{i:06d}.jpg"
        path.write_bytes(h.image_bytes(h.ALERT_CAPTION, 0, salt=i + 1))
        names.append(path)
    with h.Procs() as procs:
        api, _ = h.start_api(procs, SLOW_L)
        hooks = h.Hooks(procs)
        daemon = h.start_daemon(procs, tmp, api, hooks.url, CAMERAS, C, DEBOUNCE)
        daemon.wait_ready(dl.left(30))
        time.sleep(0.5)
        at_ready = h.memory_kb(daemon.pid)
        started = time.time()
        # Renamed in (one inotify event each): written in place, 10,000 files would overflow
        # the kernel's default queue of 16,384 events, which no daemon can fix.
        begin = time.monotonic()
        for i, path in enumerate(names):
            if not at_once and i % 50 == 0:
                time.sleep(max(begin + i / INTAKE_PER_S - time.monotonic(), 0))
            path.rename(daemon.cameras[i % CAMERAS] / path.name)
        rows = 0
        while rows < n:
            time.sleep(dl.left(0.2))
            daemon.check_alive()
            rows = daemon.image_rows()
        queued = time.time() - started
        time.sleep(dl.left(3.0))  # a few slow answers come back and are written
        mem = h.memory_kb(daemon.pid)
        daemon.stop()
    return {
        "images": n,
        "intake_per_s": "all at once" if at_once else INTAKE_PER_S,
        "api_latency_s": SLOW_L,
        "queued_s": round(queued, 2),
        "rss_at_ready_mb": round(at_ready["VmRSS"] / 1024, 1),
        "vmhwm_mb": round(mem["VmHWM"] / 1024, 1),
        "rss_mb": round(mem["VmRSS"] / 1024, 1),
        "rss_anon_mb": round(mem["RssAnon"] / 1024, 1),
        "rss_file_mb": round((mem["RssFile"] + mem["RssShmem"]) / 1024, 1),
    }


# -- 5: catch-up ------------------------------------------------------------------------------


def catchup(n: int, tmp: Path, dl: Deadline) -> dict[str, Any]:
    """Restart over `n` images already done; then start over `n` images never seen."""
    out: dict[str, Any] = {"images": n}
    cameras = h.camera_dirs(tmp, CAMERAS)
    t = time.monotonic()
    files = h.build_tree(cameras, n)
    out["build_tree_s"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    h.build_done_db(tmp / "state", files)
    out["build_db_s"] = round(time.monotonic() - t, 1)
    out["db_mb"] = round((tmp / "state" / "camwatch.db").stat().st_size / 2**20, 1)

    # a) everything already done: how soon is a new image captioned?
    with h.Procs() as procs:
        api, _ = h.start_api(procs, L)
        hooks = h.Hooks(procs)
        daemon = h.start_daemon(procs, tmp, api, hooks.url, CAMERAS, C, DEBOUNCE)
        ready = daemon.wait_ready(dl.left(60))
        new = cameras[0] / "new-00001.jpg"
        complete = h.write_file(new, h.image_bytes(h.ALERT_CAPTION, IMAGE_KB, salt=7))
        first = daemon.wait_event(
            "image_captioned", dl.left(60), where=lambda e: e["path"] == str(new)
        )
        scans = daemon.wait_event("scan_finished", dl.left(120), count=CAMERAS)
        cpu = h.cpu_seconds(daemon.pid)
        mem = h.memory_kb(daemon.pid)
        daemon.stop()
    out["done_ready_s"] = round(ready - daemon.started, 3)
    out["done_first_new_captioned_s"] = round(h.event_time(first[0]) - daemon.started, 3)
    out["done_new_overhead_ms"] = _ms(h.event_time(first[0]) - complete - L)
    out["done_scan_s"] = round(max(h.event_time(e) for e in scans) - daemon.started, 3)
    out["done_already_done"] = sum(e["already_done"] for e in scans)
    out["done_queued"] = sum(e["queued"] for e in scans)
    out["done_cpu_s"] = round(cpu, 2)
    out["done_vmhwm_mb"] = round(mem["VmHWM"] / 1024, 1)

    # b) nothing done: how soon is every file queued?
    shutil.rmtree(tmp / "state")
    new.unlink()
    with h.Procs() as procs:
        api, _ = h.start_api(procs, L)
        hooks = h.Hooks(procs)
        daemon = h.start_daemon(procs, tmp, api, hooks.url, CAMERAS, C, DEBOUNCE)
        ready = daemon.wait_ready(dl.left(60))
        scans = daemon.wait_event("scan_finished", dl.left(), count=CAMERAS)
        cpu = h.cpu_seconds(daemon.pid)
        mem = h.memory_kb(daemon.pid)
        daemon.stop()
    out["new_ready_s"] = round(ready - daemon.started, 3)
    out["new_all_queued_s"] = round(max(h.event_time(e) for e in scans) - daemon.started, 3)
    out["new_scan_seconds_sum"] = round(sum(e["seconds"] for e in scans), 3)
    out["new_queued"] = sum(e["queued"] for e in scans)
    out["new_cpu_s"] = round(cpu, 2)
    out["new_vmhwm_mb"] = round(mem["VmHWM"] / 1024, 1)
    return out


# -- 6: the naive baseline --------------------------------------------------------------------


def baseline(n: int, tmp: Path, dl: Deadline) -> dict[str, Any]:
    """The burst through bench/baseline_naive.py."""
    datas = [h.image_bytes(h.ALERT_CAPTION, IMAGE_KB, salt=i + 1) for i in range(n)]
    dirs = h.camera_dirs(tmp, CAMERAS)
    with h.Procs() as procs:
        api, _ = h.start_api(procs, L)
        hooks = h.Hooks(procs)
        script = Path(__file__).resolve().parent / "baseline_naive.py"
        proc = procs.spawn(
            [
                sys.executable,
                str(script),
                *map(str, dirs),
                "--api",
                api,
                "--key",
                h.API_KEY,
                "--webhook",
                hooks.url,
                "--max",
                str(n),
                "--deadline",
                str(int(dl.left())),
            ],
            stdout=h.subprocess.DEVNULL,
        )
        time.sleep(1.5)  # it is polling
        cpu0 = h.cpu_seconds(proc.pid)
        started = time.time()
        for i, data in enumerate(datas):
            h.write_file(dirs[i % CAMERAS] / f"img-{i:05d}.jpg", data)
        written = time.time()
        if not hooks.wait_for(n, dl.left()):
            raise h.Timeout(f"{hooks.count()}/{n} alerts before the deadline")
        last = time.time()
        cpu = h.cpu_seconds(proc.pid) - cpu0
    arr = sorted(a.wall for a in hooks.snapshot())
    rate = n / (arr[-1] - arr[0] + L)
    return {
        "images": n,
        "write_s": round(written - started, 3),
        "alerts_per_s": round(rate, 2),
        "efficiency": round(rate / (C / L), 3),
        "last_alert_after_written_s": round(last - written, 2),
        "cpu_ms_per_image": round(cpu / n * 1000, 2),
    }


# -- 7: rule matching -------------------------------------------------------------------------


def rules(runs: int, tmp: Path, dl: Deadline) -> dict[str, Any]:
    """100 rules against a 1,000-character caption: bench/rules_eval.py's speed measurement (run
    as it is, its JSON read back), or this file's own if that one fails."""
    out = tmp / "rules_eval.json"
    script = Path(__file__).resolve().parent / "rules_eval.py"
    try:
        h.subprocess.run(
            [sys.executable, str(script), "--runs", str(runs), "--json", str(out)],
            env=h.env(),
            stdout=h.subprocess.DEVNULL,
            stderr=h.subprocess.DEVNULL,
            timeout=dl.left(),
            check=True,
        )
        speed = json.loads(out.read_text(encoding="utf-8"))["speed"]
        typical = speed.get("typical", speed)
        median = typical.get("matching_median_us", typical.get("median_us"))
        p95 = typical.get("matching_p95_us", typical.get("p95_us"))
        if median is None:
            raise ValueError("no median in rules_eval.py's speed figures")
        return {
            "source": "bench/rules_eval.py (typical: RuleSet.matching)",
            "rules": typical.get("rules", 100),
            "caption_chars": typical.get("caption_chars", 1000),
            "median_us": median,
            "p95_us": p95,
            "ns_per_rule": round(median * 1000 / typical.get("rules", 100)),
            "rules_eval": speed,
        }
    except (h.subprocess.SubprocessError, OSError, ValueError, KeyError, TypeError) as exc:
        own = own_rules_speed(runs)
        own["rules_eval_error"] = f"{type(exc).__name__}: {exc}"
        return own


def own_rules_speed(runs: int) -> dict[str, Any]:
    """Time RuleSet.matching: 100 rules of 3-6 phrases, a quarter of them found, against a
    1,000-character caption."""
    import random
    import re

    from camwatch.config import RuleConfig
    from camwatch.rules import RuleSet

    text = (
        "It shows a person standing at the front door holding a parcel, a red car parked on the"
        " driveway behind them and a dog sitting on the lawn. The porch light is on, a bicycle"
        " leans against the fence and two bins stand by the gate. Nobody is lying on the ground"
        " and there is no smoke or fire. "
    )
    caption = (text * 4)[:1000]
    words = sorted(set(re.findall(r"[a-z]{4,}", caption.lower())))
    other = ["ladder", "weapon", "knife", "flames", "intruder", "window", "balcony", "garage"]
    rng = random.Random(7)
    rules = [
        RuleConfig(
            name=f"rule-{i}",
            any=[
                rng.choice(words) if rng.random() < 0.25 else rng.choice(other)
                for _ in range(rng.randint(3, 6))
            ],
        )
        for i in range(100)
    ]
    ruleset = RuleSet(rules)
    for _ in range(50):
        ruleset.matching(caption)
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        ruleset.matching(caption)
        samples.append(time.perf_counter_ns() - start)
    median = statistics.median(samples) / 1000
    return {
        "source": "bench/run.py own_rules_speed (RuleSet.matching)",
        "rules": 100,
        "caption_chars": len(caption),
        "median_us": round(median, 1),
        "p95_us": round(h.percentile([x / 1000 for x in samples], 95), 1),
        "ns_per_rule": round(median * 1000 / 100),
    }


# -- the table --------------------------------------------------------------------------------

SCENARIOS: dict[str, tuple[Callable[[Any, Path, Deadline], dict[str, Any]], str]] = {
    "burst": (burst, "burst"),
    "scraped": (functools.partial(burst, scraped=True), "burst"),
    "latency": (latency, "latency"),
    "memory": (memory, "memory"),
    "catchup": (catchup, "catchup"),
    "baseline": (baseline, "baseline"),
    "rules": (rules, "rules_runs"),
}


def deadline_for(name: str, size: Any) -> float:
    """Return a scenario's time budget for its size: several times what it should take."""
    if name in ("burst", "scraped"):
        return 90 + size / (C / L) * 4
    if name == "latency":
        return 60 + size * 0.2 * 3
    if name == "memory":
        return 60 + size / 100
    if name == "catchup":
        return 240 + size / 400
    if name == "baseline":
        return 60 + size * L * 3
    return 300


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("ok" if ok else "MISSED")


def table(results: dict[str, Any], sizes: dict[str, Any]) -> list[list[str]]:
    """Return the rows: scenario, figure, value, target, verdict."""
    rows: list[list[str]] = []

    def add(
        scenario: str, figure: str, value: Any, target: str = "", ok: bool | None = None
    ) -> None:
        rows.append([scenario, figure, str(value), target, verdict(ok)])

    def failed(scenario: str, key: str) -> bool:
        got = results.get(key)
        if got is None:
            return True
        if "error" in got:
            add(scenario, "error", got["error"], "", False)
            return True
        return False

    b = results.get("burst")
    if not failed("1 burst", "burst"):
        assert b is not None
        title = f"1 burst {b['images']} img, L={L * 1000:.0f}ms, C={C}"
        add(
            title,
            "captioned images/s (limit C/L)",
            f"{b['captioned_per_s']} ({b['limit_per_s']:.0f})",
        )
        add(title, "efficiency", b["efficiency"], ">= 0.95", b["efficiency"] >= 0.95)
        add(
            title,
            "alerts delivered/s (efficiency)",
            f"{b['alerts_per_s']} ({b['alert_efficiency']})",
        )
        add(
            title,
            "efficiency once every file was written",
            round(b["captioned_per_s_after_written"] / b["limit_per_s"], 3),
        )
        add(
            title,
            "first file written -> last alert",
            f"{b['first_written_to_last_alert_s']} s (limit {b['ideal_s']} s)",
        )
        others = b["others_cores_busy"]
        add(
            title,
            "cores busy: daemon / stand-ins+bench / rest of machine",
            f"{b['daemon_cores_busy']} / "
            f"{round(others['standin_api'] + others['receiver'] + others['benchmark'], 2)} / "
            f"{others['rest_of_machine']} of {os.cpu_count()}",
        )
    s = results.get("scraped")
    if not failed("1b burst, scraped", "scraped"):
        assert s is not None
        title = f"1b burst {s['images']} img, /metrics and / each every 1 s"
        plain = b if b is not None and "error" not in b else None

        def versus(key: str, unit: str = "") -> str:
            return f" (without: {plain[key]}{unit})" if plain is not None else ""

        add(title, "captioned images/s", f"{s['captioned_per_s']}{versus('captioned_per_s')}")
        add(
            title,
            "efficiency",
            f"{s['efficiency']}{versus('efficiency')}",
            ">= 0.95",
            s["efficiency"] >= 0.95,
        )
        add(
            title,
            "daemon CPU / image",
            f"{s['cpu_ms_per_image']} ms{versus('cpu_ms_per_image', ' ms')}",
        )
        add(
            title,
            "first file written -> last alert",
            f"{s['first_written_to_last_alert_s']} s"
            f"{versus('first_written_to_last_alert_s', ' s')}",
        )
        for path, got in s["scrapes"].items():
            add(
                title,
                f"GET {path}: answers, median / p95 / max",
                f"{got['answers']} ({got['failed']} failed), {got['median_ms']} /"
                f" {got['p95_ms']} / {got['max_ms']} ms, {got['kb']} kB",
            )
    lat = results.get("latency")
    if not failed("2 latency", "latency"):
        assert lat is not None
        title = f"2 latency, {lat['images']} img 200ms apart"
        add(
            title,
            "overhead median",
            f"{lat['overhead_median_ms']} ms",
            "<= 15 ms",
            lat["overhead_median_ms"] <= 15,
        )
        add(
            title,
            "overhead p95",
            f"{lat['overhead_p95_ms']} ms",
            "<= 50 ms",
            lat["overhead_p95_ms"] <= 50,
        )
        add(title, "overhead max", f"{lat['overhead_max_ms']} ms")
    if b is not None and "error" not in b:
        title = "3 CPU per image (burst)"
        add(
            title,
            "daemon CPU / image",
            f"{b['cpu_ms_per_image']} ms",
            "<= 5 ms",
            b["cpu_ms_per_image"] <= 5,
        )
        add(
            title,
            "stand-in API CPU / image (shares the 2 cores)",
            f"{b['standin_api_cpu_ms_per_image']} ms",
        )
    mem = results.get("memory")
    if not failed("4 memory", "memory"):
        assert mem is not None
        small, big = sizes["memory"]
        title = f"4 memory, backlog, API L={SLOW_L:g}s, {INTAKE_PER_S} files/s in"
        for size in (small, big):
            m = mem[str(size)]
            if "error" in m:
                add(title, f"{size} queued", m["error"], "", False)
                continue
            add(
                title,
                f"VmHWM, {size} queued",
                f"{m['vmhwm_mb']} MB",
                "<= 80 MB",
                m["vmhwm_mb"] <= 80,
            )
        if "flat" in mem:
            add(title, f"VmHWM {big} / {small}", mem["flat"], "<= 1.10", mem["flat"] <= 1.10)
        once = mem.get("at_once", {})
        if "vmhwm_mb" in once:
            add(
                title,
                f"VmHWM, {big} arriving at once",
                f"{once['vmhwm_mb']} MB",
                "<= 80 MB",
                once["vmhwm_mb"] <= 80,
            )
    cu = results.get("catchup")
    if not failed("5 catch-up", "catchup"):
        assert cu is not None
        title = f"5 catch-up, {cu['images']} files"
        add(title, "all done: start -> ready", f"{cu['done_ready_s']} s")
        add(
            title,
            "all done: start -> first new image captioned",
            f"{cu['done_first_new_captioned_s']} s",
            "<= 3 s",
            cu["done_first_new_captioned_s"] <= 3,
        )
        add(title, "all done: start -> scan finished", f"{cu['done_scan_s']} s")
        add(
            title,
            "all new: start -> all queued",
            f"{cu['new_all_queued_s']} s",
            "<= 15 s",
            cu["new_all_queued_s"] <= 15,
        )
    base = results.get("baseline")
    if not failed("6 naive baseline", "baseline"):
        assert base is not None
        title = f"6 naive baseline, {base['images']} img"
        add(title, "alerts delivered/s", base["alerts_per_s"])
        add(title, "CPU / image", f"{base['cpu_ms_per_image']} ms")
        if b is not None and "error" not in b:
            add(
                title,
                "camwatch / baseline (alerts/s)",
                f"{b['alerts_per_s'] / base['alerts_per_s']:.1f}x",
            )
    r = results.get("rules")
    if not failed("7 rules", "rules"):
        assert r is not None
        title = f"7 rules, {r['rules']} rules x {r['caption_chars']} chars"
        add(title, "per caption, median (p95)", f"{r['median_us']} us ({r['p95_us']} us)")
        add(title, "per rule", f"{r['ns_per_rule']} ns")
    return rows


def render(rows: list[list[str]]) -> str:
    head = ["scenario", "figure", "value", "target", ""]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def run_one(name: str, fn: Callable[..., dict[str, Any]], size: Any, base: Path) -> dict[str, Any]:
    dl = Deadline(deadline_for(name, size))
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
    started = time.monotonic()
    try:
        out = fn(size, tmp, dl)
    except h.Timeout as exc:
        out = {"error": f"timeout: {exc}"}
    except Exception as exc:  # one broken scenario must not lose the others' figures
        traceback.print_exc()
        out = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        if not os.environ.get("CAMWATCH_BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
    out["scenario_s"] = round(time.monotonic() - started, 1)
    print(f"  {name}: {json.dumps(out)}", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios; print the table; write bench/results.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes, under 2 minutes")
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(SCENARIOS))
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results.json"
    )
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    sizes = SIZES[mode]
    only = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    info = h.machine()
    print(f"camwatch bench ({mode}) on {info['cores']} cores, {info['cpu']}", file=sys.stderr)
    results: dict[str, Any] = {}
    base = Path(tempfile.mkdtemp(prefix="camwatch-bench-"))
    started = time.time()
    try:
        for name in only:
            if name == "memory":
                small, big = sizes["memory"]
                mem = {str(s): run_one("memory", memory, s, base) for s in (small, big)}
                if all("error" not in mem[str(s)] for s in (small, big)):
                    mem["flat"] = round(mem[str(big)]["vmhwm_mb"] / mem[str(small)]["vmhwm_mb"], 3)
                at_once = functools.partial(memory, at_once=True)
                mem["at_once"] = run_one("memory", at_once, big, base)
                results["memory"] = mem
                continue
            fn, key = SCENARIOS[name]
            results[name] = run_one(name, fn, sizes[key], base)
    finally:
        if os.environ.get("CAMWATCH_BENCH_KEEP"):
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    rows = table(results, sizes)
    text = render(rows)
    note = (
        f"{mode} run, {info['cores']} cores ({info['cpu']}), Python {info['python']}."
        " The stand-in API, the webhook receiver and this script run on the same cores as the"
        " daemon and compete with it for CPU: read the figures as ratios on a shared machine."
    )
    print(text)
    print(note)
    document = {
        "mode": mode,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": info,
        "settings": {
            "api_latency_s": L,
            "concurrency": C,
            "debounce_s": DEBOUNCE,
            "slow_api_latency_s": SLOW_L,
            "image_kb": IMAGE_KB,
            "cameras": CAMERAS,
            "sizes": sizes,
        },
        "results": results,
        "table": [
            dict(zip(["scenario", "figure", "value", "target", "verdict"], r, strict=True))
            for r in rows
        ],
        "note": note,
    }
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
