"""Rules with `ask`: the prompt that asks them, and how an answer (or its absence) decides a rule,
with `all`, `none`, `cameras` and schedules still applied; the explanations of test-rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from camwatch.config import parse_config
from camwatch.prompts import prompts_for
from camwatch.rules import RuleSet, decision_json, explain

QUESTION = "Is a person lying on the ground?"

RULES: list[dict[str, Any]] = [
    {"name": "person-down", "ask": QUESTION, "any": ["lying on the ground", "collapsed"]},
    {"name": "ask-only", "ask": "Is there smoke?", "cameras": ["back"]},
    {"name": "guarded", "ask": "Is a car parked?", "all": ["driveway"], "none": ["toy"]},
    {"name": "night", "ask": "Is anyone at the door?", "active": ["22:00-06:00"]},
    {"name": "words", "any": ["package"]},
]


def config(rules: list[dict[str, Any]] | None = None) -> Any:
    return parse_config(
        {
            "cameras": [{"name": "front", "path": "/tmp"}, {"name": "back", "path": "/var"}],
            "rules": RULES if rules is None else rules,
        }
    )


def ruleset() -> RuleSet:
    c = config()
    return RuleSet(c.rules, c.matching, "UTC")


def decided(text: str, camera: str | None = "front", now: datetime | None = None) -> dict:
    rules = ruleset()
    answered = rules.read_answers(text, camera)
    decisions = rules.evaluate(
        answered.caption, camera, now or datetime(2026, 5, 1, 23, 0), answers=answered.answers
    )
    return {d.rule: d for d in decisions}


# -- the prompt ------------------------------------------------------------------------------


def test_the_prompt_asks_the_rules_that_apply_to_the_camera() -> None:
    c = config()
    front = prompts_for(c, c.cameras[0]).user_prompt
    back = prompts_for(c, c.cameras[1]).user_prompt
    assert front.startswith("What's happening in this picture?\n\nThen answer these questions")
    assert f'- "person-down": {QUESTION}' in front
    assert '"ask-only"' not in front and '"ask-only": Is there smoke?' in back
    assert '"night"' in front  # asked whatever the hour: a schedule decides, not the prompt
    assert front.endswith('{"answers": {"person-down": "...", "guarded": "...", "night": "..."}}')


def test_no_rule_with_ask_leaves_the_prompt_as_it_was() -> None:
    c = config([{"name": "words", "any": ["package"]}])
    assert prompts_for(c, c.cameras[0]).user_prompt == "What's happening in this picture?"


# -- decisions -------------------------------------------------------------------------------


def test_yes_matches_without_any_and_matched_is_the_question() -> None:
    d = decided('A man sits on a bench. {"answers": {"person-down": "yes"}}')["person-down"]
    assert d.matched
    assert d.phrases == [f"ask: {QUESTION}"]
    assert d.reason == "ask: answered 'yes'"


def test_no_and_unsure_do_not_match_even_when_the_keywords_would() -> None:
    for answer in ("no", "unsure"):
        text = f'A person lying on the ground. {{"answers": {{"person-down": "{answer}"}}}}'
        d = decided(text)["person-down"]
        assert not d.matched
        assert d.reason == f"ask: answered {answer!r}"
        assert [m.phrase for m in d.mentions] == ["lying on the ground"]  # still explained


def test_a_missing_answer_falls_back_to_the_keywords() -> None:
    found = decided("A person lying on the ground, not moving.")
    assert found["person-down"].matched
    assert found["person-down"].phrases == ["lying on the ground"]
    assert found["person-down"].reason == "ask: no answer; keywords: any: 'lying on the ground'"
    assert not decided("A person sitting on a bench.")["person-down"].matched


def test_a_missing_answer_for_a_rule_without_keywords_does_not_match() -> None:
    d = decided("Smoke everywhere.", camera="back")["ask-only"]
    assert not d.matched
    assert d.reason == "ask: no answer, and no any, all or regex to fall back on"


def test_all_and_none_still_apply_to_a_yes() -> None:
    yes = '{"answers": {"guarded": "yes"}}'
    assert decided(f"A car on the driveway. {yes}")["guarded"].matched
    d = decided(f"A car on the street. {yes}")["guarded"]
    assert not d.matched and d.reason == "ask: answered 'yes', but all: 'driveway' not present"
    d = decided(f"A toy car on the driveway. {yes}")["guarded"]
    assert not d.matched and d.reason == "ask: answered 'yes', but none: 'toy' present"


def test_cameras_and_schedules_still_apply() -> None:
    smoke = 'Smoke. {"answers": {"ask-only": "yes", "night": "yes"}}'
    assert not decided(smoke, camera="front")["ask-only"].matched  # not asked on front
    assert decided(smoke, camera="back")["ask-only"].matched
    noon = datetime(2026, 5, 1, 12, 0)
    assert decided(smoke, camera="back", now=noon)["night"].reason.startswith("outside schedule")
    assert decided(smoke, camera="back")["night"].matched


def test_matching_finds_a_yes_without_any_phrase_counting() -> None:
    rules = ruleset()
    answered = rules.read_answers('A bench. {"answers": {"person-down": "yes"}}', "front")
    matched = rules.matching(answered.caption, "front", answers=answered.answers)
    assert [(d.rule, d.phrases) for d in matched] == [("person-down", [f"ask: {QUESTION}"])]
    assert rules.matching(answered.caption, "front") == []  # no answers: keywords only


def test_test_rules_explains_ask_decisions() -> None:
    rules = ruleset()
    text = 'A person lying on the ground. {"answers": {"person-down": "no"}}'
    answered = rules.read_answers(text, None)
    decisions = rules.evaluate(answered.caption, None, schedules=False, answers=answered.answers)
    shown = explain(decisions, answered.caption, answered)
    assert shown.splitlines()[0] == "caption: A person lying on the ground."
    assert "answers: person-down=no; no answer for: ask-only, guarded, night" in shown
    assert "person-down: no match (ask: answered 'no')" in shown
    as_json = decision_json(answered.caption, decisions, answered)
    assert as_json["caption"] == "A person lying on the ground."
    assert as_json["answers"] == {"person-down": "no"}
    assert as_json["unanswered"] == ["ask-only", "guarded", "night"]
    assert as_json["matched"] == []
