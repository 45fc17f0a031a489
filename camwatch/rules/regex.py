"""Rule regexes: compiled with RE2, so that no caption can make matching slow.

A rule's `regex` is written by whoever writes the config, but the text it runs on is a caption,
and a caption transcribes whatever text a camera sees: a person in front of a camera can steer
it. Python's `re` backtracks, so a pattern such as `(a+)+$` takes exponential time on a caption
such as "aaaa...a!", holding the GIL: the daemon stops answering signals and its watchdog, and
after a restart the same image is captioned (and paid for) again. RE2 (`google-re2`) has no
backtracking: it matches in time linear in the caption for any pattern.

What RE2 cannot do is what needs backtracking: backreferences (`\\1`), look-arounds (`(?=...)`,
`(?!...)`, `(?<=...)`, `(?<!...)`), atomic groups and possessive quantifiers. Such a pattern is a
config error at load (`compile_regex`), never a surprise at match time. Other differences from
Python's `re` that a rule can notice: `\\w`, `\\d`, `\\s` and `\\b` are ASCII-only (use `\\pL` for
any letter), the end of the text is `\\z` (not `\\Z`), `$` matches only at the very end, and
`{,n}` is literal text (write `{0,n}`). Matching is case-insensitive, as documented for `regex`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, cast

import re2


class RegexMatch(Protocol):
    """The part of an RE2 match the engine uses (offsets in characters, as with `re`)."""

    def span(self, group: int = 0) -> tuple[int, int]: ...


class Regex(Protocol):
    """The part of a compiled RE2 pattern the engine uses (re2 ships no type hints)."""

    @property
    def pattern(self) -> str: ...

    def finditer(self, text: str) -> Iterator[RegexMatch]: ...


# RE2 reports these for the constructs it leaves out on purpose; the message then says why.
_UNSUPPORTED = ("invalid perl operator", "invalid escape sequence", "bad repetition operator")
_WHY = (
    "rule regexes run on RE2, which never backtracks, so that no caption can freeze the daemon;"
    " it has no backreferences (\\1), look-arounds ((?=...), (?!...), (?<=...), (?<!...)),"
    " atomic groups or possessive quantifiers, and \\z (not \\Z) is the end of the text"
)


def _options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False  # the documented `regex` semantics: case-insensitive
    # A bad pattern is reported once, as a config error naming the rule; RE2 would also log it
    # to stderr, unformatted, ahead of that.
    options.log_errors = False
    return options


def compile_regex(pattern: str) -> Regex:
    """Given a rule's `regex`, return it compiled with RE2, case-insensitive. Raise ValueError
    with the reason (and, for a construct RE2 does not have, why it does not) otherwise."""
    try:
        return cast(Regex, re2.compile(pattern, _options()))
    except UnicodeEncodeError:  # RE2 reads UTF-8, and a lone surrogate has no UTF-8 form
        raise ValueError("invalid regular expression: not valid Unicode text") from None
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "cannot compile"
        if isinstance(reason, bytes):  # the binding passes RE2's message on as bytes
            reason = reason.decode("utf-8", "replace")
        reason = str(reason)
        message = f"invalid regular expression: {reason}"
        if reason.startswith(_UNSUPPORTED):
            message += f" ({_WHY})"
        raise ValueError(message) from None


def regex_problem(pattern: str) -> str | None:
    """Given a rule's `regex`, return why it cannot be used, or None."""
    try:
        compile_regex(pattern)
    except ValueError as exc:
        return str(exc)
    return None
