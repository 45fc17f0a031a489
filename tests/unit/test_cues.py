"""Negation and hedge cues: the words of a caption, each cue class, and where a scope ends."""

from __future__ import annotations

import pytest

from camwatch.cues import (
    CLAUSE,
    COMMA,
    HEDGES,
    NEGATIONS,
    NONE,
    PSEUDO,
    CueSet,
    cue_lists,
    parse_cue,
    tokenize,
)

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


# -- words ---------------------------------------------------------------------------------


def test_tokenize_lowercases_and_breaks_on_punctuation_and_hyphens() -> None:
    words = tokenize("A Smoke-filled  HALL,\tnear the car/van.")
    assert words.texts == ("a", "smoke", "filled", "hall", "near", "the", "car", "van")
    assert words.norm == "a smoke filled hall near the car van"


def test_tokenize_keeps_offsets_into_the_original_caption() -> None:
    caption = "It's a man—he can't; cannot İstanbul, doesn't."
    words = tokenize(caption)
    spans = [caption[s:e] for s, e in zip(words.starts, words.ends, strict=True)]
    assert spans == [
        "It",
        "s",
        "a",
        "man",
        "he",
        "can",
        "t",
        "can",
        "not",
        "İstanbul",
        "doesn",
        "t",
    ]
    assert words.texts[:3] == ("it", "is", "a")
    for i, start in enumerate(words.norm_starts):
        assert words.norm[start:].startswith(words.texts[i])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("doesn't", ("does", "not")),
        ("doesn\u2019t", ("does", "not")),
        ("can't", ("can", "not")),
        ("cannot", ("can", "not")),
        ("won't", ("will", "not")),
        ("isn't", ("is", "not")),
        ("it's", ("it", "is")),
        ("there's", ("there", "is")),
        ("they're", ("they", "are")),
        ("the person's bag", ("the", "person", "s", "bag")),
    ],
)
def test_tokenize_spells_out_contractions(text: str, expected: tuple[str, ...]) -> None:
    assert tokenize(text).texts == expected


def test_tokenize_marks_clause_ends_and_commas() -> None:
    words = tokenize("one, two. three; four - five six")
    assert words.breaks == (CLAUSE, COMMA, CLAUSE, CLAUSE, CLAUSE, NONE)


def test_tokenize_stray_apostrophes() -> None:
    assert tokenize("n't 's rock'n'roll").texts == ("n", "t", "s", "rock", "n", "roll")


def test_tokenize_empty_caption() -> None:
    words = tokenize("  ...  ")
    assert words.texts == () and words.norm == "" and words.norm_starts == ()


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


# -- where a scope ends -----------------------------------------------------------------------


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
