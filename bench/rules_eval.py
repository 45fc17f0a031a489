"""Measure camwatch's rule matcher: precision, recall and F1 on a labelled set, and its speed.

    python bench/rules_eval.py                    # the table and the speed figures
    python bench/rules_eval.py --errors           # also every false positive / negative, explained
    python bench/rules_eval.py --json out.json    # also write the figures as JSON
    python bench/rules_eval.py --wrong 0.1 --missing 0.2   # the `ask` column's error rates

The labelled set (tests/data/rules_eval.yaml) holds rules and captions, each caption with the
rules that should fire. camwatch's matcher is compared with plain substring matching of the same
rules: every phrase spelt out into its literal variants (`expand_phrase`), looked for anywhere in
the lower-cased caption, with `all`, `none`, `skip_if` and `regex` applied the same way.

The `ask` column: the same rules, each with a question (`ask`, ASK below), and every caption
followed by the answers a model would write (rules/answers.py reads them), drawn from the labels
and then spoilt at stated rates: an answer is wrong (yes for no, no for yes) with probability
`--wrong`, "unsure" with `--unsure`, and the whole answers object is missing (the model forgot
it, or max_tokens cut it) with `--missing`, when the rules fall back to their keywords. The
object is written in the ways models write it (bare, fenced, in prose, keys in another case,
single quotes and trailing commas), so the reading is measured too. A sweep over error rates
shows where asking stops paying. Wrong answers fall on captions at random here; a real model's
mistakes gather on the hard captions, which keyword rules also get wrong.

Speed: 100 rules (the set's own six and generated ones) against one 1,000-character caption, the
median and 95th percentile of many runs timed with time.perf_counter_ns, for `RuleSet.matching`
(the daemon's call per caption) and `RuleSet.evaluate` (every rule explained: test-rules).
"typical": generated phrases drawn from the whole set's vocabulary; "stress": half of them drawn
from the caption itself, so most rules match and every mention is built.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
import timeit
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from camwatch.config import MatchingConfig, RuleConfig  # noqa: E402
from camwatch.rules import RuleSet, expand_phrase, explain  # noqa: E402

DEFAULT_DATA = ROOT / "tests" / "data" / "rules_eval.yaml"
STOPWORDS = (
    "a an the is are was were be been it its this that of in on at to by with and or but for "
    "from as into onto there their they he she his her him them its not no one"
)


@dataclass
class Score:
    """True positives, false positives and false negatives of one matcher on one rule."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, predicted: bool, expected: bool) -> None:
        """Given one prediction and its label, count it."""
        self.tp += predicted and expected
        self.fp += predicted and not expected
        self.fn += expected and not predicted

    @property
    def precision(self) -> float:
        """Return tp / (tp + fp), 1.0 when nothing was predicted."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        """Return tp / (tp + fn), 1.0 when nothing was expected."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        """Return the harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float | int]:
        """Return the counts and the three figures, rounded, for JSON."""
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


# The question each rule of the labelled set asks (its intent, in the set's header).
ASK = {
    "person-down": "Is a real person lying on the ground, collapsed or fallen?",
    "fire-smoke": "Is there uncontrolled fire or smoke (not a fireplace, grill or candle)?",
    "weapon": "Is a real weapon such as a gun or a knife present (not a toy or a tool)?",
    "person-at-night": "Is a real person in view at night or in the dark?",
    "package": "Is a package or parcel present?",
    "vehicle": "Is a real motor vehicle present?",
}


@dataclass(frozen=True)
class AskRates:
    """How often the simulated model gets an answer wrong, answers "unsure", or leaves out
    the answers object."""

    wrong: float = 0.02
    unsure: float = 0.03
    missing: float = 0.10


def with_answers(
    text: str, expected: set[str], names: list[str], rates: AskRates, rng: random.Random
) -> tuple[str, bool]:
    """Given a caption, the rules that should fire and the rules asked, return the caption as a
    model answering the questions would write it, and whether the answers object is there."""
    if rng.random() < rates.missing:
        return text, False
    answers: dict[str, str] = {}
    for name in names:
        truth = name in expected
        roll = rng.random()
        if roll < rates.wrong:
            truth = not truth
        answers[name] = "unsure" if roll > 1 - rates.unsure else ("yes" if truth else "no")
    style = rng.randrange(6)
    if style == 1:  # keys as the model pleases
        answers = {k.upper() if rng.random() < 0.5 else k.title(): v for k, v in answers.items()}
    body = json.dumps({"answers": answers})
    if style == 2:  # Python-ish: single quotes, a trailing comma
        body = body.replace('"', "'")[:-2] + ",}}"
    if style == 3:
        return f"{text}\n\n```json\n{body}\n```", True
    if style == 4:
        return f"{text} Here are my answers: {body} Let me know if you need more.", True
    if style == 5:
        return f"{text}\n\n**Answers:**\n{body}", True
    return f"{text}\n{body}", True


class SubstringMatcher:
    """The baseline: the same rules, matched as plain lower-case substrings."""

    def __init__(self, rules: list[RuleConfig]) -> None:
        """Given the rules, spell every phrase out into its literal variants once."""
        self.rules = [
            (
                rule,
                {
                    key: [expand_phrase(p) for p in getattr(rule, key)]
                    for key in ("any", "all", "none", "skip_if")
                },
                re.compile(rule.regex, re.IGNORECASE) if rule.regex else None,
            )
            for rule in rules
        ]

    def matching(self, caption: str) -> set[str]:
        """Given a caption, return the names of the rules that match it by substring."""
        text = " ".join(caption.lower().split())

        def present(variants: list[str]) -> bool:
            return any(v in text for v in variants)

        out = set()
        for rule, phrases, regex in self.rules:
            if phrases["any"] and not any(present(v) for v in phrases["any"]):
                continue
            if not all(present(v) for v in phrases["all"]):
                continue
            if regex is not None and not regex.search(caption):
                continue
            if any(present(v) for v in phrases["none"] + phrases["skip_if"]):
                continue
            out.add(rule.name)
        return out


def load(path: Path) -> tuple[list[RuleConfig], MatchingConfig, list[dict[str, Any]]]:
    """Given the labelled set's path, return its rules, its matching settings and its cases."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    rules = [RuleConfig.model_validate(r) for r in data["rules"]]
    matching = MatchingConfig.model_validate(data.get("matching") or {})
    names = {r.name for r in rules}
    for i, case in enumerate(data["cases"]):
        unknown = set(case["expect"]) - names
        if unknown:
            raise SystemExit(f"{path}: cases[{i}]: unknown rules {sorted(unknown)}")
    return rules, matching, data["cases"]


def evaluate(
    rules: list[RuleConfig],
    matching: MatchingConfig,
    cases: list[dict[str, Any]],
    errors: bool,
    rates: AskRates | None = None,
    seed: int = 16,
    reading: dict[str, int] | None = None,
) -> dict[str, dict[str, Score]]:
    """Given the set, return per matcher and rule the scores; print each error if asked. With
    `rates`, also the `ask` matcher's, over the captions with simulated answers (`reading`, if
    given, counts the answers objects attached and read back)."""
    ruleset = RuleSet(rules, matching)
    baseline = SubstringMatcher(rules)
    asking = [r.model_copy(update={"ask": ASK[r.name]}) if r.name in ASK else r for r in rules]
    ask_set = RuleSet(asking, matching)
    names = [name for name, _ in ask_set.questions()]
    rng = random.Random(seed)
    counts = reading if reading is not None else {}
    scores: dict[str, dict[str, Score]] = {
        "camwatch": {r.name: Score() for r in rules},
        "substring": {r.name: Score() for r in rules},
        "ask": {r.name: Score() for r in rules},
    }
    for case in cases:
        text, expected = case["text"], set(case["expect"])
        decisions = ruleset.evaluate(text, schedules=False)
        ours = {d.rule for d in decisions if d.matched}
        theirs = baseline.matching(text)
        asked: set[str] = set()
        if rates is not None:
            said, attached = with_answers(text, expected, names, rates, rng)
            answered = ask_set.read_answers(said, None)
            counts["attached"] = counts.get("attached", 0) + attached
            counts["read"] = counts.get("read", 0) + answered.found
            said_back = answered.caption.casefold()
            left = '"answers"' in said_back or "'answers'" in said_back
            counts["left"] = counts.get("left", 0) + left
            found = ask_set.evaluate(answered.caption, schedules=False, answers=answered.answers)
            asked = {d.rule for d in found if d.matched}
        for rule in rules:
            name = rule.name
            scores["camwatch"][name].add(name in ours, name in expected)
            scores["substring"][name].add(name in theirs, name in expected)
            scores["ask"][name].add(name in asked, name in expected)
        if errors and ours != expected:
            print(f"\n{text}")
            print(f"  expected {sorted(expected)}, camwatch {sorted(ours)}")
            wrong = [d for d in decisions if (d.rule in expected) != d.matched]
            print("  " + explain(wrong, text).replace("\n", "\n  "))
    return scores


def micro(scores: dict[str, Score]) -> Score:
    """Given per-rule scores, return their sum (the micro average)."""
    total = Score()
    for s in scores.values():
        total.tp += s.tp
        total.fp += s.fp
        total.fn += s.fn
    return total


def table(scores: dict[str, dict[str, Score]]) -> str:
    """Given the matchers' scores, return the side-by-side table as Markdown (camwatch's
    keywords, plain substrings, and `ask` when measured)."""
    kinds = [k for k in ("camwatch", "substring", "ask") if k in scores]
    head = " | ".join(f"{'camwatch' if k == 'camwatch' else k} P | R | F1" for k in kinds)
    lines = [f"| rule | {head} |", "|---|" + "---:|" * (3 * len(kinds))]
    names = list(scores["camwatch"])
    rows = [(name, [scores[k][name] for k in kinds]) for name in names]
    rows.append(("**micro average**", [micro(scores[k]) for k in kinds]))
    for name, found in rows:
        cells = " | ".join(f"{s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f}" for s in found)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def sweep(rules: list[RuleConfig], matching: MatchingConfig, cases: list[dict[str, Any]]) -> str:
    """Return, as Markdown, the micro averages of keywords alone and of `ask` as the simulated
    model's wrong answers and missing objects grow (unsure fixed at 3%; five seeds each)."""
    keywords = micro(evaluate(rules, matching, cases, False)["camwatch"])
    lines = [
        "| wrong | missing | ask P | R | F1 | keywords P | R | F1 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for wrong, missing in ((0.0, 0.0), (0.0, 0.3), (0.005, 0.1), (0.01, 0.1), (0.02, 0.1),
                           (0.05, 0.1), (0.10, 0.1), (0.20, 0.1)):  # fmt: skip
        total = Score()
        for seed in range(5):
            s = micro(
                evaluate(rules, matching, cases, False, AskRates(wrong, 0.03, missing), seed)["ask"]
            )
            total.tp, total.fp, total.fn = total.tp + s.tp, total.fp + s.fp, total.fn + s.fn
        lines.append(
            f"| {wrong:.1%} | {missing:.0%} | {total.precision:.3f} | {total.recall:.3f}"
            f" | {total.f1:.3f} | {keywords.precision:.3f} | {keywords.recall:.3f}"
            f" | {keywords.f1:.3f} |"
        )
    return "\n".join(lines)


def bench_caption(cases: list[dict[str, Any]]) -> str:
    """Given the cases, return a 1,000-character caption made of the first ones."""
    caption = ""
    for case in cases:
        if len(caption) >= 1000:
            break
        caption += " ".join(case["text"].split()) + " "
    return caption[:1000]


def bench_rules(
    rules: list[RuleConfig], cases: list[dict[str, Any]], caption: str, share: float
) -> list[RuleConfig]:
    """Given the set's rules, return them plus generated ones, 100 in all. Each generated rule
    has 3-6 `any` phrases of one to three content words; a `share` of them is taken from
    `caption` (so they are found there), the rest from the whole set's vocabulary."""
    rng = random.Random(7)
    stop = set(STOPWORDS.split())

    def grams(text: str) -> list[str]:
        tokens = re.findall(r"[a-z]+", text.lower())
        return [
            " ".join(tokens[i : i + n])
            for n in (1, 2, 3)
            for i in range(len(tokens) - n + 1)
            if tokens[i] not in stop and tokens[i + n - 1] not in stop and len(tokens[i]) > 3
        ]

    here = grams(caption)
    everywhere = sorted({g for case in cases for g in grams(case["text"])})
    single = [g for g in everywhere if " " not in g]
    out = list(rules)
    while len(out) < 100:
        i = len(out)
        phrases = [
            rng.choice(here) if rng.random() < share else rng.choice(everywhere)
            for _ in range(rng.randint(3, 6))
        ]
        if i % 5 == 0:
            phrases.append(rng.choice(single) + "*")
        extra: dict[str, Any] = {}
        if i % 4 == 0:
            extra["none"] = [rng.choice(single)]
        if i % 7 == 0:
            extra["all"] = [rng.choice(here) if rng.random() < share else rng.choice(single)]
        if i % 10 == 0:
            extra["active"] = ["22:00-06:00"]
            extra["days"] = ["mon", "tue", "wed", "thu", "fri"]
        if i % 25 == 0:
            extra["regex"] = r"\b(?:gun|knife)s?\b"
        out.append(RuleConfig(name=f"synthetic-{i}", any=phrases, **extra))
    return out


def speed(rules: list[RuleConfig], caption: str, runs: int) -> dict[str, float | int]:
    """Given 100 rules and a caption, return the time per call of `RuleSet.matching` (what the
    daemon runs per caption) and of `RuleSet.evaluate` (every rule explained, what test-rules
    runs), in microseconds, with schedules applied."""
    ruleset = RuleSet(rules, timezone="Europe/Berlin")
    now = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    figures: dict[str, float | int] = {
        "rules": len(rules),
        "caption_chars": len(caption),
        "runs": runs,
        "rules_matched": len(ruleset.matching(caption, now=now)),
    }
    for name, call in (
        ("matching", lambda: ruleset.matching(caption, now=now)),
        ("evaluate", lambda: ruleset.evaluate(caption, now=now)),
    ):
        for _ in range(50):
            call()
        samples = []
        for _ in range(runs):
            start = time.perf_counter_ns()
            call()
            samples.append(time.perf_counter_ns() - start)
        samples.sort()
        figures[f"{name}_median_us"] = round(statistics.median(samples) / 1000, 1)
        figures[f"{name}_p95_us"] = round(samples[int(runs * 0.95)] / 1000, 1)
    return figures


def calibration() -> float:
    """Return how long `sum(range(1000))` takes here, in microseconds (best of many): a yardstick
    for comparing the speed figures between machines."""
    best = min(timeit.repeat("sum(range(1000))", number=2000, repeat=7)) / 2000
    return round(best * 1e6, 1)


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation and the speed measurement; print them, and write JSON if asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the labelled set")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write figures as JSON")
    parser.add_argument("--runs", type=int, default=3000, help="timed runs (default 3000)")
    parser.add_argument("--errors", action="store_true", help="explain every wrong decision")
    parser.add_argument("--wrong", type=float, default=0.02, help="ask: wrong answers (0.02)")
    parser.add_argument("--unsure", type=float, default=0.03, help='ask: "unsure" (0.03)')
    parser.add_argument("--missing", type=float, default=0.10, help="ask: no answers (0.10)")
    parser.add_argument("--seed", type=int, default=16, help="ask: the simulation's seed")
    args = parser.parse_args(argv)

    rules, matching, cases = load(args.data)
    rates = AskRates(args.wrong, args.unsure, args.missing)
    reading: dict[str, int] = {}
    scores = evaluate(rules, matching, cases, args.errors, rates, args.seed, reading)
    print(f"\n{len(cases)} captions, {len(rules)} rules ({args.data.relative_to(ROOT)})\n")
    print(table(scores))
    print(
        f"\nask: answers wrong {rates.wrong:.0%}, unsure {rates.unsure:.0%}, object missing"
        f" {rates.missing:.0%} (seed {args.seed}); {reading['read']}/{reading['attached']}"
        f" answers objects read back; {reading['left']} caption(s) still holding one"
    )
    print("\nask against keywords alone as the model errs more (micro averages, 5 seeds):")
    print(sweep(rules, matching, cases))
    caption = bench_caption(cases)
    timing: dict[str, Any] = {"calibration_us": calibration()}
    print(
        f"\nspeed: 100 rules vs a {len(caption)}-character caption, {args.runs} runs each"
        f" (this machine: sum(range(1000)) takes {timing['calibration_us']} µs)"
    )
    print("| rules | matched | matching() median | p95 | evaluate() median | p95 |")
    print("|---|---:|---:|---:|---:|---:|")
    for scenario, share in (("typical", 0.0), ("stress", 0.5)):
        t = timing[scenario] = speed(bench_rules(rules, cases, caption, share), caption, args.runs)
        print(
            f"| {scenario} | {t['rules_matched']} | {t['matching_median_us']} µs"
            f" | {t['matching_p95_us']} µs | {t['evaluate_median_us']} µs"
            f" | {t['evaluate_p95_us']} µs |"
        )
    if args.json:
        figures = {
            "cases": len(cases),
            "rules": {
                name: {
                    "camwatch": scores["camwatch"][name].as_dict(),
                    "substring": scores["substring"][name].as_dict(),
                    "ask": scores["ask"][name].as_dict(),
                }
                for name in scores["camwatch"]
            },
            "micro": {
                "camwatch": micro(scores["camwatch"]).as_dict(),
                "substring": micro(scores["substring"]).as_dict(),
                "ask": micro(scores["ask"]).as_dict(),
            },
            "ask": {"rates": rates.__dict__, "seed": args.seed, "reading": reading},
            "speed": timing,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
