"""Phrase syntax: whole words and punctuation, word forms, spelt-out variants, syntax errors."""

from __future__ import annotations

import pytest

from camwatch.config import MatchingConfig
from camwatch.errors import ConfigError
from camwatch.rules import RuleSet
from camwatch.rules.phrases import expand_phrase, inflections, phrase_problem

from .support import decide, matches, rule

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
