"""The engine: conditions, camera filters, config order, rules from the config, and the labelled
evaluation set."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from camwatch.config import MatchingConfig, RuleConfig, parse_config
from camwatch.errors import ConfigError
from camwatch.rules import Mention
from camwatch.rules.engine import RuleSet

from .support import API_EXAMPLE, decide, matches, rule

EVAL_SET = Path(__file__).resolve().parents[2] / "data" / "rules_eval.yaml"


# -- conditions ------------------------------------------------------------------------------


def test_api_example_alerts_on_lying_not_on_unconscious() -> None:
    decision = decide(API_EXAMPLE, rule(any=["lying on the ground", "collapsed", "unconscious"]))
    assert decision.matched
    assert decision.phrases == ["lying on the ground"]
    discarded = [m for m in decision.mentions if m.discarded]
    assert [(m.phrase, m.discarded) for m in discarded] == [
        ("unconscious", "hedged by 'impossible to determine if'")
    ]
    assert not decide(API_EXAMPLE, rule(any=["unconscious"])).matched


def test_spec_example_no_smoke_but_a_person() -> None:
    caption = "No smoke is visible, but a person is lying on the ground"
    ruleset = RuleSet(
        [
            rule(name="down", any=["lying on the ground"]),
            rule(name="fire", any=["smoke"]),
        ]
    )
    decisions = ruleset.evaluate(caption, schedules=False)
    assert [(d.rule, d.matched) for d in decisions] == [("down", True), ("fire", False)]
    assert decisions[1].reason == "no phrase of any present (1 discarded: negated by 'no')"


@pytest.mark.parametrize(
    "caption",
    [
        "no one is lying on the ground",
        "nobody has fallen",
        "there is no smoke",
        "it is impossible to determine if they are unconscious",
        "a man without a weapon",
    ],
)
def test_spec_negated_and_hedged_examples_do_not_alert(caption: str) -> None:
    assert not matches(caption, "lying on the ground", "fallen", "smoke", "unconscious", "weapon")


def test_any_lists_every_configured_phrase_found_as_written() -> None:
    decision = decide(
        "A man has Collapsed and is lying on the ground.",
        rule(any=["lying on the ground", "collapsed", "unconscious", "lie+ on the ground"]),
    )
    assert decision.phrases == ["lying on the ground", "collapsed", "lie+ on the ground"]
    assert decision.reason == ("any: 'lying on the ground', 'collapsed', 'lie+ on the ground'")


def test_all_needs_every_phrase_to_count() -> None:
    both = rule(any=["person"], all=["night", "gate"])
    assert decide("A person at the gate at night.", both).phrases == ["person", "night", "gate"]
    missing = decide("A person at the gate.", both)
    assert (missing.matched, missing.reason) == (False, "all: 'night' not present")
    negated = decide("A person at the gate; it is not night.", both)
    assert negated.reason == "all: 'night' only negated or hedged"
    assert decide("Night falls; a person waits at the gate.", rule(all=["night", "gate"])).matched


def test_none_blocks_unless_negated() -> None:
    down = rule(any=["lying on the ground"], none=["statue", "poster"])
    statue = decide("A statue of a man lying on the ground.", down)
    assert (statue.matched, statue.reason) == (False, "none: 'statue' present")
    assert decide("It is not a statue: a man is lying on the ground.", down).matched
    assert decide("A man is lying on the ground. There is no poster.", down).matched


def test_regex_matches_counts_and_is_discarded_like_phrases() -> None:
    plate = rule(regex=r"plate [A-Z]{2}\d{3}")
    decision = decide("A van with plate AB123 is parked.", plate)
    assert (decision.matched, decision.phrases) == (True, ["plate AB123"])
    assert decision.reason == "regex: 'plate AB123'"
    negated = decide("There is no plate AB123 visible.", plate)
    assert negated.matched is False
    assert negated.reason == "regex did not match (1 discarded: negated by 'no')"
    combined = decide("A man holds a knife.", rule(any=["man"], regex=r"\b(knife|gun)s?\b"))
    assert combined.phrases == ["man", "knife"]
    assert not decide("A man.", rule(any=["man"], regex="knife")).matched


def test_regex_text_is_the_first_that_counts() -> None:
    decision = decide("No gun here, but a knife there.", rule(regex=r"gun|knife"))
    assert decision.phrases == ["knife"]
    assert [m.discarded is None for m in decision.mentions] == [False, True]


def test_negated_all_none_and_regex_mentions_are_explained() -> None:
    decision = decide(
        "There is no poster, but no gun is visible either.",
        rule(any=["poster"], regex="gun"),
    )
    assert not decision.matched
    conditions = {(m.condition, m.discarded is not None) for m in decision.mentions}
    assert conditions == {("any", True), ("regex", True)}


def test_skip_if_makes_the_rule_not_match() -> None:
    night = rule(any=["person"], skip_if=["too dark to {tell|see}"])
    skipped = decide("A person may be near the shed; it is too dark to tell.", night)
    assert (skipped.matched, skipped.reason) == (False, "skip_if: 'too dark to {tell|see}'")
    assert decide("A person stands at the shed. It is not too dark to see.", night).matched
    assert decide("A person stands at the shed.", night).matched


def test_user_cues_from_matching_config() -> None:
    config = MatchingConfig(negations=["free from"], hedges=["rumoured to be"])
    ruleset = RuleSet([rule(any=["smoke", "burning"])], config)
    assert not ruleset.matching("The room is free from smoke.", schedules=False)
    assert not ruleset.matching("A shed is rumoured to be burning.", schedules=False)
    assert ruleset.matching("Smoke fills the room.", schedules=False)


def test_camera_filters() -> None:
    ruleset = RuleSet(
        [rule(name="front", any=["car"], cameras=["frontdoor"]), rule(name="all", any=["car"])]
    )
    assert [d.rule for d in ruleset.matching("A car.", schedules=False)] == ["front", "all"]
    assert [d.rule for d in ruleset.matching("A car.", "garden", schedules=False)] == ["all"]
    assert [d.rule for d in ruleset.matching("A car.", "frontdoor", schedules=False)] == [
        "front",
        "all",
    ]
    decision = ruleset.evaluate("A car.", "garden", schedules=False)[0]
    assert decision.reason == "camera 'garden' not in cameras"


def test_evaluate_keeps_config_order_and_matching_keeps_the_matches() -> None:
    rules = [rule(name=f"r{i}", any=["car" if i % 2 else "boat"]) for i in range(6)]
    ruleset = RuleSet(rules)
    assert [d.rule for d in ruleset.evaluate("A car.", schedules=False)] == [
        "r0",
        "r1",
        "r2",
        "r3",
        "r4",
        "r5",
    ]
    assert [d.rule for d in ruleset.matching("A car.", schedules=False)] == ["r1", "r3", "r5"]


def test_decisions_are_frozen() -> None:
    decision = decide("A car.", rule(any=["car"]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.matched = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.mentions[0].discarded = "x"  # type: ignore[misc]
    assert decision.mentions == [Mention("car", 2, 5, None, "any")]


def test_rules_from_parse_config(tmp_path: Path) -> None:
    config = parse_config(
        {
            "cameras": [{"name": "frontdoor", "path": str(tmp_path)}],
            "timezone": "Europe/Berlin",
            "matching": {"negations": ["free from"]},
            "rules": [
                {
                    "name": "person-down",
                    "any": ["lying on the ground", "collapsed", "unconscious"],
                    "none": ["poster", "statue"],
                    "cameras": ["frontdoor"],
                    "active": ["22:00-06:00"],
                }
            ],
        }
    )
    ruleset = RuleSet(config.rules, config.matching, config.timezone)
    night = datetime(2026, 11, 23, 23, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    day = night.replace(hour=12)
    assert ruleset.matching(API_EXAMPLE, "frontdoor", night)[0].phrases == ["lying on the ground"]
    assert ruleset.matching(API_EXAMPLE, "frontdoor", day) == []
    assert ruleset.matching(API_EXAMPLE, "frontdoor", day, schedules=False)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (
            {"rules": [{"name": "r", "any": ["x"], "active": ["25:00-06:00"]}]},
            "rules[0].active[0]: expected a time range such as '22:00-06:00', got '25:00-06:00'",
        ),
        (
            {"rules": [{"name": "r", "any": ["x"], "days": ["someday"]}]},
            "rules[0].days[0]: expected a day such as 'mon', got 'someday'",
        ),
        (
            {"rules": [{"name": "r", "any": ["x"], "skip_if": ["!!"]}]},
            "rules[0].skip_if: a phrase needs at least one word, got '!!'",
        ),
        ({"timezone": "Mars/Olympus"}, "timezone: unknown time zone 'Mars/Olympus'"),
        (
            {"matching": {"negation": ["x"]}},
            "matching.negation: unknown key; did you mean 'negations'?",
        ),
    ],
)
def test_config_errors_of_the_rule_keys(
    tmp_path: Path, extra: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"cameras": [{"name": "c", "path": str(tmp_path)}], **extra})
    assert caught.value.problems == [problem]


# -- the labelled evaluation set ----------------------------------------------------------------


def load_eval_set() -> tuple[list[RuleConfig], list[dict[str, Any]]]:
    data = yaml.safe_load(EVAL_SET.read_text(encoding="utf-8"))
    return [RuleConfig.model_validate(r) for r in data["rules"]], data["cases"]


def test_eval_set_is_large_and_labelled_with_known_rules() -> None:
    rules, cases = load_eval_set()
    names = {r.name for r in rules}
    assert len(cases) >= 200
    assert len({c["text"] for c in cases}) == len(cases)
    for case in cases:
        assert set(case["expect"]) <= names, case


def test_eval_set_micro_f1_stays_at_least_095() -> None:
    rules, cases = load_eval_set()
    ruleset = RuleSet(rules)
    tp = fp = fn = 0
    for case in cases:
        got = {d.rule for d in ruleset.matching(case["text"], schedules=False)}
        expected = set(case["expect"])
        tp += len(got & expected)
        fp += len(got - expected)
        fn += len(expected - got)
    f1 = 2 * tp / (2 * tp + fp + fn)
    assert f1 >= 0.95, (tp, fp, fn)


def test_matching_agrees_with_evaluate_on_the_eval_set() -> None:
    rules, cases = load_eval_set()
    ruleset = RuleSet(rules)
    for case in cases:
        full = [d for d in ruleset.evaluate(case["text"], schedules=False) if d.matched]
        fast = ruleset.matching(case["text"], schedules=False)
        assert fast == full
