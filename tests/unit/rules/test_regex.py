"""A rule's `regex`: run on RE2, so no caption can make it slow; what RE2 cannot run is a config
error at load; and it keeps its documented semantics (case-insensitive, `matched` holds the text
it matched, a negated or hedged match does not count)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pydantic
import pytest

from camwatch.config import RuleConfig, parse_config
from camwatch.errors import ConfigError
from camwatch.rules import RuleSet

from .support import decide, rule

REPO = Path(__file__).resolve().parents[3]
EX_CONFIG = 78


def run_bounded(code: str, timeout: float = 10.0) -> str:
    """Run `code` in a fresh interpreter and return what it prints; fail the test if it takes
    longer than `timeout` seconds. A subprocess, because a regex that backtracks holds the GIL:
    a thread could not be stopped, and the whole suite would hang."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=REPO,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not finish within {timeout:g}s")
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- bounded time ------------------------------------------------------------------------------


def test_catastrophic_pattern_finishes_on_a_hostile_caption() -> None:
    # With Python's re, `(a+)+$` on this caption backtracks for minutes, holding the GIL.
    out = run_bounded(
        """
        from camwatch.config import RuleConfig
        from camwatch.rules import RuleSet

        rules = RuleSet([RuleConfig(name="r", regex="(a+)+$")])
        print(rules.evaluate("a" * 5_000 + "!", schedules=False)[0].matched)
        print(rules.evaluate("a" * 5 + "!" + "a" * 3, schedules=False)[0].matched)
        # The audit's caption, longer than the matcher looks at (MAX_CAPTION_CHARS).
        rules.evaluate("a" * 50_000 + "!", schedules=False)
        print("done")
        """
    )
    assert out.split() == ["False", "True", "done"]


# -- patterns RE2 cannot run: a config error at load ---------------------------------------------

UNSUPPORTED = {
    r"(a)\1": "backreference",
    r"(?=x)y": "look-ahead",
    r"(?!x)y": "negative look-ahead",
    r"(?<=a)b": "look-behind",
    r"(?<!a)b": "negative look-behind",
    r"(?>ab)": "atomic group",
    r"a++": "possessive quantifier",
    r"knife\Z": "\\Z",
}


@pytest.mark.parametrize("pattern", UNSUPPORTED, ids=list(UNSUPPORTED.values()))
def test_unsupported_pattern_is_a_config_error_naming_the_field(
    pattern: str, tmp_path: Path
) -> None:
    data = {
        "cameras": [{"name": "front", "path": str(tmp_path)}],
        "rules": [{"name": "r", "regex": pattern}],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, {})
    (problem,) = info.value.problems
    assert problem.startswith("rules[0].regex: invalid regular expression: "), problem
    assert "RE2" in problem and "backreferences" in problem and "look-arounds" in problem


def test_rule_config_rejects_it_and_so_does_the_rule_set() -> None:
    with pytest.raises(pydantic.ValidationError, match="invalid regular expression"):
        RuleConfig(name="r", regex=r"(a)\1")
    # A RuleConfig built without validation still cannot reach the matcher.
    unchecked = RuleConfig.model_construct(name="r", regex=r"(?<=a)b")
    with pytest.raises(ConfigError) as info:
        RuleSet([rule(any=["car"]), unchecked])
    (problem,) = info.value.problems
    assert problem.startswith("rules[1].regex: invalid regular expression: invalid perl operator")


def test_a_syntax_error_is_still_reported_as_one(tmp_path: Path) -> None:
    data = {
        "cameras": [{"name": "front", "path": str(tmp_path)}],
        "rules": [{"name": "r", "any": ["car"]}, {"name": "s", "regex": "fall(en"}],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, {})
    assert info.value.problems == ["rules[1].regex: invalid regular expression: missing ): fall(en"]


def test_check_config_exits_78_naming_the_rule(tmp_path: Path) -> None:
    camera = tmp_path / "front"
    camera.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"cameras:\n  - name: front\n    path: {camera}\nrules:\n"
        '  - name: plate\n    regex: "plate ([A-Z])\\\\1"\n',
        encoding="utf-8",
    )
    # In a subprocess: the command line configures logging for the whole process.
    done = subprocess.run(
        [sys.executable, "-m", "camwatch", "check-config", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert done.returncode == EX_CONFIG, done.stderr
    assert "rules[0].regex: invalid regular expression: invalid escape sequence: \\1" in done.stderr
    # Nothing logged by RE2 itself ahead of the message.
    assert "re2.cc" not in done.stderr


# -- the documented semantics, kept ------------------------------------------------------------


def test_case_insensitive_and_matched_holds_the_caption_text() -> None:
    decision = decide("A van with Plate ab123 is parked.", rule(regex=r"PLATE [A-Z]{2}\d{3}"))
    assert (decision.matched, decision.phrases) == (True, ["Plate ab123"])
    assert decision.reason == "regex: 'Plate ab123'"


def test_offsets_are_characters_not_bytes() -> None:
    # RE2 works on UTF-8 bytes: the offsets must still be those of the caption's characters.
    caption = "Ça va — the café\u2019s van, plate AB123, is here."
    decision = decide(caption, rule(regex=r"plate [a-z]{2}\d{3}"))
    (mention,) = decision.mentions
    assert caption[mention.start : mention.end] == "plate AB123" == mention.phrase


def test_negated_or_hedged_regex_hits_do_not_count() -> None:
    gun = rule(regex=r"\b(?:gun|knife)s?\b")
    negated = decide("There is no gun on the table.", gun)
    assert negated.reason == "regex did not match (1 discarded: negated by 'no')"
    hedged = decide("It is unclear whether he holds a knife.", gun)
    assert not hedged.matched
    assert hedged.mentions[0].discarded == "hedged by 'it is unclear whether'"
    assert decide("No gun here, but a knife there.", gun).phrases == ["knife"]


def test_a_lone_surrogate_in_the_caption_does_not_break_matching() -> None:
    # A caption decoded from JSON can hold one ("\ud800"); RE2 reads UTF-8, which has none.
    caption = "Noise \ud800 then a gun."
    decision = decide(caption, rule(regex="gun"))
    assert decision.matched
    assert caption[decision.mentions[0].start : decision.mentions[0].end] == "gun"


AGREE = [
    r"plate [a-z]{2}\d{3}",
    r"\b(?:gun|knife)s?\b",
    r"gun|knife",
    r"(fire|smoke)+",
    r"[0-9]+ (people|persons?)",
    r"^it shows",
    r"\.$",
    r"a.*?b",
    r"colou?r",
]
CAPTIONS = [
    "A van with plate AB123 and plate cd999.",
    "Guns, a KNIFE, knives and a gunman.",
    "Fire smoke firesmoke; smoke.",
    "It shows 3 people and 1 person, 12 persons.",
    "a b ab aab a-b colour color COLOR.",
]


@pytest.mark.parametrize("pattern", AGREE)
def test_common_patterns_match_as_with_python_re(pattern: str) -> None:
    ruleset = RuleSet([rule(regex=pattern)])
    for caption in CAPTIONS:
        (decision,) = ruleset.evaluate(caption, schedules=False)
        spans = [(m.start, m.end) for m in decision.mentions]
        expected = [
            m.span() for m in re.finditer(pattern, caption, re.IGNORECASE) if m.end() > m.start()
        ]
        assert spans == expected, caption
