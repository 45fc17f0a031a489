"""Helpers shared by the rules tests: a real caption from the caption API's documentation, real
rule configs, and the status of one mention under the default cues."""

from __future__ import annotations

from typing import Any

from camwatch.config import RuleConfig
from camwatch.rules import CueSet, RuleDecision, RuleSet, tokenize

API_EXAMPLE = (
    "It shows a person lying on the ground. The person appears to be wearing dark clothing... "
    "It's impossible to determine if they are injured, unconscious, or simply resting."
)


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


CUES = CueSet()


def status(caption: str, phrase: str, cues: CueSet = CUES) -> str | None:
    """Return why the first mention of `phrase` in `caption` is discarded, or None if it counts.

    The phrase is located by its normalised words, as the rule matcher does."""
    words = tokenize(caption)
    target = tokenize(phrase).texts
    for i in range(len(words.texts) - len(target) + 1):
        if words.texts[i : i + len(target)] == target:
            return cues.scopes(words).discarded(i, i + len(target) - 1)
    raise AssertionError(f"{phrase!r} not in {caption!r}")
