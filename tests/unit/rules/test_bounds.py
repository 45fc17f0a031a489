"""The matcher is bounded on any caption: it looks at the first `MAX_CAPTION_CHARS` characters,
and takes time linear in them however many cues, commas or clauses they hold."""

from __future__ import annotations

import pytest

import camwatch.rules
from camwatch.rules import MAX_CAPTION_CHARS, RuleSet

from .support import decide, rule
from .test_regex import run_bounded

# -- the cap -----------------------------------------------------------------------------------


def test_the_cap_is_exported_and_well_above_real_captions() -> None:
    assert "MAX_CAPTION_CHARS" in camwatch.rules.__all__
    assert camwatch.rules.MAX_CAPTION_CHARS == MAX_CAPTION_CHARS
    assert MAX_CAPTION_CHARS >= 2 * 3_000  # real captions: 0.3-3 kB


def filler(size: int) -> str:
    """Return `size` characters of a sentence that matches none of the rules below."""
    return ("The yard is quiet. " * (size // 19 + 1))[:size]


def test_text_beyond_the_cap_is_not_looked_at() -> None:
    smoke = rule(any=["smoke"])
    within = filler(MAX_CAPTION_CHARS - 20) + " Smoke rises."
    assert decide(within, smoke).matched
    assert not decide(filler(MAX_CAPTION_CHARS + 10) + " Smoke rises.", smoke).matched


def test_a_word_the_cut_would_split_is_left_out() -> None:
    # "fallen" across the cut must not become "fall".
    caption = filler(MAX_CAPTION_CHARS - 3) + " fallen over."
    assert caption[MAX_CAPTION_CHARS - 2 : MAX_CAPTION_CHARS] == "fa"
    assert not decide(caption, rule(any=["fa*"])).matched
    assert not decide(caption, rule(regex=r"\bfa")).matched
    assert decide(caption[: MAX_CAPTION_CHARS - 3] + " fa", rule(any=["fa*"])).matched


def test_mentions_are_offsets_in_the_caption_as_given() -> None:
    caption = filler(5_000) + "A person is lying on the ground." + filler(5_000)
    decision = decide(caption, rule(any=["lying on the ground"]))
    (mention,) = decision.mentions
    assert caption[mention.start : mention.end] == "lying on the ground"


# -- many cues: still right, and linear ----------------------------------------------------------


def test_many_negations_still_scope_as_one() -> None:
    caption = "no " * 2_000 + "smoke, but a person is lying on the ground."
    rules = RuleSet([rule(name="fire", any=["smoke"]), rule(name="down", any=["lying"])])
    assert [d.rule for d in rules.matching(caption, schedules=False)] == ["down"]
    decision = rules.evaluate(caption, schedules=False)[0]
    assert decision.reason == "no phrase of any present (1 discarded: negated by 'no')"


def test_a_place_still_stops_each_negation_in_a_long_clause() -> None:
    caption = "no one is in the car, " * 300 + "no one is near the van"
    decision = decide(caption, rule(any=["car", "van"]))
    assert decision.matched and decision.phrases == ["car", "van"]


ADVERSARIAL = {
    "negations": "no ",
    "list": "no smoke, fire, flames, a gun, knife, ",
    "and": "no smoke and fire and flames and ",
    "either": "either smoke ",
    "could": "could be smoke ",
    "auxiliaries": "is ",
    "framed": "no one in the image ",
    "long word": "lie",  # "lielielie...": "lie*" tried at every "lie" of one long word
    "contractions": "cannot can't it's ",
}


@pytest.mark.parametrize("piece", ADVERSARIAL.values(), ids=list(ADVERSARIAL))
def test_a_megabyte_of_hostile_text_is_matched_in_bounded_time(piece: str) -> None:
    # Before the cap and the linear scopes, each of these took minutes (quadratic in length).
    out = run_bounded(
        f"""
        from camwatch.config import RuleConfig
        from camwatch.rules import RuleSet

        rules = RuleSet([
            RuleConfig(name="down", any=["lying on the ground", "lie* on the ground", "fall+"]),
            RuleConfig(name="fire", any=["smoke", "fire"], none=["candle*"]),
            RuleConfig(name="gun", regex=r"\\b(?:gun|knife)s?\\b"),
        ])
        piece = {piece!r}
        caption = piece * (1_000_000 // len(piece)) + " lying on the ground, smoke is not visible"
        for length in (1_000, 8_000, len(caption)):
            rules.matching(caption[:length], schedules=False)
            rules.evaluate(caption[:length], schedules=False)
        print("done")
        """
    )
    assert out.split() == ["done"]
