"""Rules: compile them once, decide per caption which match, and explain each decision.

A phrase is matched on whole words of the caption (see `camwatch.cues.tokenize`): case does not
matter, punctuation and hyphens are word breaks, repeated spaces are one. Its words may carry
word-form operators:

    lie*                  a word starting with "lie": lie, lies, lied, lien (not "lying")
    lie+                  "lie" and its regular inflections: lies, lied, lying, ...
    {lying|lies|lay}      one of the alternatives; an alternative may be several words or empty:
                          "{a|the|} car" also matches plain "car"

A mention (one place a phrase or the rule's regex is found) does not count when a negation or
hedge cue covers it (`camwatch.cues`); that holds for `any`, `all`, `none`, `skip_if` and `regex`
alike. A rule matches when its camera filter and schedule allow, at least one `any` phrase counts,
every `all` phrase counts, the regex counts, and no `none` or `skip_if` phrase counts.

`RuleSet.evaluate` normalises the caption and finds the cue scopes once, then each distinct phrase
once: only a phrase that can start with one of the caption's words, and whose other required words
are all there, is searched for at all.
"""

from __future__ import annotations

import itertools
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from camwatch.config import MatchingConfig, RuleConfig
from camwatch.cues import CueSet, Scopes, Words, parse_cue, tokenize
from camwatch.errors import ConfigError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Mention:
    """One place a rule's phrase or regex was found in the caption.

    `phrase` is the configured phrase as written (for the regex: the text it matched), `start` and
    `end` are character offsets in the original caption, `discarded` is None when the mention
    counts and otherwise why not ("negated by 'no one'"), `condition` is the rule key it belongs
    to: any, all, none, skip_if or regex.
    """

    phrase: str
    start: int
    end: int
    discarded: str | None
    condition: str = "any"


@dataclass(frozen=True)
class RuleDecision:
    """Whether one rule matched one caption, and why.

    `phrases` is what goes into the alert's `matched`: the `any` and `all` phrases that counted,
    as configured, then the text the regex matched; it is empty when the rule did not match.
    `reason` is one line; `mentions` holds every mention considered, counted or discarded.
    """

    rule: str
    matched: bool
    phrases: list[str]
    reason: str
    mentions: list[Mention] = field(default_factory=list)


# -- phrase syntax ---------------------------------------------------------------------------


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
    pattern: re.Pattern[str]  # the caller checks that a match starts a word
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
    pattern = re.compile(_join(elements) + r"(?!\w)")
    required = frozenset(
        w for e in elements if not e.optional and not e.lead.prefixes and len(e.variants) == 1
        for w in e.lead.words
    )  # fmt: skip
    variants = tuple(dict.fromkeys(_variants(elements)))
    return _Phrase(text, pattern, _lead(elements), required, variants)


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


# -- rules -----------------------------------------------------------------------------------


_Hit = tuple[int, int, str | None]  # start, end (characters of the caption), why discarded
_CONDITIONS = ("any", "all", "none", "skip_if")


class _PhraseTable:
    """Every distinct phrase of a rule set, numbered, and indexed by the words a match can start
    with, so that one pass over a caption's words finds them all."""

    def __init__(self) -> None:
        self.phrases: list[_Phrase] = []
        self._numbers: dict[str, int] = {}
        self._by_word: dict[str, list[int]] = {}
        self._by_prefix: list[tuple[str, int]] = []

    def add(self, text: str) -> int:
        """Given a phrase as written, return its number, compiling it the first time. Raise
        ValueError on bad syntax."""
        number = self._numbers.get(text)
        if number is None:
            phrase = compile_phrase(text)
            number = self._numbers[text] = len(self.phrases)
            self.phrases.append(phrase)
            for word in phrase.lead.words:
                self._by_word.setdefault(word, []).append(number)
            for prefix in phrase.lead.prefixes:
                self._by_prefix.append((prefix, number))
        return number

    def find(self, words: Words, scopes: Scopes) -> tuple[dict[int, list[_Hit]], frozenset[int]]:
        """Given a caption's words and cue scopes, return the hits of each phrase found, by
        phrase number, and the numbers of the phrases with a hit that counts."""
        vocabulary = frozenset(words.texts)
        # Which phrases can occur at all: a word they can start with is here, and so is every
        # word they require. Most phrases of a rule set fall out here, at a set lookup each.
        candidates: set[int] = set()
        by_word = self._by_word
        for word in vocabulary:
            numbers = by_word.get(word)
            if numbers is not None:
                candidates.update(numbers)
        if self._by_prefix:
            ordered = sorted(vocabulary)
            for prefix, number in self._by_prefix:
                k = bisect_left(ordered, prefix)
                if k < len(ordered) and ordered[k].startswith(prefix):
                    candidates.add(number)
        phrases = self.phrases
        hits: dict[int, list[_Hit]] = {}
        counted: set[int] = set()
        norm, norm_starts, starts, ends = words.norm, words.norm_starts, words.starts, words.ends
        forward, backward = scopes.forward, scopes.backward
        for number in candidates:
            phrase = phrases[number]
            if not phrase.required <= vocabulary:
                continue
            # The pattern starts with its first word, not a look-behind, so the regex engine
            # skips ahead to it in C; that it starts a word is checked here.
            search = phrase.pattern.search
            found: list[_Hit] = []
            position = 0
            while (matched := search(norm, position)) is not None:
                start, end = matched.span()
                if start and norm[start - 1] != " ":
                    position = start + 1
                    continue
                position = end
                first = bisect_right(norm_starts, start) - 1
                last = bisect_right(norm_starts, end - 1) - 1
                why = forward[first] or backward[last]
                found.append((starts[first], ends[last], why))
                if why is None:
                    counted.add(number)
            if found:
                hits[number] = found
        return hits, frozenset(counted)


@dataclass(frozen=True)
class _Rule:
    config: RuleConfig
    phrases: dict[str, tuple[int, ...]]  # condition -> phrase numbers, in config order
    sets: dict[str, frozenset[int]]  # the same as sets: one C-level test per condition
    regex: re.Pattern[str] | None
    cameras: frozenset[str] | None
    schedule: str  # "" when the rule is always active
    any_set: frozenset[int] | None  # None: the rule has no `any` phrases
    order: tuple[tuple[int, str], ...]  # (phrase number, condition), in config order
    numbers: frozenset[int]  # every phrase number of the rule


class _Caption:
    """One caption, analysed once per evaluate: its words, its cue scopes, and the hits of every
    phrase of the rule set."""

    __slots__ = ("_mentions", "_regex", "counted", "hits", "scopes", "table", "words")

    def __init__(self, caption: str, cues: CueSet, table: _PhraseTable) -> None:
        self.words: Words = tokenize(caption)
        self.scopes: Scopes = cues.scopes(self.words)
        self.table = table
        # The hits per phrase, and the phrases with at least one mention that counts.
        self.hits, self.counted = table.find(self.words, self.scopes)
        self._mentions: dict[tuple[int, str], list[Mention]] = {}
        self._regex: dict[str, list[_Hit]] = {}

    def found(self, number: int) -> bool | None:
        """Return True if the phrase counts, False if it is only discarded, None if absent."""
        if number not in self.hits:
            return None
        return number in self.counted

    def mentions(self, number: int, condition: str) -> list[Mention]:
        """Return the phrase's hits as mentions, built once per phrase and condition."""
        key = (number, condition)
        built = self._mentions.get(key)
        if built is None:
            text = self.table.phrases[number].text
            hits = self.hits.get(number, ())
            built = [Mention(text, start, end, why, condition) for start, end, why in hits]
            self._mentions[key] = built
        return built

    def caption_text(self, hit: _Hit) -> str:
        """Return the caption's text of a hit."""
        return self.words.caption[hit[0] : hit[1]]

    def regex_hits(self, regex: re.Pattern[str]) -> list[_Hit]:
        """Return the non-empty matches of `regex` in the original caption."""
        hits = self._regex.get(regex.pattern)
        if hits is None:
            words = self.words
            hits = []
            for match in regex.finditer(words.caption):
                start, end = match.span()
                if start == end:
                    continue
                first = bisect_right(words.ends, start)
                last = bisect_left(words.starts, end) - 1
                why = self.scopes.discarded(first, last) if first <= last else None
                hits.append((start, end, why))
            self._regex[regex.pattern] = hits
        return hits


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _describe_schedule(rule: RuleConfig) -> str:
    parts = []
    if rule.active:
        parts.append("active " + ", ".join(f"{_hhmm(a)}-{_hhmm(b)}" for a, b in rule.active))
    if rule.days:
        parts.append("days " + ", ".join(rule.days))
    return "; ".join(parts)


def in_schedule(active: Sequence[tuple[int, int]], days: Sequence[str], local: datetime) -> bool:
    """Given a rule's `active` ranges (minutes since midnight, `start > end` crossing midnight,
    `start == end` a whole day from `start`), its `days`, and a local wall-clock time, return
    whether the rule is in force. The part of a range after midnight belongs to the day the range
    started: `active: ["22:00-06:00"], days: [fri]` covers Friday 22:00 to Saturday 06:00."""
    minute = local.hour * 60 + local.minute
    weekday = local.weekday()
    if not active:
        return not days or DAYS[weekday] in days
    for start, end in active:
        if start < end:
            if not start <= minute < end:
                continue
            day = weekday
        elif minute >= start:
            day = weekday
        elif minute < end:
            day = (weekday - 1) % 7
        else:
            continue
        if not days or DAYS[day] in days:
            return True
    return False


class RuleSet:
    """The configured rules, compiled once; `evaluate` decides them for one caption."""

    def __init__(
        self,
        rules: Sequence[RuleConfig],
        matching: MatchingConfig | None = None,
        timezone: str | None = None,
    ) -> None:
        """Given the rules in config order, the user-added cues and the IANA time zone of the
        schedules (None: the system's), compile everything. Raise ConfigError with one
        `rules[i].any[j]: ...` line per phrase or cue that cannot be compiled."""
        matching = matching or MatchingConfig()
        problems: list[str] = []
        for key, kind in (("negations", "negation"), ("hedges", "hedge")):
            for j, cue in enumerate(getattr(matching, key)):
                try:
                    parse_cue(cue, kind)
                except ValueError as exc:
                    problems.append(f"matching.{key}[{j}]: {exc}")
        self.cues = CueSet() if problems else CueSet(matching.negations, matching.hedges)
        self.zone = ZoneInfo(timezone) if timezone else None
        self._table = _PhraseTable()
        compiled = []
        for i, rule in enumerate(rules):
            phrases: dict[str, tuple[int, ...]] = {}
            for key in _CONDITIONS:
                numbers = []
                for j, text in enumerate(getattr(rule, key)):
                    try:
                        numbers.append(self._table.add(text))
                    except ValueError as exc:
                        problems.append(f"rules[{i}].{key}[{j}]: {exc}")
                # A phrase listed twice is looked at once.
                phrases[key] = tuple(dict.fromkeys(numbers))
            compiled.append(
                _Rule(
                    rule,
                    phrases,
                    {key: frozenset(numbers) for key, numbers in phrases.items()},
                    re.compile(rule.regex, re.IGNORECASE) if rule.regex is not None else None,
                    frozenset(rule.cameras) if rule.cameras is not None else None,
                    _describe_schedule(rule),
                    frozenset(phrases["any"]) if phrases["any"] else None,
                    tuple((n, key) for key in _CONDITIONS for n in phrases[key]),
                    frozenset(n for key in _CONDITIONS for n in phrases[key]),
                )
            )
        if problems:
            raise ConfigError(problems)
        self.rules: tuple[_Rule, ...] = tuple(compiled)
        self._scheduled = any(rule.schedule for rule in self.rules)
        self._without_any = [i for i, rule in enumerate(self.rules) if rule.any_set is None]
        self._by_any_phrase: dict[int, list[int]] = {}
        for i, rule in enumerate(self.rules):
            for number in rule.phrases["any"]:
                self._by_any_phrase.setdefault(number, []).append(i)

    def local_time(self, now: datetime) -> datetime:
        """Given an instant, return the wall-clock time in the rules' time zone. A naive `now` is
        taken as that wall-clock time already."""
        if now.tzinfo is None:
            return now
        return now.astimezone(self.zone) if self.zone is not None else now.astimezone()

    def evaluate(
        self,
        caption: str,
        camera: str | None = None,
        now: datetime | None = None,
        *,
        schedules: bool = True,
    ) -> list[RuleDecision]:
        """Given a caption, the camera it came from (None: ignore the rules' camera filters) and
        the time (None: now), return one decision per rule in config order, each with its
        reason and mentions. With `schedules=False` the rules' `active` and `days` are not
        applied (what `camwatch test-rules` wants)."""
        return self._decisions(caption, camera, now, schedules, explain=True)

    def matching(
        self,
        caption: str,
        camera: str | None = None,
        now: datetime | None = None,
        *,
        schedules: bool = True,
    ) -> list[RuleDecision]:
        """Given the same arguments as `evaluate`, return only the decisions that matched, with
        their mentions. Faster than `evaluate`: rules that cannot match are not explained."""
        return self._decisions(caption, camera, now, schedules, explain=False)

    def _decisions(
        self,
        caption: str,
        camera: str | None,
        now: datetime | None,
        schedules: bool,
        explain: bool,
    ) -> list[RuleDecision]:
        """Return the decisions of `evaluate` if `explain`, else those of `matching`."""
        local: datetime | None = None
        if schedules and self._scheduled:
            local = self.local_time(now if now is not None else datetime.now(UTC))
        text = _Caption(caption, self.cues, self._table)
        rules: Iterable[_Rule] = self.rules
        if not explain:
            # Only the rules that can match: those with an `any` phrase that counts here, and
            # those without `any` phrases.
            chosen = set(self._without_any)
            for number in text.counted:
                chosen.update(self._by_any_phrase.get(number, ()))
            rules = [self.rules[i] for i in sorted(chosen)]
        decisions = []
        for rule in rules:
            name = rule.config.name
            if camera is not None and rule.cameras is not None and camera not in rule.cameras:
                if explain:
                    reason = f"camera {camera!r} not in cameras"
                    decisions.append(RuleDecision(name, False, [], reason))
            elif (
                local is not None
                and rule.schedule
                and not in_schedule(rule.config.active, rule.config.days, local)
            ):
                if explain:
                    reason = f"outside schedule ({rule.schedule})"
                    decisions.append(RuleDecision(name, False, [], reason))
            else:
                decision = _decide(rule, text, explain)
                if decision is not None:
                    decisions.append(decision)
        return decisions


def _decide(rule: _Rule, text: _Caption, explain: bool) -> RuleDecision | None:
    """Given a compiled rule and an analysed caption, return the rule's decision on the text.
    Unless `explain`, a rule that did not match gives None: nobody will read why."""
    counted = text.counted
    sets = rule.sets
    regex_hits = text.regex_hits(rule.regex) if rule.regex is not None else []
    regex_text = None
    for hit in regex_hits:
        if hit[2] is None:
            regex_text = text.caption_text(hit)
            break
    matched = (
        (not sets["any"] or not sets["any"].isdisjoint(counted))
        and sets["all"] <= counted
        and (rule.regex is None or regex_text is not None)
        and sets["none"].isdisjoint(counted)
        and sets["skip_if"].isdisjoint(counted)
    )
    if not matched and not explain:
        return None
    mentions: list[Mention] = []
    hits = text.hits
    if not rule.numbers.isdisjoint(hits):
        for number, key in rule.order:
            if number in hits:
                mentions += text.mentions(number, key)
    if regex_hits:
        for hit in regex_hits:
            mentions.append(Mention(text.caption_text(hit), hit[0], hit[1], hit[2], "regex"))
    phrases = text.table.phrases
    name = rule.config.name
    if not matched:
        return RuleDecision(name, False, [], _why_not(rule, text, regex_hits), mentions)
    any_found = [n for n in rule.phrases["any"] if n in counted]
    found = [phrases[n].text for n in (*any_found, *rule.phrases["all"])]
    reasons = []
    if any_found:
        reasons.append("any: " + ", ".join(repr(phrases[n].text) for n in any_found))
    if rule.phrases["all"]:
        reasons.append("all: " + ", ".join(repr(phrases[n].text) for n in rule.phrases["all"]))
    if regex_text is not None:
        found.append(regex_text)
        reasons.append(f"regex: {regex_text!r}")
    return RuleDecision(name, True, list(dict.fromkeys(found)), "; ".join(reasons), mentions)


def _why_not(rule: _Rule, text: _Caption, regex_hits: list[_Hit]) -> str:
    """Given a rule that did not match, return the first condition that failed, in the order
    any, all, regex, none, skip_if."""
    phrases = text.table.phrases
    counted = text.counted
    if rule.phrases["any"] and rule.sets["any"].isdisjoint(counted):
        return _absent("no phrase of any present", text, rule.phrases["any"], [])
    for number in rule.phrases["all"]:
        found = text.found(number)
        if not found:
            state = "only negated or hedged" if found is False else "not present"
            return f"all: {phrases[number].text!r} {state}"
    if rule.regex is not None and all(why for _, _, why in regex_hits):
        return _absent("regex did not match", text, (), regex_hits)
    for number in rule.phrases["none"]:
        if number in counted:
            return f"none: {phrases[number].text!r} present"
    for number in rule.phrases["skip_if"]:
        if number in counted:
            return f"skip_if: {phrases[number].text!r}"
    raise AssertionError("a rule that did not match must have a failed condition")


def _absent(reason: str, text: _Caption, numbers: Sequence[int], hits: list[_Hit]) -> str:
    """Given why a rule failed, add how many mentions were discarded and the first cue."""
    whys = [why for n in numbers for _, _, why in text.hits.get(n, ()) if why]
    whys += [why for _, _, why in hits if why]
    if whys:
        return f"{reason} ({len(whys)} discarded: {whys[0]})"
    return reason


# -- explanations ----------------------------------------------------------------------------


def _snippet(caption: str, start: int, end: int, width: int = 30) -> str:
    """Return the mention with up to `width` characters either side, on one line."""
    left = max(0, start - width)
    right = min(len(caption), end + width)
    before = caption[left:start]
    after = caption[end:right]
    if left > 0 and " " in before:
        before = "..." + before[before.index(" ") + 1 :]
    if right < len(caption) and " " in after:
        after = after[: after.rindex(" ")] + "..."
    text = f"{before}[{caption[start:end]}]{after}"
    return " ".join(text.split())


def explain(decisions: list[RuleDecision], caption: str) -> str:
    """Given the decisions for a caption and the caption, return a human explanation: the
    caption, then per rule whether it matched and why, each mention with a snippet of where it
    is, and for each discarded one the cue that discarded it."""
    lines = [f"caption: {' '.join(caption.split())}"]
    for decision in decisions:
        verdict = "MATCH" if decision.matched else "no match"
        lines.append(f"{decision.rule}: {verdict} ({decision.reason})")
        for m in sorted(decision.mentions, key=lambda m: (m.start, m.condition)):
            status = "counted" if m.discarded is None else f"discarded, {m.discarded}"
            where = _snippet(caption, m.start, m.end)
            lines.append(f"  {m.condition} {m.phrase!r} at {m.start}-{m.end} {status}: {where}")
    return "\n".join(lines)


def decision_json(caption: str, decisions: list[RuleDecision]) -> dict[str, Any]:
    """Given a caption and its decisions, return the `test-rules --json` object:
    `{"caption": ..., "matched": [{"rule": ..., "phrases": [...]}], "discarded": [...]}`, where
    each discarded entry is `{"rule", "condition", "phrase", "start", "end", "why"}`."""
    return {
        "caption": caption,
        "matched": [{"rule": d.rule, "phrases": list(d.phrases)} for d in decisions if d.matched],
        "discarded": [
            {
                "rule": d.rule,
                "condition": m.condition,
                "phrase": m.phrase,
                "start": m.start,
                "end": m.end,
                "why": m.discarded,
            }
            for d in decisions
            for m in d.mentions
            if m.discarded is not None
        ],
    }
