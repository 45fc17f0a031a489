"""Words of a caption: lower case, word breaks, offsets, contractions, clause breaks."""

from __future__ import annotations

import pytest

from camwatch.rules.words import CLAUSE, COMMA, NONE, tokenize


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
