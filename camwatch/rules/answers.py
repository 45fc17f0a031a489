"""Rules with `ask`: the questions added to the prompt, and the model's answers read back.

When rules that apply to a camera have `ask`, its prompt gets one more paragraph (`ask_paragraph`):
the questions keyed by rule name, and a request to end the answer with

    {"answers": {"person-down": "yes", "package": "no"}}

each value "yes", "no" or "unsure". `read_answers` finds that object and returns the caption
without it, which is what is kept, logged, stored and sent. It is read tolerantly, as models write
it: in a fenced code block, with prose before or after, keys in any case (or `_` for `-`), values
in any case ("Yes.", true), single quotes, trailing commas, or without the `answers` wrapper when
its keys are the rules' names.

Bounded on any text: the caption comes from a model looking at whatever is in front of a camera.
Only the last `WINDOW` characters are looked at; one linear scan finds every balanced `{...}`
there (no regular expression, so nothing can backtrack); at most `MAX_TRIES` of them, each at
most `MAX_OBJECT` characters, are parsed (json, then a linear clean-up pass and json again).
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ANSWERS = ("yes", "no", "unsure")
WINDOW = 16_000  # characters at the end of a caption searched for the answers object
MAX_OBJECT = 8_000  # a longer {...} is not an answers object
MAX_TRIES = 8  # objects parsed, from the last one back
MAX_KEYS = 200  # keys of an answers object looked at
MAX_QUESTION = 300

_YES = frozenset({"yes", "y", "true"})
_NO = frozenset({"no", "n", "false"})
_UNSURE = frozenset(
    {"unsure", "unknown", "uncertain", "maybe", "not sure", "unclear", "n/a", "none", "null"}
)
_TOKEN_START = frozenset("{[,:")  # where a JSON string may begin (after whitespace)
_LABEL_MAX = 60  # a line such as "Answers:" right before the object goes with it


@dataclass(frozen=True)
class Answered:
    """A caption read for answers: `caption` without the answers object (as it came when none
    was found), `answers` (rule name -> "yes" | "no" | "unsure") for the rules asked that were
    answered readably, `unanswered` the rules asked without one, `found` whether an answers
    object was found."""

    caption: str
    answers: dict[str, str] = field(default_factory=dict)
    unanswered: tuple[str, ...] = ()
    found: bool = False


def question_problem(question: str) -> str | None:
    """Given a rule's `ask` (on one line), return why it cannot be asked, or None."""
    if not question:
        return "must not be empty (a yes/no question, e.g. 'Is a person lying on the ground?')"
    if len(question) > MAX_QUESTION:
        return f"expected at most {MAX_QUESTION} characters, got {len(question)}"
    if not question.isprintable():
        return "expected a question on one line, got control characters"
    return None


def asked(rules: Iterable[Any], camera: str | None) -> list[tuple[str, str]]:
    """Given the configured rules and a camera (None: every camera), return (rule name,
    question) for each rule with `ask` that applies to it, in config order."""
    return [
        (rule.name, rule.ask)
        for rule in rules
        if rule.ask and (camera is None or rule.cameras is None or camera in rule.cameras)
    ]


def ask_paragraph(questions: Sequence[tuple[str, str]]) -> str:
    """Given (rule name, question) pairs, return the paragraph that asks them and says how to
    answer ("" for none)."""
    if not questions:
        return ""
    lines = ['Then answer these questions about the picture, each with "yes", "no" or "unsure":']
    lines += [
        f"- {json.dumps(name, ensure_ascii=False)}: {question}" for name, question in questions
    ]
    template = ", ".join(f'{json.dumps(name, ensure_ascii=False)}: "..."' for name, _ in questions)
    lines.append(
        "End your answer with this JSON object on a line of its own, each value"
        ' "yes", "no" or "unsure", and write nothing after it:'
    )
    lines.append(f'{{"answers": {{{template}}}}}')
    return "\n".join(lines)


def read_answers(text: str, names: Sequence[str]) -> Answered:
    """Given a model's answer and the names of the rules asked, return the caption without the
    answers object and the answers read from it. Never raises; time linear in at most `WINDOW`
    characters, whatever `text` holds."""
    if not names:
        return Answered(text)
    start = max(0, len(text) - WINDOW)
    for begin, end, outermost in _objects(text, start):
        mapping = _answers_in(_parse(text[begin:end]), names, outermost)
        if mapping is None:
            continue
        answers = _match(mapping, names)
        caption = _without(text, begin, end)
        missing = tuple(name for name in names if name not in answers)
        return Answered(caption, answers, missing, True)
    return Answered(text, {}, tuple(names), False)


# -- finding the object --------------------------------------------------------------------------


def _objects(text: str, start: int) -> list[tuple[int, int, bool]]:
    """Return (begin, end, outermost) of the balanced `{...}` in `text[start:]` at most
    MAX_OBJECT long, the last to close first, at most MAX_TRIES of them; `outermost` when it is
    inside no other. Braces inside JSON strings do not count; a quote opens a string only where
    JSON allows one (after `{ [ , :`), so an apostrophe in prose does not."""
    closed: collections.deque[tuple[int, int, bool]] = collections.deque(maxlen=4 * MAX_TRIES)
    opened: list[int] = []
    last = ""  # the last character outside strings that is not whitespace
    i, n = start, len(text)
    while i < n:
        char = text[i]
        if char in "\"'" and opened and last in _TOKEN_START:
            i = _string_end(text, i, char)
            last = char
            continue
        if char == "{":
            opened.append(i)
        elif char == "}" and opened:
            begin = opened.pop()
            if i + 1 - begin <= MAX_OBJECT:
                closed.append((begin, i + 1, not opened))
        if not char.isspace():
            last = char
        i += 1
    spans = sorted(closed, key=lambda span: (span[1], -span[0]), reverse=True)
    return spans[:MAX_TRIES]


def _string_end(text: str, i: int, quote: str) -> int:
    """Return the index after the string starting at `text[i]` (its closing quote, or the end
    of the line for one that never closes: JSON strings hold no raw newline)."""
    j = i + 1
    n = len(text)
    while j < n:
        char = text[j]
        if char == "\\":
            j += 2
            continue
        if char == quote:
            return j + 1
        if char == "\n":
            return j
        j += 1
    return n


# -- parsing it ----------------------------------------------------------------------------------


def _parse(candidate: str) -> Any:
    """Return the JSON value of `candidate`, read as JSON or, failing that, after a clean-up
    (single quotes, trailing commas, Python's True/False/None); None if neither reads."""
    for attempt in (candidate, _cleaned(candidate)):
        try:
            return json.loads(attempt)
        except (ValueError, RecursionError):
            continue
    return None


def _cleaned(candidate: str) -> str:
    """Return `candidate` with single-quoted strings double-quoted, commas before `}` or `]`
    dropped, True/False/None as JSON spells them and other bare words quoted. One pass: linear
    in its length."""
    out: list[str] = []
    i, n = 0, len(candidate)
    while i < n:
        char = candidate[i]
        if char in "\"'":
            end = _string_end(candidate, i, char)
            body = candidate[i + 1 : end - 1] if end > i + 1 else ""
            if char == '"':
                out.append(candidate[i:end])
            else:
                out.append(json.dumps(body.replace("\\'", "'")))
            i = end
            continue
        if char == ",":
            j = i + 1
            while j < n and candidate[j].isspace():
                j += 1
            if j < n and candidate[j] in "}]":
                i = j
                continue
        if char.isalpha():
            j = i
            while j < n and candidate[j].isalnum():
                j += 1
            word = candidate[i:j]
            literal = {"true": "true", "false": "false", "none": "null", "null": "null"}
            # A bare word is a value written without quotes ({"x": yes}): quoted.
            out.append(literal.get(word.casefold(), json.dumps(word)))
            i = j
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _answers_in(value: Any, names: Sequence[str], outermost: bool) -> Mapping[Any, Any] | None:
    """Return the answers mapping in a parsed object: its `answers` member (any key case), or,
    for an object inside no other, the object itself when a key names a rule asked; None if
    there is none."""
    if not isinstance(value, dict):
        return None
    for key, member in list(value.items())[:MAX_KEYS]:
        if isinstance(key, str) and key.strip().casefold() == "answers":
            return member if isinstance(member, dict) else None
    wanted = {_loose(name) for name in names}
    if outermost and any(
        isinstance(key, str) and _loose(key) in wanted for key in list(value)[:MAX_KEYS]
    ):
        return value
    return None


def _match(mapping: Mapping[Any, Any], names: Sequence[str]) -> dict[str, str]:
    """Return rule name -> answer for the rules `mapping` answers readably: a key is the rule's
    name as written, else in another case, else with other separators ("person_down")."""
    by_exact = {name: name for name in names}
    by_case = {name.casefold(): name for name in reversed(names)}
    by_loose = {_loose(name): name for name in reversed(names)}
    answers: dict[str, str] = {}
    for key, value in list(mapping.items())[:MAX_KEYS]:
        if not isinstance(key, str):
            continue
        name = (
            by_exact.get(key.strip())
            or by_case.get(key.strip().casefold())
            or by_loose.get(_loose(key))
        )
        answer = _answer(value)
        if name is not None and answer is not None and name not in answers:
            answers[name] = answer
    return answers


def _loose(name: str) -> str:
    """Return a name without case or separators: "Person_Down" and "person-down" are equal."""
    return "".join(char for char in name.casefold() if char.isalnum())


def _answer(value: Any) -> str | None:
    """Return "yes", "no" or "unsure" for an answer as a model writes it, or None."""
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if value is None:
        return "unsure"
    if not isinstance(value, str) or len(value) > 100:
        return None
    word = " ".join(value.split()).strip(" .!?\"'`*").casefold()
    if word in _YES:
        return "yes"
    if word in _NO:
        return "no"
    if word in _UNSURE:
        return "unsure"
    first = word.split(" ", 1)[0].strip(",.;:!") if word else ""
    return first if first in ANSWERS else None


# -- the caption without it ----------------------------------------------------------------------


def _without(text: str, begin: int, end: int) -> str:
    """Return `text` without `text[begin:end]`, the code fence around it (```json ... ```) and
    a short label line right before it ("Answers:"), the two sides joined cleanly."""
    before, after = text[:begin].rstrip(), text[end:].lstrip()
    fence = before.rfind("```")
    if (
        fence != -1
        and before[fence + 3 :].strip().casefold() in ("", "json")
        and (after.startswith("```"))
    ):
        before, after = before[:fence].rstrip(), after[3:].lstrip()
    newline = before.rfind("\n")
    label = before[newline + 1 :]
    if (
        newline != -1
        and len(label) <= _LABEL_MAX
        and label.rstrip(" *_").endswith(":")
        and ("answer" in label.casefold() or "json" in label.casefold())
    ):
        before = before[: max(newline, 0)].rstrip()
    if not after:
        return before
    if not before:
        return after
    return f"{before}\n{after}" if "\n" in text[begin - 1 : begin] else f"{before} {after}"
