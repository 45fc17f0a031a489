"""Rules: phrase syntax, conditions, camera filters, schedules, explanations, and the labelled
evaluation set."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from camwatch.config import MatchingConfig, RuleConfig, parse_config
from camwatch.errors import ConfigError
from camwatch.rules import (
    Mention,
    RuleDecision,
    RuleSet,
    decision_json,
    expand_phrase,
    explain,
    in_schedule,
    inflections,
    phrase_problem,
)

API_EXAMPLE = (
    "It shows a person lying on the ground. The person appears to be wearing dark clothing... "
    "It's impossible to determine if they are injured, unconscious, or simply resting."
)
EVAL_SET = Path(__file__).resolve().parent.parent / "data" / "rules_eval.yaml"


def rule(**fields: Any) -> RuleConfig:
    """Return a real RuleConfig, named "r" unless told otherwise."""
    fields.setdefault("name", "r")
    return RuleConfig(**fields)


def decide(caption: str, *rules: RuleConfig, **kwargs: Any) -> RuleDecision:
    """Return the decision of the first rule on the caption, schedules off unless told."""
    kwargs.setdefault("schedules", False)
    return RuleSet(list(rules)).evaluate(caption, **kwargs)[0]


def matches(caption: str, *phrases: str) -> bool:
    """Return whether a rule with these `any` phrases matches the caption."""
    return decide(caption, rule(any=list(phrases))).matched


# -- whole words and phrases ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caption", "phrase", "expected"),
    [
        ("A man may fall from the ladder.", "fall", True),
        ("A waterfall in the garden.", "fall", False),
        ("A fire in the fireplace.", "fire", True),
        ("A cozy fireplace.", "fire", False),
        ("A gunmetal grey sedan.", "gun", False),
        ("He holds a gun.", "gun", True),
        ("A thick carpet.", "car", False),
        ("A smoke-filled hallway.", "smoke", True),
        ("A smoke-filled hallway.", "smoke filled", True),
        ("A smoke filled hallway.", "smoke-filled", True),
        ("Someone is LYING   on the\nground.", "lying on the ground", True),
        ("lying on the grounds of the estate", "lying on the ground", False),
        ("The person's bag.", "person", True),
        ("A self-driving car.", "self driving car", True),
        ("Fire!", "FIRE", True),
    ],
)
def test_whole_words_and_punctuation(caption: str, phrase: str, expected: bool) -> None:
    assert matches(caption, phrase) is expected


def test_mention_offsets_point_into_the_original_caption() -> None:
    caption = "A  Smoke-Filled hallway"
    decision = decide(caption, rule(any=["smoke filled"]))
    (mention,) = decision.mentions
    assert caption[mention.start : mention.end] == "Smoke-Filled"


# -- word forms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phrase", "caption", "expected"),
    [
        ("lie* on the ground", "he lies on the ground", True),
        ("lie* on the ground", "he lied on the ground", True),
        ("lie* on the ground", "he is lying on the ground", False),
        ("lie+ on the ground", "he is lying on the ground", True),
        ("lie+ on the ground", "he lies on the ground", True),
        ("lie+ on the ground", "he lay on the ground", False),
        ("fall+", "she has fallen", True),
        ("fall+", "she is falling", True),
        ("fall+", "a waterfall", False),
        ("{lying|lay} on the {ground|floor}", "she lay on the floor", True),
        ("{lying|lay} on the {ground|floor}", "she lay on the bed", False),
        ("{lying face down|sprawled}", "he is sprawled on the path", True),
        ("{lying face down|sprawled}", "he is lying face down", True),
        ("{a|the|} car", "car", True),
        ("{a|the|} car", "the car", True),
        ("red {big|} car", "red car", True),
        ("red {big|} car", "red big car", True),
        ("lying on the {ground|}", "lying on the", True),
        ("doesn't", "it does not", True),
        ("cannot", "it can't", True),
    ],
)
def test_word_forms(phrase: str, caption: str, expected: bool) -> None:
    assert matches(caption, phrase) is expected


@pytest.mark.parametrize(
    ("word", "forms"),
    [
        ("lie", {"lie", "lies", "lied", "lying"}),
        ("move", {"move", "moves", "moved", "moving"}),
        ("carry", {"carry", "carries", "carried", "carrying"}),
        ("stop", {"stop", "stops", "stopped", "stopping"}),
        ("fall", {"fall", "falls", "falling", "fallen"}),
        ("box", {"box", "boxes", "boxed", "boxing"}),
        ("see", {"see", "sees", "seeing", "seen"}),
    ],
)
def test_inflections(word: str, forms: set[str]) -> None:
    assert forms <= set(inflections(word))


def test_expand_phrase_spells_out_variants() -> None:
    assert expand_phrase("{lying|lies} on the {ground|floor}") == [
        "lying on the ground",
        "lying on the floor",
        "lies on the ground",
        "lies on the floor",
    ]
    assert expand_phrase("lie* down") == ["lie down"]
    assert "lying" in expand_phrase("lie+")
    assert expand_phrase("{the|} car") == ["car", "the car"]


@pytest.mark.parametrize(
    ("phrase", "problem"),
    [
        ("{lying|lies on the ground", "'{' without its '}'"),
        ("lying}", "'}' outside braces"),
        ("a|b", "'|' outside braces"),
        ("{a {b|c}}", "braces cannot be nested"),
        ("{|} car", "needs at least one alternative"),
        ("{parcel|package}*", "'*' and '+' go at the end of a word"),
        ("{|a}", "at least one word that is not optional"),
        ("li*e", "'*' and '+' go at the end of a word"),
    ],
)
def test_phrase_syntax_errors(phrase: str, problem: str) -> None:
    assert problem in (phrase_problem(phrase) or "")
    with pytest.raises(ConfigError) as caught:
        RuleSet([rule(any=["ok", phrase])])
    assert caught.value.problems[0].startswith("rules[0].any[1]: ")


def test_every_bad_phrase_and_cue_is_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        RuleSet(
            [rule(any=["fine"]), rule(name="s", any=["x"], none=["{a"], skip_if=["b}"])],
            MatchingConfig(negations=["a ... b ... c"], hedges=["..."]),
        )
    paths = [p.split(":")[0] for p in caught.value.problems]
    assert paths == [
        "matching.negations[0]",
        "matching.hedges[0]",
        "rules[1].none[0]",
        "rules[1].skip_if[0]",
    ]


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
        ({"matching": {"negation": ["x"]}}, "matching.negation: unknown key (misspelt?)"),
    ],
)
def test_config_errors_of_the_rule_keys(
    tmp_path: Path, extra: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"cameras": [{"name": "c", "path": str(tmp_path)}], **extra})
    assert caught.value.problems == [problem]


# -- schedules -------------------------------------------------------------------------------

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def night_rule(**fields: Any) -> RuleSet:
    """Return a RuleSet with one rule on "car", active as given, in Berlin time."""
    fields.setdefault("active", ["22:00-06:00"])
    timezone = fields.pop("timezone", BERLIN)
    return RuleSet([rule(any=["car"], **fields)], timezone=timezone)


def at(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone))  # type: ignore[misc]


@pytest.mark.parametrize(
    ("hour", "minute", "active"),
    [(21, 59, False), (22, 0, True), (23, 59, True), (0, 0, True), (5, 59, True), (6, 0, False)],
)
def test_a_range_across_midnight(hour: int, minute: int, active: bool) -> None:
    ruleset = night_rule()
    now = at(BERLIN, 2026, 11, 23, hour, minute)
    assert bool(ruleset.matching("A car.", now=now)) is active


def test_outside_schedule_reason() -> None:
    decision = night_rule(days=["mon", "tue"]).evaluate("A car.", now=at(BERLIN, 2026, 11, 23, 12))
    assert decision[0].reason == "outside schedule (active 22:00-06:00; days mon, tue)"


def test_days_and_the_night_after_them() -> None:
    # 2026-11-27 is a Friday. The night from Friday 22:00 belongs to Friday.
    ruleset = night_rule(days=["fri"])
    assert ruleset.matching("A car.", now=at(BERLIN, 2026, 11, 27, 23))
    assert ruleset.matching("A car.", now=at(BERLIN, 2026, 11, 28, 2))
    assert not ruleset.matching("A car.", now=at(BERLIN, 2026, 11, 27, 2))
    assert not ruleset.matching("A car.", now=at(BERLIN, 2026, 11, 28, 23))


def test_days_without_ranges() -> None:
    ruleset = night_rule(active=[], days=["sat", "sun"])
    assert ruleset.matching("A car.", now=at(BERLIN, 2026, 11, 28, 12))
    assert not ruleset.matching("A car.", now=at(BERLIN, 2026, 11, 27, 12))


def test_several_ranges_and_whole_days() -> None:
    assert in_schedule([(480, 600), (1020, 1140)], [], datetime(2026, 1, 1, 17, 30))
    assert not in_schedule([(480, 600), (1020, 1140)], [], datetime(2026, 1, 1, 12, 0))
    assert in_schedule([(0, 1440)], ["thu"], datetime(2026, 1, 1, 23, 59))
    # start == end: a whole day from that time, belonging to the day it starts.
    assert in_schedule([(360, 360)], ["thu"], datetime(2026, 1, 2, 5, 59))
    assert not in_schedule([(360, 360)], ["thu"], datetime(2026, 1, 2, 6, 0))


@pytest.mark.parametrize(
    ("zone", "utc", "active"),
    [
        # Berlin springs forward on 2026-03-29 at 01:00 UTC (02:00 CET -> 03:00 CEST).
        (BERLIN, datetime(2026, 3, 29, 0, 30, tzinfo=UTC), True),  # 01:30 CET
        (BERLIN, datetime(2026, 3, 29, 1, 30, tzinfo=UTC), False),  # 03:30 CEST, not 02:30
        # Berlin falls back on 2026-10-25 at 01:00 UTC (03:00 CEST -> 02:00 CET).
        (BERLIN, datetime(2026, 10, 25, 0, 30, tzinfo=UTC), True),  # 02:30 CEST
        (BERLIN, datetime(2026, 10, 25, 1, 30, tzinfo=UTC), True),  # 02:30 CET, again
        (BERLIN, datetime(2026, 10, 25, 2, 30, tzinfo=UTC), False),  # 03:30 CET
        # New York springs forward on 2026-03-08 at 07:00 UTC and falls back on 2026-11-01.
        (NEW_YORK, datetime(2026, 3, 8, 6, 30, tzinfo=UTC), True),  # 01:30 EST
        (NEW_YORK, datetime(2026, 3, 8, 7, 30, tzinfo=UTC), False),  # 03:30 EDT
        (NEW_YORK, datetime(2026, 11, 1, 5, 30, tzinfo=UTC), True),  # 01:30 EDT
        (NEW_YORK, datetime(2026, 11, 1, 6, 30, tzinfo=UTC), True),  # 01:30 EST, again
        (NEW_YORK, datetime(2026, 11, 1, 7, 30, tzinfo=UTC), True),  # 02:30 EST
        (NEW_YORK, datetime(2026, 11, 1, 8, 30, tzinfo=UTC), False),  # 03:30 EST
    ],
)
def test_schedules_across_dst(zone: str, utc: datetime, active: bool) -> None:
    ruleset = night_rule(active=["22:00-03:00"], timezone=zone)
    assert bool(ruleset.matching("A car.", now=utc)) is active


def test_a_whole_night_across_dst_is_covered_by_wall_clock() -> None:
    # Every minute of the Berlin fall-back night, 22:00 to 06:00 wall clock, is in force.
    ruleset = night_rule()
    start = datetime(2026, 10, 24, 20, 0, tzinfo=UTC)  # 22:00 CEST
    minutes = [start + timedelta(minutes=m) for m in range(0, 9 * 60, 7)]
    # 9 h of UTC: 8 h of wall clock plus the repeated hour.
    assert all(ruleset.matching("A car.", now=m) for m in minutes)
    assert not ruleset.matching("A car.", now=datetime(2026, 10, 25, 5, 0, tzinfo=UTC))


def test_naive_now_is_wall_clock_time_in_the_zone() -> None:
    ruleset = night_rule(timezone=NEW_YORK)
    assert ruleset.matching("A car.", now=datetime(2026, 7, 1, 23, 0))
    assert not ruleset.matching("A car.", now=datetime(2026, 7, 1, 12, 0))


def test_no_timezone_means_the_system_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        ruleset = night_rule(timezone=None)
        assert ruleset.zone is None
        assert ruleset.matching("A car.", now=datetime(2026, 7, 1, 14, 0, tzinfo=UTC))  # 23:00
        assert not ruleset.matching("A car.", now=datetime(2026, 7, 1, 3, 0, tzinfo=UTC))
    finally:
        monkeypatch.undo()
        time.tzset()


def test_now_defaults_to_the_current_time_and_schedules_can_be_off() -> None:
    always = night_rule(active=["00:00-24:00"])
    assert always.matching("A car.")
    never = night_rule(active=[], days=[])
    assert never.matching("A car.")
    nightly = night_rule()
    noon = at(BERLIN, 2026, 11, 23, 12)
    assert nightly.matching("A car.", now=noon, schedules=False)


# -- explanations and JSON ---------------------------------------------------------------------


def test_explain_names_phrases_snippets_and_cues() -> None:
    ruleset = RuleSet(
        [
            rule(name="person-down", any=["lying on the ground", "unconscious"]),
            rule(name="fire", any=["smoke"]),
        ]
    )
    decisions = ruleset.evaluate(API_EXAMPLE, schedules=False)
    text = explain(decisions, API_EXAMPLE)
    lines = text.splitlines()
    assert lines[0] == f"caption: {API_EXAMPLE}"
    assert lines[1] == "person-down: MATCH (any: 'lying on the ground')"
    assert lines[2] == (
        "  any 'lying on the ground' at 18-37 counted: "
        "It shows a person [lying on the ground]. The person appears to be..."
    )
    assert lines[3].startswith("  any 'unconscious' at 139-150 discarded, hedged by ")
    assert "'impossible to determine if': ...if they are injured, [unconscious], or" in lines[3]
    assert lines[4] == "fire: no match (no phrase of any present)"
    assert len(lines) == 5


def test_explain_names_camera_and_schedule_reasons() -> None:
    ruleset = RuleSet(
        [rule(name="front", any=["car"], cameras=["front"]), rule(name="night", any=["car"])]
    )
    text = explain(ruleset.evaluate("A\ncar.", "garden", schedules=False), "A\ncar.")
    assert text.splitlines() == [
        "caption: A car.",
        "front: no match (camera 'garden' not in cameras)",
        "night: MATCH (any: 'car')",
        "  any 'car' at 2-5 counted: A [car].",
    ]


def test_decision_json_shape() -> None:
    ruleset = RuleSet(
        [
            rule(name="person-down", any=["lying on the ground", "unconscious"]),
            rule(name="fire", any=["smoke"]),
        ]
    )
    caption = "No smoke is visible, but a person is lying on the ground"
    data = decision_json(caption, ruleset.evaluate(caption, schedules=False))
    assert data["caption"] == caption
    assert data["matched"] == [{"rule": "person-down", "phrases": ["lying on the ground"]}]
    assert data["discarded"] == [
        {
            "rule": "fire",
            "condition": "any",
            "phrase": "smoke",
            "start": 3,
            "end": 8,
            "why": "negated by 'no'",
        }
    ]


def test_matching_carries_mentions_of_the_matches() -> None:
    ruleset = RuleSet([rule(any=["lying on the ground", "unconscious"])])
    (decision,) = ruleset.matching(API_EXAMPLE, schedules=False)
    assert [m.phrase for m in decision.mentions] == ["lying on the ground", "unconscious"]


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
