"""Load on the daemon's HTTP listener during a benchmark: each path fetched on a fixed period
(Prometheus scraping `/metrics`, a person keeping the timeline open), on a thread of its own,
noting how long each answer took."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import requests
from harness import percentile


class Scraper:
    """GETs each of `paths` every `every` seconds until stopped (a slow answer delays the next
    one, as a scraper does: never two at once per path)."""

    def __init__(self, base: str, token: str, paths: tuple[str, ...], every: float = 1.0) -> None:
        self.base = base
        self.token = token
        self.every = every
        self._stop = threading.Event()
        self._timings: dict[str, list[float]] = {p: [] for p in paths}
        self._failed: dict[str, int] = dict.fromkeys(paths, 0)
        self._bytes: dict[str, int] = dict.fromkeys(paths, 0)
        self._threads = [
            threading.Thread(target=self._run, args=(p,), name=f"scrape {p}", daemon=True)
            for p in paths
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, path: str) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {self.token}"
            due = time.monotonic()
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    answer = session.get(self.base + path, timeout=30)
                    ok = answer.status_code == 200
                    size = len(answer.content)
                except requests.RequestException:
                    ok, size = False, 0
                took = time.monotonic() - started
                if ok:
                    self._timings[path].append(took)
                    self._bytes[path] = size
                else:
                    self._failed[path] += 1
                due += self.every
                self._stop.wait(max(due - time.monotonic(), 0.0))

    def summary(self) -> dict[str, dict[str, Any]]:
        """Return, per path: answers, failures, median / p95 / max time (ms), last size (kB)."""
        out: dict[str, dict[str, Any]] = {}
        for path, times in self._timings.items():
            ms = [t * 1000 for t in times]
            out[path] = {
                "answers": len(ms),
                "failed": self._failed[path],
                "median_ms": round(statistics.median(ms), 1) if ms else None,
                "p95_ms": round(percentile(ms, 95), 1) if ms else None,
                "max_ms": round(max(ms), 1) if ms else None,
                "kb": round(self._bytes[path] / 1024, 1),
            }
        return out
