"""Phrase syntax: compile a phrase as written in a rule into a regex over a caption's words.

A phrase is matched on whole words of the caption (see `words.tokenize`): case does not matter,
punctuation and hyphens are word breaks, repeated spaces are one. Its words may carry word-form
operators:

    lie*                  a word starting with "lie": lie, lies, lied, lien (not "lying")
    lie+                  "lie" and its regular inflections: lies, lied, lying, ...
    {lying|lies|lay}      one of the alternatives; an alternative may be several words or empty:
                          "{a|the|} car" also matches plain "car"

A compiled phrase also knows the words a match can start with and the words every match contains,
which `index` uses to skip the phrases a caption cannot hold, and its literal spellings
(`expand_phrase`), which the benchmark's substring baseline looks for.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from camwatch.rules.words import tokenize


@dataclass(frozen=True)
class _Lead:
    """The words a match can start with: exact words, and prefixes (from `word*`)."""

    words: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    def __or__(self, other: _Lead) -> _Lead:
        return _Lead(self.words | other.words, self.prefixes + other.prefixes)


@dataclass(frozen=True)
class _Element:
    """One position of a phrase: its regex over normalised words, whether it may be left out,
    the words it can start with, and its literal spellings for the substring baseline."""

    regex: str
    optional: bool
    lead: _Lead
    variants: tuple[str, ...]


@dataclass(frozen=True)
class _Phrase:
    text: str
    pattern: re.Pattern[str]  # see compile_phrase: " word*..." or "word ..."
    lead: _Lead
    required: frozenset[str]  # words every match contains: none of them missing, no match
    variants: tuple[str, ...]


def inflections(word: str) -> tuple[str, ...]:
    """Given a base word, return it with its regular inflections (-s, -es, -ed, -ing, -en, with
    the usual spelling changes: lie -> lying, move -> moving, carry -> carries, stop -> stopping).
    Irregular forms (lay, fell) are not guessed; list them with {...}."""
    if word.endswith("ie"):
        forms = {word, word + "s", word + "d", word[:-2] + "ying"}
    elif word.endswith("ee"):
        forms = {word, word + "s", word + "d", word + "n", word + "ing"}
    elif word.endswith("e"):
        forms = {word, word + "s", word + "d", word + "n", word[:-1] + "ing"}
    elif word.endswith(("s", "x", "z", "ch", "sh")):
        forms = {word, word + "es", word + "ed", word + "ing"}
    elif len(word) > 2 and word.endswith("y") and word[-2] not in "aeiou":
        forms = {word, word[:-1] + "ies", word[:-1] + "ied", word + "ing"}
    else:
        forms = {word, word + "s", word + "ed", word + "ing", word + "en"}
        consonant, vowel = word[-1] not in "aeiouwxy", word[-2:-1] in ("a", "e", "i", "o", "u")
        if len(word) >= 3 and consonant and vowel and word[-3] not in "aeiou":
            # stop -> stopping, sit -> sitting: a short final syllable doubles its consonant.
            double = word + word[-1]
            forms |= {double + "ing", double + "ed", double + "en"}
    return tuple(sorted(forms, key=lambda f: (-len(f), f)))


_OPERATOR_INSIDE = re.compile(r"[*+](?=\w)")


def _parse_run(run: str) -> list[_Element]:
    """Given a run of text without spaces or braces ("lie*", "self-harm", "can't"), return its
    elements."""
    operator = run[-1] if run[-1] in "*+" else ""
    words = tokenize(run.rstrip("*+")).texts
    if _OPERATOR_INSIDE.search(run) or (operator and not re.search(r"\w[*+]$", run)):
        raise ValueError("'*' and '+' go at the end of a word, as in 'lie*' or 'lie+'")
    if not words:
        return []
    elements = [_Element(re.escape(w), False, _Lead(frozenset({w})), (w,)) for w in words[:-1]]
    last = words[-1]
    if operator == "*":
        elements.append(_Element(re.escape(last) + r"\w*", False, _Lead(prefixes=(last,)), (last,)))
    elif operator == "+":
        forms = inflections(last)
        regex = "(?:" + "|".join(map(re.escape, forms)) + ")"
        elements.append(_Element(regex, False, _Lead(frozenset(forms)), forms))
    else:
        elements.append(_Element(re.escape(last), False, _Lead(frozenset({last})), (last,)))
    return elements


def _parse_sequence(text: str, nested: bool = False) -> list[_Element]:
    elements: list[_Element] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char.isspace():
            pos += 1
        elif char == "{":
            if nested:
                raise ValueError("braces cannot be nested")
            close = text.find("}", pos)
            if close < 0:
                raise ValueError("'{' without its '}'")
            elements.append(_parse_group(text[pos + 1 : close]))
            pos = close + 1
        elif char in "}|":
            raise ValueError(f"{char!r} outside braces")
        else:
            end = pos
            while end < len(text) and not text[end].isspace() and text[end] not in "{}|":
                end += 1
            elements.extend(_parse_run(text[pos:end]))
            pos = end
    return elements


def _parse_group(body: str) -> _Element:
    alternatives = [_parse_sequence(alt, nested=True) for alt in body.split("|")]
    filled = [alt for alt in alternatives if alt]
    if not filled:
        raise ValueError("'{}' needs at least one alternative with a word")
    regexes = [_join(alt) for alt in filled]
    lead = _Lead()
    for alt in filled:
        lead |= _lead(alt)
    variants = tuple(v for alt in filled for v in _variants(alt))
    optional = len(filled) < len(alternatives)
    if optional:
        variants = ("", *variants)
    return _Element("(?:" + "|".join(regexes) + ")", optional, lead, variants)


def _lead(elements: list[_Element]) -> _Lead:
    """Given a phrase's elements, return the words a match can start with: those of the first
    element, and of the next ones as long as the earlier ones may be left out."""
    lead = _Lead()
    for element in elements:
        lead |= element.lead
        if not element.optional:
            break
    return lead


def _join(elements: list[_Element]) -> str:
    """Given a phrase's elements, return the regex for them separated by single spaces."""
    out = ""
    started = False
    for element in elements:
        if not started:
            if element.optional:
                out += f"(?:{element.regex} )?"
            else:
                out += element.regex
                started = True
        else:
            out += f"(?: {element.regex})?" if element.optional else f" {element.regex}"
    if not started:
        raise ValueError("a phrase needs at least one word that is not optional")
    return out


def _variants(elements: list[_Element]) -> list[str]:
    combos = itertools.product(*(e.variants for e in elements))
    return [" ".join(w for w in combo if w) for combo in combos]


def compile_phrase(text: str) -> _Phrase:
    """Given a phrase as written in a rule, return it compiled. Raise ValueError on bad syntax."""
    elements = _parse_sequence(text)
    if not elements:
        raise ValueError(f"a phrase needs at least one word, got {text!r}")
    # Python's re, not RE2 as for a rule's `regex`: this pattern is built here from escaped
    # words, finite alternatives and `\w*` within one word, never written by a user, so it
    # nests no quantifier and a try at one word costs at most its spellings (which `variants`
    # lists anyway); and re finds the hits of a hundred phrases several times faster than the
    # re2 binding, which costs microseconds per match in Python.
    #
    # Matched against " " + the caption's normalised words (`index`). A phrase that can start
    # with a `word*` starts with that space, so that it is only tried where a word starts: its
    # `\w*` runs to the end of the word at each try, and tried at every "lie" of a long
    # "xlielielie..." it would take time quadratic in the word's length. Other phrases start
    # with their first word, which the regex engine skips ahead to faster; a try inside a word
    # costs a few characters.
    lead = _lead(elements)
    anchor = " " if lead.prefixes else ""
    pattern = re.compile(anchor + _join(elements) + r"(?!\w)")
    required = frozenset(
        w for e in elements if not e.optional and not e.lead.prefixes and len(e.variants) == 1
        for w in e.lead.words
    )  # fmt: skip
    variants = tuple(dict.fromkeys(_variants(elements)))
    return _Phrase(text, pattern, lead, required, variants)


def phrase_problem(text: str) -> str | None:
    """Given a phrase as written in a rule, return what is wrong with its syntax, or None."""
    try:
        compile_phrase(text)
    except ValueError as exc:
        return str(exc)
    return None


def expand_phrase(text: str) -> list[str]:
    """Given a phrase as written, return its literal spellings ("lie* on the {ground|floor}" ->
    ["lie on the ground", "lie on the floor"]; a `*` word gives its prefix): what a plain
    substring matcher would look for."""
    return list(compile_phrase(text).variants)
