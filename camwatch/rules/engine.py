"""The engine: compile a rule set once, then decide every rule on one caption.

A mention (one place a phrase or the rule's regex is found) does not count when a negation or
hedge cue covers it (`cues`); that holds for `any`, `all`, `none`, `skip_if` and `regex` alike. A
rule matches when its camera filter and schedule allow, at least one `any` phrase counts, every
`all` phrase counts, the regex counts, and no `none` or `skip_if` phrase counts.

`RuleSet.evaluate` normalises the caption and finds the cue scopes once, then each distinct phrase
once (`index`), and decides each rule from those hits.

Bounded on any caption: a caption transcribes whatever text a camera sees, so whoever stands in
front of it steers it. The matcher looks at the first `MAX_CAPTION_CHARS` characters only (real
captions are 0.3-3 kB), every step is linear in those (the cue scopes too, see `clauses`), and a
rule's regex runs on RE2, which does not backtrack (`regex`).
"""

from __future__ import annotations

import dataclasses
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from camwatch.config import MatchingConfig, RuleConfig
from camwatch.errors import ConfigError
from camwatch.localtime import zone_named
from camwatch.rules.answers import Answered, asked, read_answers
from camwatch.rules.cues import CueSet, Scopes, parse_cue
from camwatch.rules.decision import Mention, RuleDecision
from camwatch.rules.index import _Hit, _PhraseTable
from camwatch.rules.regex import Regex, compile_regex
from camwatch.rules.schedule import _describe_schedule, in_schedule
from camwatch.rules.words import Words, tokenize

_CONDITIONS = ("any", "all", "none", "skip_if")

# How much of a caption the matcher looks at. Real captions are 0.3-3 kB; this is well above, and
# bounds the time one caption can take, whatever it holds. Exported (camwatch.rules) so that the
# pipeline can cap the captions it stores, logs and sends to the same length.
MAX_CAPTION_CHARS = 8_000
# A run of word characters longer than this is no word a rule looks for: the cut is not moved to
# its start.
_LONGEST_WORD = 100
_WORD_CHAR = re.compile(r"\w")  # what `words.tokenize` counts as part of a word
# RE2 reads UTF-8, which a lone surrogate (possible in a caption decoded from JSON) has no form
# in; each becomes U+FFFD, one character for one, so offsets stay those of the caption.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _capped(caption: str) -> str:
    """Given a caption, return the part the matcher looks at: its first `MAX_CAPTION_CHARS`
    characters, less a last word the cut would split ("fallen" cut to "fall" is another word)."""
    if len(caption) <= MAX_CAPTION_CHARS:
        return caption
    end = MAX_CAPTION_CHARS
    if _WORD_CHAR.match(caption, end):
        start = end
        floor = max(0, end - _LONGEST_WORD)
        while start > floor and _WORD_CHAR.match(caption, start - 1):
            start -= 1
        if start == 0 or not _WORD_CHAR.match(caption, start - 1):
            end = start
    return caption[:end]


@dataclass(frozen=True)
class _Rule:
    config: RuleConfig
    phrases: dict[str, tuple[int, ...]]  # condition -> phrase numbers, in config order
    sets: dict[str, frozenset[int]]  # the same as sets: one C-level test per condition
    regex: Regex | None
    cameras: frozenset[str] | None
    schedule: str  # "" when the rule is always active
    any_set: frozenset[int] | None  # None: the rule has no `any` phrases
    order: tuple[tuple[int, str], ...]  # (phrase number, condition), in config order
    numbers: frozenset[int]  # every phrase number of the rule
    ask: str | None = None  # the question put to the model, if any


class _Caption:
    """One caption, analysed once per evaluate: its words, its cue scopes, and the hits of every
    phrase of the rule set."""

    __slots__ = (
        "_mentions", "_regex", "_regex_text", "counted", "hits", "scopes", "table", "words",
    )  # fmt: skip

    def __init__(self, caption: str, cues: CueSet, table: _PhraseTable) -> None:
        self.words: Words = tokenize(caption)
        self.scopes: Scopes = cues.scopes(self.words)
        self.table = table
        # The hits per phrase, and the phrases with at least one mention that counts.
        self.hits, self.counted = table.find(self.words, self.scopes)
        self._mentions: dict[tuple[int, str], list[Mention]] = {}
        self._regex: dict[str, list[_Hit]] = {}
        self._regex_text: str | None = None

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

    def regex_hits(self, regex: Regex) -> list[_Hit]:
        """Return the non-empty matches of `regex` in the original caption."""
        hits = self._regex.get(regex.pattern)
        if hits is None:
            words = self.words
            if self._regex_text is None:
                self._regex_text = _SURROGATE.sub("\ufffd", words.caption)
            hits = []
            for match in regex.finditer(self._regex_text):
                start, end = match.span()
                if start == end:
                    continue
                first = bisect_right(words.ends, start)
                last = bisect_left(words.starts, end) - 1
                why = self.scopes.discarded(first, last) if first <= last else None
                hits.append((start, end, why))
            self._regex[regex.pattern] = hits
        return hits


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
        `rules[i].any[j]: ...` line per phrase, regex or cue that cannot be compiled."""
        matching = matching or MatchingConfig()
        problems: list[str] = []
        for key, kind in (("negations", "negation"), ("hedges", "hedge")):
            for j, cue in enumerate(getattr(matching, key)):
                try:
                    parse_cue(cue, kind)
                except ValueError as exc:
                    problems.append(f"matching.{key}[{j}]: {exc}")
        self.cues = CueSet() if problems else CueSet(matching.negations, matching.hedges)
        self.zone = zone_named(timezone)
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
            regex = None
            if rule.regex is not None:
                # RuleConfig checks this too; here again, for a RuleConfig built without
                # validation, so that a pattern RE2 cannot run is always a config error.
                try:
                    regex = compile_regex(rule.regex)
                except ValueError as exc:
                    problems.append(f"rules[{i}].regex: {exc}")
            compiled.append(
                _Rule(
                    rule,
                    phrases,
                    {key: frozenset(numbers) for key, numbers in phrases.items()},
                    regex,
                    frozenset(rule.cameras) if rule.cameras is not None else None,
                    _describe_schedule(rule),
                    frozenset(phrases["any"]) if phrases["any"] else None,
                    tuple((n, key) for key in _CONDITIONS for n in phrases[key]),
                    frozenset(n for key in _CONDITIONS for n in phrases[key]),
                    rule.ask,
                )
            )
        if problems:
            raise ConfigError(problems)
        self.rules: tuple[_Rule, ...] = tuple(compiled)
        self._scheduled = any(rule.schedule for rule in self.rules)
        self._without_any = [i for i, rule in enumerate(self.rules) if rule.any_set is None]
        # A rule with `ask` may match on its answer alone: always looked at.
        self._asking = [i for i, rule in enumerate(self.rules) if rule.ask]
        self._configs = [rule.config for rule in self.rules]
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

    def questions(self, camera: str | None = None) -> list[tuple[str, str]]:
        """Return (rule name, question) of the rules with `ask` that apply to `camera` (None:
        every rule with `ask`): what the prompt for its images asks."""
        return asked(self._configs, camera)

    def read_answers(self, text: str, camera: str | None = None) -> Answered:
        """Given a model's answer for an image of `camera` (None: any camera), return the
        caption without its answers object and the answers of the rules asked. A camera no
        rule asks about gets the text as it came. Bounded work on any text (answers.py)."""
        return read_answers(text, [name for name, _ in self.questions(camera)])

    def evaluate(
        self,
        caption: str,
        camera: str | None = None,
        now: datetime | None = None,
        *,
        schedules: bool = True,
        answers: Mapping[str, str] | None = None,
    ) -> list[RuleDecision]:
        """Given a caption, the camera it came from (None: ignore the rules' camera filters) and
        the time (None: now), return one decision per rule in config order, each with its
        reason and mentions. With `schedules=False` the rules' `active` and `days` are not
        applied (what `camwatch test-rules` wants). `answers` (rule name -> "yes", "no" or
        "unsure", from `read_answers`) decides the rules with `ask`; one without an answer falls
        back to its keywords. Only the first `MAX_CAPTION_CHARS` characters are looked at;
        mention offsets are in the caption as given. Takes time linear in those characters,
        whatever they hold."""
        return self._decisions(caption, camera, now, schedules, True, answers or {})

    def matching(
        self,
        caption: str,
        camera: str | None = None,
        now: datetime | None = None,
        *,
        schedules: bool = True,
        answers: Mapping[str, str] | None = None,
    ) -> list[RuleDecision]:
        """Given the same arguments as `evaluate`, return only the decisions that matched, with
        their mentions. Faster than `evaluate`: rules that cannot match are not explained."""
        return self._decisions(caption, camera, now, schedules, False, answers or {})

    def _decisions(
        self,
        caption: str,
        camera: str | None,
        now: datetime | None,
        schedules: bool,
        explain: bool,
        answers: Mapping[str, str],
    ) -> list[RuleDecision]:
        """Return the decisions of `evaluate` if `explain`, else those of `matching`."""
        local: datetime | None = None
        if schedules and self._scheduled:
            local = self.local_time(now if now is not None else datetime.now(UTC))
        text = _Caption(_capped(caption), self.cues, self._table)
        rules: Iterable[_Rule] = self.rules
        if not explain:
            # Only the rules that can match: those with an `any` phrase that counts here, and
            # those without `any` phrases.
            chosen = set(self._without_any)
            chosen.update(self._asking)
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
            elif rule.ask is not None:
                decision = _decide_asked(rule, text, explain, answers.get(name))
                if decision is not None:
                    decisions.append(decision)
            else:
                decision = _decide(rule, text, explain)
                if decision is not None:
                    decisions.append(decision)
        return decisions


def _decide_asked(
    rule: _Rule, text: _Caption, explain: bool, answer: str | None
) -> RuleDecision | None:
    """Given a rule with `ask`, an analysed caption and the model's answer (None: missing or
    unreadable), return the rule's decision. An answer decides, with `all`, `none` and
    `skip_if` still applied (`any` and `regex` are not required); without one the rule falls
    back to its keyword conditions, and does not match if it has none."""
    name = rule.config.name
    if answer is None:
        if rule.config.any or rule.config.all or rule.regex is not None:
            decision = _decide(rule, text, explain)
            if decision is None:
                return None
            return dataclasses.replace(
                decision, reason=f"ask: no answer; keywords: {decision.reason}"
            )
        if not explain:
            return None
        reason = "ask: no answer, and no any, all or regex to fall back on"
        return RuleDecision(name, False, [], reason, _mentions(rule, text, []))
    counted = text.counted
    sets = rule.sets
    failed = None
    for number in rule.phrases["all"]:
        if number not in counted:
            state = "only negated or hedged" if text.found(number) is False else "not present"
            failed = f"all: {text.table.phrases[number].text!r} {state}"
            break
    for key in ("none", "skip_if"):
        hit = next((n for n in rule.phrases[key] if n in counted), None)
        if failed is None and hit is not None:
            shown = text.table.phrases[hit].text
            failed = f"none: {shown!r} present" if key == "none" else f"skip_if: {shown!r}"
    matched = answer == "yes" and failed is None and sets["all"] <= counted
    if not matched and not explain:
        return None
    regex_hits = text.regex_hits(rule.regex) if rule.regex is not None else []
    mentions = _mentions(rule, text, regex_hits)
    if matched:
        reason = "ask: answered 'yes'"
        if rule.phrases["all"]:
            found = ", ".join(repr(text.table.phrases[n].text) for n in rule.phrases["all"])
            reason += f"; all: {found}"
        return RuleDecision(name, True, [f"ask: {rule.ask}"], reason, mentions)
    if answer != "yes":
        return RuleDecision(name, False, [], f"ask: answered {answer!r}", mentions)
    return RuleDecision(name, False, [], f"ask: answered 'yes', but {failed}", mentions)


def _mentions(rule: _Rule, text: _Caption, regex_hits: list[_Hit]) -> list[Mention]:
    """Return every mention of a rule's phrases and regex in the caption, in config order."""
    mentions: list[Mention] = []
    hits = text.hits
    if not rule.numbers.isdisjoint(hits):
        for number, key in rule.order:
            if number in hits:
                mentions += text.mentions(number, key)
    for hit in regex_hits:
        mentions.append(Mention(text.caption_text(hit), hit[0], hit[1], hit[2], "regex"))
    return mentions


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
