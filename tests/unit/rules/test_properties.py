"""Properties of the matcher on any text: it never raises, stays fast on large hostile captions,
ignores what lies past `MAX_CAPTION_CHARS`, and its mentions are where it says they are.

A caption transcribes whatever text a camera sees, so whoever stands in front of the camera
chooses much of it; and the pipeline marks an image failed if matching raises. No timed
assertions: the hostile captions are large (200 kB and more) and the whole file runs in a few
seconds, which a matcher quadratic in the caption could not do.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camwatch.config import MatchingConfig, RuleConfig
from camwatch.rules import MAX_CAPTION_CHARS, RuleDecision, RuleSet

EVAL_SET = Path(__file__).resolve().parents[2] / "data" / "rules_eval.yaml"

# The labelled set's rules (written as an operator would), and rules that use every kind of
# phrase operator, condition and regex.
_data = yaml.safe_load(EVAL_SET.read_text(encoding="utf-8"))
RULES = RuleSet(
    [
        *(RuleConfig.model_validate(r) for r in _data["rules"]),
        RuleConfig(
            name="operators",
            any=["lie+ on the {ground|floor}", "fall*", "{a|the|} person", "can not see"],
            all=["{night|dark}"],
            none=["poster"],
            skip_if=["too dark to tell"],
        ),
        RuleConfig(name="gun", regex=r"\b(?:gun|knife|rifle)s?\b"),
        RuleConfig(name="plate", any=["car", "van"], regex=r"[a-z]{2}\d{3}"),
        RuleConfig(name="everything", regex=r"\w+"),
    ],
    MatchingConfig.model_validate(_data.get("matching") or {}),
)

# Pieces of hostile captions: cues of every kind, contractions, commas and clause ends, the
# words the rules look for, a word that grows into a long one.
PIECES = [
    "no ",
    "not ",
    "no one ",
    "nobody is ",
    "without ",
    "neither ",
    "nor ",
    "is not visible ",
    "can not be seen ",
    "is is is ",
    "either ",
    "could be ",
    " or ",
    "may be ",
    "it is unclear whether ",
    "impossible to determine if ",
    "not only ",
    "cannot ",
    "can't ",
    "it's ",
    "doesn\u2019t ",
    ", ",
    ",",
    "; ",
    ". ",
    " and ",
    " but ",
    " which ",
    "is ",
    "in the image ",
    "in the car ",
    "on the porch ",
    "the face of the person ",
    "a person lying on the ground ",
    "lie",
    "fallen ",
    "smoke ",
    "fire",
    "candle ",
    "gun ",
    "AB123 ",
    "a",
    "!",
    "\n",
    "\u2014",
    "\u0130",  # "İ": lower case is two characters
    "\ufb01",  # "ﬁ": a ligature
    "\ud800",  # a lone surrogate, as JSON can decode
    "\x00",
]

FAST = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check(decisions: list[RuleDecision], caption: str, every: bool) -> None:
    """Given the decisions on a caption, check what holds for any caption."""
    if every:
        assert [d.rule for d in decisions] == [r.config.name for r in RULES.rules]
    for decision in decisions:
        assert bool(decision.phrases) == decision.matched
        for mention in decision.mentions:
            assert 0 <= mention.start < mention.end <= min(len(caption), MAX_CAPTION_CHARS)
            if mention.condition == "regex":
                # Offsets in characters of the caption as given, not in UTF-8 bytes.
                assert caption[mention.start : mention.end] == mention.phrase


@FAST
@given(st.text())
def test_any_text(caption: str) -> None:
    check(RULES.evaluate(caption, schedules=False), caption, every=True)
    check(RULES.matching(caption, schedules=False), caption, every=False)


@FAST
@given(st.text(alphabet=st.sampled_from(sorted(set("".join(PIECES))))))
def test_any_text_from_the_characters_that_matter(caption: str) -> None:
    check(RULES.evaluate(caption, schedules=False), caption, every=True)


@settings(FAST, max_examples=25)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=40), st.integers(0, 5))
def test_large_hostile_captions(pieces: list[str], shift: int) -> None:
    unit = "".join(pieces)
    caption = (unit * (200_000 // len(unit) + 1))[shift:]
    check(RULES.matching(caption, schedules=False), caption, every=False)
    check(RULES.evaluate(caption, schedules=False), caption, every=True)
    # And every size up to the cap, where all of it is looked at.
    for size in (1_000, MAX_CAPTION_CHARS - 1, MAX_CAPTION_CHARS + 1):
        RULES.matching(caption[:size], schedules=False)


@settings(FAST, max_examples=50)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=40), st.text())
def test_nothing_past_the_cap_changes_a_decision(pieces: list[str], tail: str) -> None:
    unit = "".join(pieces)
    # The cap falls right after a space, so the matcher sees exactly this much.
    head = (unit * (MAX_CAPTION_CHARS // len(unit) + 1))[: MAX_CAPTION_CHARS - 1] + " "

    def outcome(caption: str) -> list[tuple[str, bool, list[str], str]]:
        return [
            (d.rule, d.matched, d.phrases, d.reason)
            for d in RULES.evaluate(caption, schedules=False)
        ]

    assert outcome(head + tail) == outcome(head)


PATTERNS = [r"\b(?:gun|knife)s?\b", r"[a-z]{2}\d{3}", r"smoke|fire", r"no\s+\w+", r"(a|b)+c"]


@FAST
@given(
    st.sampled_from(PATTERNS),
    st.text(alphabet=st.sampled_from(list("abcnosmkefirgu 0123!,.ABC"))),
)
def test_the_regex_finds_what_python_re_finds(pattern: str, caption: str) -> None:
    # RE2 replaced re for rule regexes; on what both can run, they find the same matches.
    (decision,) = RuleSet([RuleConfig(name="r", regex=pattern)]).evaluate(caption, schedules=False)
    expected = [
        m.span() for m in re.finditer(pattern, caption, re.IGNORECASE) if m.end() > m.start()
    ]
    assert [(m.start, m.end) for m in decision.mentions] == expected
