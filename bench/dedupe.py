"""Measure near-duplicate skipping: calls saved and wrong skips per `max_distance`.

    python bench/dedupe.py                 # 40 scenes: 640 pairs
    python bench/dedupe.py --scenes 80

For each scene (camwatch/testing/scenes.py: a 1920x1080 street-like frame, JPEG as a camera
writes it) it makes pairs with the frame as first captioned:

- near-duplicates, which dedupe should skip: the same frame re-encoded at another quality, with
  sensor noise, moved by 1-4 pixels, with exposure changed by up to 10%, and noise + wobble +
  exposure together;
- must-not-skip pairs: a person added (standing or lying, at several places and sizes), and
  another scene.

It prints, per `max_distance`, the share of near-duplicates skipped (calls saved) and of
must-not-skip pairs skipped (wrong skips), and the distance distribution per kind. The defaults
(camwatch/similar.py) were chosen from these tables.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from camwatch.similar import (  # noqa: E402
    DEFAULT_MAX_CHANGE,
    DEFAULT_MAX_DISTANCE,
    Fingerprint,
    distance,
    fingerprint,
    local_change,
)
from camwatch.testing.scenes import (  # noqa: E402
    brighter,
    jpeg,
    noisy,
    scene,
    shifted,
    with_person,
)

NEAR = ("re-encoded", "noise", "wobble", "exposure", "all three")
DISTINCT = ("person added", "other scene")


def pairs(seed: int) -> list[tuple[str, Fingerprint, Fingerprint]]:
    """Return (kind, first frame, second frame) fingerprints for one scene's pairs."""
    base = scene(seed)
    first = fingerprint(jpeg(base, quality=85))
    second: list[tuple[str, bytes]] = [
        ("re-encoded", jpeg(base, quality=60)),
        ("re-encoded", jpeg(base, quality=95)),
        ("noise", jpeg(noisy(base, seed))),
        ("noise", jpeg(noisy(base, seed + 1, amount=24))),
        ("wobble", jpeg(shifted(base, 1 + seed % 2, 1))),
        ("wobble", jpeg(shifted(base, 4, -3))),
        ("exposure", jpeg(brighter(base, 1.05))),
        ("exposure", jpeg(brighter(base, 0.9))),
        ("all three", jpeg(brighter(shifted(noisy(base, seed + 2), 2, 2), 1.05))),
        ("person added", jpeg(with_person(base, seed))),
        ("person added", jpeg(with_person(base, seed + 1000))),
        ("person added", jpeg(with_person(base, seed + 2000))),
        ("person added", jpeg(with_person(noisy(base, seed + 3), seed + 3000))),
        ("other scene", jpeg(scene(seed + 10_000))),
        ("other scene", jpeg(scene(seed + 20_000))),
        ("other scene", jpeg(brighter(scene(seed + 30_000), 1.05))),
    ]
    return [(kind, first, fingerprint(data)) for kind, data in second]


def _share(values: list[tuple[int, int]], max_distance: int, max_change: int | None) -> float:
    """Return the share of pairs that dedupe would skip under these limits."""
    skipped = sum(d <= max_distance and (max_change is None or c <= max_change) for d, c in values)
    return skipped / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--max-change", type=int, default=DEFAULT_MAX_CHANGE)
    args = parser.parse_args()
    started = time.perf_counter()
    found: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for seed in range(args.scenes):
        for kind, a, b in pairs(seed):
            found[kind].append((distance(a.dhash, b.dhash), local_change(a.grid, b.grid)))
    total = sum(len(v) for v in found.values())
    near = [p for kind in NEAR for p in found[kind]]
    distinct = [p for kind in DISTINCT for p in found[kind]]
    elapsed = time.perf_counter() - started
    print(f"{total} pairs from {args.scenes} scenes in {elapsed:.0f} s\n")
    print("| kind | pairs | hash distance: median | max | local change: median | max |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in (*NEAR, *DISTINCT):
        dists = [d for d, _ in found[kind]]
        changes = [c for _, c in found[kind]]
        print(
            f"| {kind} | {len(dists)} | {statistics.median(dists):g} | {max(dists)}"
            f" | {statistics.median(changes):g} | {max(changes)} |"
        )
    print(f"\nPer max_distance, hash alone and with max_change {args.max_change}:\n")
    print(
        "| max_distance | hash alone: saved | hash alone: wrong skips"
        " | with max_change: saved | wrong skips | person added skipped | other scene skipped |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    best = 0
    for limit in range(0, 13):
        wrong = _share(distinct, limit, args.max_change)
        print(
            f"| {limit} | {_share(near, limit, None):.1%} | {_share(distinct, limit, None):.1%}"
            f" | {_share(near, limit, args.max_change):.1%} | {wrong:.1%}"
            f" | {_share(found['person added'], limit, args.max_change):.1%}"
            f" | {_share(found['other scene'], limit, args.max_change):.1%} |"
        )
        if wrong <= 0.01:
            best = limit
    chosen = DEFAULT_MAX_DISTANCE
    print(f"\nPer max_change, with max_distance {chosen} (the default):\n")
    print("| max_change | saved | wrong skips | person added skipped |")
    print("|---:|---:|---:|---:|")
    for change in (8, 12, 16, 20, 25, 30, 40):
        print(
            f"| {change} | {_share(near, chosen, change):.1%}"
            f" | {_share(distinct, chosen, change):.1%}"
            f" | {_share(found['person added'], chosen, change):.1%} |"
        )
    print(
        f"\nlargest max_distance with at most 1% wrong skips (max_change {args.max_change}):"
        f" {best}; the default {chosen} skips {_share(near, chosen, args.max_change):.1%} of"
        f" near-duplicates with {_share(distinct, chosen, args.max_change):.1%} wrong skips"
    )


if __name__ == "__main__":
    main()
