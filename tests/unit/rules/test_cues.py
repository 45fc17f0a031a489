"""Negation and hedge cues: their syntax, the default lists, each cue class, and user cues."""

from __future__ import annotations

import pytest

from camwatch.rules.cues import HEDGES, NEGATIONS, PSEUDO, CueSet, cue_lists, parse_cue

from .support import status

# -- cue syntax -----------------------------------------------------------------------------


def test_parse_cue_directions() -> None:
    assert parse_cue("no one", "negation").direction == "forward"
    backward = parse_cue("... is not visible", "negation")
    assert backward.direction == "backward"
    assert backward.words == ("is", "not", "visible")
    gap = parse_cue("could be ... or", "hedge")
    assert (gap.direction, gap.words, gap.needs) == ("forward", ("could", "be"), ("or",))


@pytest.mark.parametrize("text", ["...", "", "a ... b ... c", "no ...", "!!"])
def test_parse_cue_rejects_bad_syntax(text: str) -> None:
    with pytest.raises(ValueError, match="at most one"):
        parse_cue(text, "negation")


def test_default_cue_lists_are_documented_and_parse() -> None:
    lists = cue_lists()
    assert lists == {"negations": NEGATIONS, "hedges": HEDGES, "pseudo": PSEUDO}
    for cue in ("no one", "nobody", "none of", "without", "there is no sign of"):
        assert cue in NEGATIONS
    assert "does not appear to" in NEGATIONS
    for cue in (
        "it is unclear whether",
        "impossible to determine if",
        "may or may not",
        "can not tell if",
        "could be ... or",
    ):
        assert cue in HEDGES
    assert len(CueSet().cues) == len(NEGATIONS) + len(HEDGES) + len(PSEUDO)


# -- each cue class -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caption", "phrase", "cue"),
    [
        ("There is no smoke in the hallway.", "smoke", "no"),
        ("The man is not holding a gun.", "gun", "not"),
        ("No one is lying on the ground.", "lying on the ground", "no one"),
        ("Nobody has fallen.", "fallen", "nobody"),
        ("None of the people are lying on the ground.", "lying on the ground", "none of"),
        ("A man without a weapon waves.", "weapon", "without"),
        ("There is no sign of smoke.", "smoke", "there is no sign of"),
        ("There are no signs of a fire.", "fire", "there are no signs of"),
        ("The person does not appear to be unconscious.", "unconscious", "does not appear to"),
        ("The person doesn't appear to be unconscious.", "unconscious", "does not appear to"),
        ("Neither smoke nor flames can be seen.", "smoke", "neither"),
        ("Neither smoke nor flames can be seen.", "flames", "neither"),
        ("There is never anyone at the gate.", "anyone", "never"),
        ("Nothing is burning.", "burning", "nothing"),
        ("I don't see any smoke.", "smoke", "do not see"),
        ("The room is free of smoke.", "smoke", "free of"),
        ("It is a mannequin rather than a person.", "person", "rather than"),
        ("Smoke is not visible.", "smoke", "... not visible"),
        ("The gun is nowhere to be seen.", "gun", "... nowhere to be seen"),
        ("A gun cannot be seen.", "gun", "... can not be seen"),
        ("The car is no longer visible.", "car", "... no longer visible"),
        ("The cars are gone.", "cars", "... gone"),
    ],
)
def test_negation_cues(caption: str, phrase: str, cue: str) -> None:
    assert status(caption, phrase) == f"negated by {cue!r}"


@pytest.mark.parametrize(
    ("caption", "phrase", "cue"),
    [
        (
            "It is unclear whether the person is unconscious.",
            "unconscious",
            "it is unclear whether",
        ),
        ("It's unclear if smoke is present.", "smoke", "it is unclear if"),
        (
            "It's impossible to determine if they are injured, unconscious, or simply resting.",
            "unconscious",
            "impossible to determine if",
        ),
        (
            "It's impossible to determine if they are injured, unconscious, or simply resting.",
            "resting",
            "impossible to determine if",
        ),
        ("The person may or may not be unconscious.", "unconscious", "may or may not"),
        ("I cannot tell if the person is unconscious.", "unconscious", "can not tell if"),
        ("I can't tell if the person is unconscious.", "unconscious", "can not tell if"),
        ("It could be smoke or fog.", "smoke", "could be ... or"),
        ("It could be smoke or fog.", "fog", "could be ... or"),
        ("It is either a person or a statue.", "person", "either ... or"),
        ("The object might be a gun.", "gun", "might be"),
        ("There is possibly a fire in the bin.", "fire", "possibly"),
        ("It is hard to tell whether it is a knife.", "knife", "hard to tell whether"),
        ("Whether they are hurt is unclear.", "hurt", "whether"),
        ("The person's condition is unclear.", "condition", "... unclear"),
    ],
)
def test_hedge_cues(caption: str, phrase: str, cue: str) -> None:
    assert status(caption, phrase) == f"hedged by {cue!r}"


def test_could_be_needs_its_or() -> None:
    # "could be" alone is how a caption says what can be seen, not a hedge.
    assert status("A person could be seen lying on the ground.", "lying on the ground") is None


def test_pseudo_cues_do_not_negate() -> None:
    assert status("There is not only smoke but also fire.", "smoke") is None
    assert status("There is no doubt a person is lying on the ground.", "person") is None
    assert status("A car is parked not far from the gate.", "gate") is None


def test_longest_cue_is_named() -> None:
    assert status("There is no sign of smoke.", "smoke") == "negated by 'there is no sign of'"
    assert status("It is not clear if smoke is present.", "smoke") == "hedged by 'not clear if'"


def test_a_phrase_containing_the_cue_is_not_discarded_by_it() -> None:
    assert status("A person lying on the ground, not moving.", "not moving") is None


# -- user cues ------------------------------------------------------------------------------


def test_user_cues_extend_the_defaults() -> None:
    cues = CueSet(negations=["free from", "... has been removed"], hedges=["rumoured to"])
    assert status("The room is free from smoke.", "smoke", cues) == "negated by 'free from'"
    assert status("The car has been removed.", "car", cues) == ("negated by '... has been removed'")
    assert status("A fire is rumoured to be burning.", "burning", cues) == (
        "hedged by 'rumoured to'"
    )
    assert status("There is no smoke.", "smoke", cues) == "negated by 'no'"
    assert status("The room is free from smoke.", "smoke") is None


def test_user_cue_with_a_gap() -> None:
    cues = CueSet(hedges=["looks like ... or"])
    assert status("It looks like smoke or steam.", "smoke", cues) == "hedged by 'looks like ... or'"
    assert status("It looks like smoke.", "smoke", cues) is None
