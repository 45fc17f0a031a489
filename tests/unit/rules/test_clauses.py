"""Where a cue's scope ends: clause ends, contrast words, commas, "and", places, subjects."""

from __future__ import annotations

import pytest

from .support import status


def test_spec_examples() -> None:
    caption = "No smoke is visible, but a person is lying on the ground"
    assert status(caption, "smoke") == "negated by 'no'"
    assert status(caption, "lying on the ground") is None
    assert status("no one is lying on the ground", "lying on the ground") is not None
    assert status("nobody has fallen", "fallen") is not None
    assert status("there is no smoke", "smoke") is not None
    assert status("it is impossible to determine if they are unconscious", "unconscious")
    assert status("without a weapon", "weapon") is not None
    assert status("a person lying on the ground, not moving", "lying on the ground") is None


def test_the_documented_api_example() -> None:
    caption = (
        "It shows a person lying on the ground. The person appears to be wearing dark "
        "clothing... It's impossible to determine if they are injured, unconscious, or simply "
        "resting."
    )
    assert status(caption, "lying on the ground") is None
    assert status(caption, "unconscious") == "hedged by 'impossible to determine if'"


@pytest.mark.parametrize("end", [".", ";", ":", "!", "?", " (", " —", " - ", "\n"])
def test_scope_ends_at_clause_punctuation(end: str) -> None:
    caption = f"There is no smoke{end} a person is lying on the ground"
    assert status(caption, "smoke") is not None
    assert status(caption, "lying on the ground") is None


@pytest.mark.parametrize("word", ["but", "however", "although", "though", "yet", "while"])
def test_scope_ends_at_contrast_words(word: str) -> None:
    caption = f"There is no smoke {word} a person lying on the ground is visible"
    assert status(caption, "smoke") is not None
    assert status(caption, "lying on the ground") is None


def test_a_comma_ends_the_scope_before_a_new_clause() -> None:
    caption = "No one is on the porch, a package sits by the door"
    assert status(caption, "package") is None
    assert status("No one is here, which is unusual for a package day", "package") is None


def test_a_comma_in_a_list_keeps_the_scope() -> None:
    assert status("There are no signs of fire, smoke, or flames.", "smoke") is not None
    assert status("There are no signs of fire, smoke, or flames.", "flames") is not None
    assert status("No people, vehicles or packages are visible.", "packages") is not None


def test_and_before_a_new_clause_ends_the_scope_but_or_does_not() -> None:
    caption = "There is no smoke and a person is lying on the ground."
    assert status(caption, "lying on the ground") is None
    assert status("There is no smoke or fire visible.", "fire") is not None
    assert status("There is no smoke and fire visible.", "fire") is not None


def test_a_negation_stops_before_a_place_a_hedge_does_not() -> None:
    assert status("No one is in the car.", "car") is None
    assert status("There is no person near the fire.", "fire") is None
    assert status("No one is lying on the ground.", "lying on the ground") is not None
    hedged = "It's unclear whether the person near the car has collapsed."
    assert status(hedged, "collapsed") is not None
    assert status(hedged, "car") is not None


def test_in_the_image_is_not_a_place() -> None:
    caption = "None of the people in the image are lying on the ground."
    assert status(caption, "lying on the ground") == "negated by 'none of'"


def test_backward_scope_takes_the_subject_only() -> None:
    caption = "A person is lying on the ground and smoke is not visible."
    assert status(caption, "smoke") == "negated by '... not visible'"
    assert status(caption, "lying on the ground") is None
    assert status("Smoke and fire are not visible.", "smoke") is not None
    assert status("Smoke and fire are not visible.", "fire") is not None
    # The head of the noun phrase is what is not visible.
    assert status("The face of the man is not visible.", "man") is None
    assert status("The face of the man is not visible.", "face") is not None
    assert status("The person's car is not visible.", "person") is None
    assert status("A man whose car is not visible is lying on the ground.", "man") is None


def test_backward_scope_skips_a_relative_clause() -> None:
    caption = "The package that was on the porch earlier is no longer visible."
    assert status(caption, "package") == "negated by '... no longer visible'"
    assert status(caption, "porch") is None


def test_scopes_stay_in_their_sentence() -> None:
    caption = "There is no fire. Smoke is rising from the roof."
    assert status(caption, "fire") is not None
    assert status(caption, "smoke") is None
    assert status("Is there smoke? No.", "smoke") is None
