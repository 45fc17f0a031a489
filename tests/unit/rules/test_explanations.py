"""Explanations: `explain`'s lines and `decision_json`'s shape, and the mentions they use."""

from __future__ import annotations

from camwatch.rules import RuleSet
from camwatch.rules.explanations import decision_json, explain

from .support import API_EXAMPLE, rule


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
