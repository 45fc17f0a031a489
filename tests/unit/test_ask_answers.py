"""Reading the model's answers to the rules' `ask` questions (rules/answers.py): every way a model
writes them, the caption left without them, and bounded work on hostile text."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camwatch.rules.answers import WINDOW, ask_paragraph, read_answers

NAMES = ["person-down", "package"]


@pytest.mark.parametrize(
    ("text", "caption", "answers"),
    [
        # clean JSON at the end
        (
            'A man lies on the sidewalk. {"answers": {"person-down": "yes", "package": "no"}}',
            "A man lies on the sidewalk.",
            {"person-down": "yes", "package": "no"},
        ),
        # on a line of its own
        (
            'A man lies on the sidewalk.\n{"answers": {"person-down": "no", "package": "unsure"}}'
            "\n",
            "A man lies on the sidewalk.",
            {"person-down": "no", "package": "unsure"},
        ),
        # fenced
        (
            'A parcel by the door.\n\n```json\n{"answers": {"person-down": "no", "package": "yes"}}'
            "\n```",
            "A parcel by the door.",
            {"person-down": "no", "package": "yes"},
        ),
        # fenced, no language, with a label line
        (
            'A parcel.\n\n**Answers:**\n```\n{"answers": {"person-down": "no", "package": "yes"}}'
            "\n```",
            "A parcel.",
            {"person-down": "no", "package": "yes"},
        ),
        # prose around it
        (
            'A man lies down. My answers: {"answers": {"person-down": "yes"}} I hope this helps.',
            "A man lies down. My answers: I hope this helps.",
            {"person-down": "yes"},
        ),
        # keys in other cases and separators, values in other cases
        (
            'Porch. {"ANSWERS": {"Person-Down": "YES.", "PACKAGE": "No"}}',
            "Porch.",
            {"person-down": "yes", "package": "no"},
        ),
        (
            'Porch. {"answers": {"person_down": true, "Package ": false}}',
            "Porch.",
            {"person-down": "yes", "package": "no"},
        ),
        # single quotes and trailing commas, and a bare word
        (
            "Porch. {'answers': {'person-down': 'yes', 'package': no,},}",
            "Porch.",
            {"person-down": "yes", "package": "no"},
        ),
        # no wrapper, the rules' names as keys
        ('Porch. {"person-down": "unsure"}', "Porch.", {"person-down": "unsure"}),
        # an answer with a reason after it
        (
            'Porch. {"answers": {"person-down": "yes, the man is on the ground"}}',
            "Porch.",
            {"person-down": "yes"},
        ),
        # braces in the prose before it do not confuse it
        (
            'A sign reads {it\'s open} and {closed. {"answers": {"package": "yes"}}',
            "A sign reads {it's open} and {closed.",
            {"package": "yes"},
        ),
        # the last object wins
        (
            'Porch. {"answers": {"package": "no"}} Wait. {"answers": {"package": "yes"}}',
            'Porch. {"answers": {"package": "no"}} Wait.',
            {"package": "yes"},
        ),
    ],
)
def test_answers_are_read_and_taken_off_the_caption(text, caption, answers) -> None:
    found = read_answers(text, NAMES)
    assert found.found
    assert found.caption == caption
    assert found.answers == answers
    assert found.unanswered == tuple(n for n in NAMES if n not in answers)


@pytest.mark.parametrize(
    "text",
    [
        "A quiet porch with nothing unusual.",
        'A porch. {"answers": {"person-down": "ye',  # cut off by max_tokens
        'A porch. {"answers": ["yes", "no"]}',  # not a mapping
        'A porch. {"answers": "yes"}',
        'A porch. {"verdict": {"person-down": "yes"}}',  # another object, not ours
        "A porch. {answers: {person-down: yes}}",  # not readable as JSON
        "",
    ],
)
def test_a_missing_or_broken_object_leaves_the_caption_and_answers_nothing(text) -> None:
    found = read_answers(text, NAMES)
    assert not found.answers
    assert found.unanswered == tuple(NAMES)
    assert found.caption == text
    assert not found.found


def test_an_answer_that_is_no_answer_counts_as_missing() -> None:
    found = read_answers(
        'Porch. {"answers": {"person-down": "perhaps later", "package": 3}}', NAMES
    )
    assert found.found and found.caption == "Porch."
    assert found.answers == {}
    assert found.unanswered == ("person-down", "package")


def test_without_questions_nothing_is_read() -> None:
    text = 'A sign: {"answers": {"person-down": "yes"}}'
    found = read_answers(text, [])
    assert (found.caption, found.answers, found.unanswered) == (text, {}, ())


def test_the_paragraph_asks_each_question_and_shows_the_object() -> None:
    text = ask_paragraph([("person-down", "Is a person lying on the ground?"), ('a "q"', "Why?")])
    assert '- "person-down": Is a person lying on the ground?' in text
    assert '- "a \\"q\\"": Why?' in text
    assert text.endswith('{"answers": {"person-down": "...", "a \\"q\\"": "..."}}')
    assert '"yes", "no" or "unsure"' in text
    assert ask_paragraph([]) == ""
    # What the paragraph shows, filled in, is read back.
    filled = text.rsplit("\n", 1)[1].replace('"..."', '"yes"')
    assert read_answers("Porch.\n" + filled, ["person-down", 'a "q"']).answers == {
        "person-down": "yes",
        'a "q"': "yes",
    }


# -- hostile text: never raises, bounded time ---------------------------------------------------


_PIECES = st.sampled_from(
    ["{", "}", "[", "]", '"', "'", ",", ":", "\\", "\n", " ", "answers", "person-down", "yes",
     "```", "```json", "true", "{\"answers\": {", "'answers'", "package", "no", "x"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=80))
def test_any_text_never_raises_and_keeps_the_caption_or_less(pieces) -> None:
    text = "".join(pieces)
    found = read_answers(text, NAMES)
    assert set(found.answers) <= set(NAMES)
    assert set(found.answers.values()) <= {"yes", "no", "unsure"}
    assert set(found.answers).isdisjoint(found.unanswered)
    assert len(found.caption) <= len(text)
    if not found.found:
        assert found.caption == text


@pytest.mark.parametrize(
    "hostile",
    [
        "{" * 200_000,
        '{"a":' * 100_000,
        "'" * 200_000,
        '{"x": "' + 'a\\"' * 100_000,
        "]}," * 100_000,
        '{"answers": {' + '"k": "yes", ' * 50_000 + "}}",
        ("{" * 5_000 + "}" * 5_000) * 20,
        "[" * 7_000 + "]" * 7_000,
    ],
)
def test_hostile_text_is_read_in_bounded_time(hostile) -> None:
    started = time.perf_counter()
    found = read_answers(hostile + ' {"answers": {"package": "yes"}}', NAMES)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, elapsed  # a pass over WINDOW characters and a few json.loads
    assert found.answers in ({"package": "yes"}, {})


def test_only_the_end_of_a_long_caption_is_searched() -> None:
    early = '{"answers": {"package": "yes"}} ' + "word " * (WINDOW // 4)
    assert not read_answers(early, NAMES).found
