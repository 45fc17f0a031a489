"""Negation and hedge cues: the default lists, their syntax, and where a caption holds them.

A cue is a few words with a direction, written with "..." where the covered text goes:

    "no one"              forward: covers the words after it, to the end of the clause
    "... is not visible"  backward: covers the noun phrase before it ("smoke is not visible")
    "could be ... or"     forward, but only when "or" follows in the same clause

Where several cues start at the same word the longest wins, so "does not appear to" is named in an
explanation rather than "not", and a pseudo-cue such as "not only" keeps "not" from negating.

`CueSet.scopes` finds every cue of a caption in one pass over its words (`words`) and marks the
words each one covers; how far that is, is `clauses`' job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from camwatch.rules.clauses import _backward_scope, _Follows, _Reach
from camwatch.rules.words import CLAUSE, Words, tokenize

CueKind = Literal["negation", "hedge", "pseudo"]

# The default cues. Users add to the first two with `matching.negations` and `matching.hedges`.
NEGATIONS: tuple[str, ...] = (
    "no",
    "not",
    "never",
    "none",
    "none of",
    "nothing",
    "nobody",
    "no one",
    "noone",
    "neither",
    "nor",
    "without",
    "no sign of",
    "no signs of",
    "there is no sign of",
    "there are no signs of",
    "no evidence of",
    "no indication of",
    "no trace of",
    "does not appear to",
    "do not appear to",
    "did not appear to",
    "does not seem to",
    "do not see",
    "does not show",
    "can not see",
    "unable to see",
    "absence of",
    "lack of",
    "free of",
    "devoid of",
    "rather than",
    "instead of",
    "... not visible",
    "... not present",
    "... not seen",
    "... not shown",
    "... not detected",
    "... not in view",
    "... no longer visible",
    "... no longer present",
    "... absent",
    "... nowhere to be seen",
    "... gone",
    "... no longer there",
    "... can not be seen",
)

HEDGES: tuple[str, ...] = (
    "it is unclear whether",
    "it is unclear if",
    "unclear whether",
    "unclear if",
    "unclear what",
    "not clear whether",
    "not clear if",
    "impossible to determine if",
    "impossible to determine whether",
    "impossible to determine",
    "impossible to tell if",
    "impossible to tell whether",
    "impossible to tell",
    "impossible to say",
    "hard to tell if",
    "hard to tell whether",
    "hard to tell",
    "hard to say",
    "difficult to tell",
    "difficult to determine",
    "difficult to say",
    "can not tell if",
    "can not tell whether",
    "can not tell",
    "can not determine",
    "can not be sure",
    "can not confirm",
    "unable to determine",
    "unable to tell",
    "unable to confirm",
    "not possible to determine",
    "not sure if",
    "not sure whether",
    "not sure",
    "uncertain whether",
    "uncertain if",
    "no way to tell",
    "no way of knowing",
    "may or may not",
    "might or might not",
    "may be",
    "might be",
    "what could be",
    "could be ... or",
    "either ... or",
    "whether",
    "possibly",
    "perhaps",
    "maybe",
    "potentially",
    "... unclear",
    "... not clear",
    "... uncertain",
    "... can not be determined",
    "... can not be confirmed",
    "... can not be ruled out",
)

# Cues that look like negations but are not; they win over "not"/"no" by being longer.
PSEUDO: tuple[str, ...] = (
    "not only",
    "not just",
    "not far",
    "no doubt",
    "without doubt",
    "without a doubt",
    "nothing but",
)


@dataclass(frozen=True, slots=True)
class Cue:
    """One cue: `words` to find, its `direction`, and `needs`, words that must follow it in the
    same clause for it to apply ("could be ... or")."""

    text: str
    kind: CueKind
    words: tuple[str, ...]
    direction: Literal["forward", "backward"]
    needs: tuple[str, ...] = ()


def parse_cue(text: str, kind: CueKind) -> Cue:
    """Given a cue as written ("no one", "... is not visible", "could be ... or"), return the Cue.
    Raise ValueError if it has no words or more than one "..." between words."""
    parts = [tokenize(part).texts for part in text.split("...")]
    if len(parts) == 1 and parts[0]:
        return Cue(text, kind, parts[0], "forward")
    if len(parts) == 2 and not parts[0] and parts[1]:
        return Cue(text, kind, parts[1], "backward")
    if len(parts) == 2 and parts[0] and parts[1]:
        return Cue(text, kind, parts[0], "forward", parts[1])
    raise ValueError(
        f'expected words with at most one \'...\' ("no one", "... is not visible",'
        f' "could be ... or"), got {text!r}'
    )


@dataclass(frozen=True, slots=True)
class CueHit:
    """A cue found in a caption: its words are `start`..`end` (word indices, end exclusive) and it
    covers the words `scope_start`..`scope_end`."""

    cue: Cue
    start: int
    end: int
    scope_start: int
    scope_end: int

    @property
    def why(self) -> str:
        """Return the reason a covered mention is discarded, e.g. "negated by 'no one'"."""
        verb = "negated" if self.cue.kind == "negation" else "hedged"
        return f"{verb} by {self.cue.text!r}"


@dataclass(frozen=True, slots=True)
class Scopes:
    """Where the cues of one caption reach: `forward[i]` is the reason a mention starting at word i
    is discarded, `backward[i]` the reason for one ending at word i (None: it counts)."""

    hits: tuple[CueHit, ...]
    forward: tuple[str | None, ...]
    backward: tuple[str | None, ...]

    def discarded(self, first: int, last: int) -> str | None:
        """Given a mention's first and last word index, return why it does not count, or None."""
        return self.forward[first] or self.backward[last]


class CueSet:
    """The cues in force, indexed by their first words; finds every cue's scope in one pass over
    a caption's words."""

    def __init__(self, negations: Iterable[str] = (), hedges: Iterable[str] = ()) -> None:
        """Given user-added negation and hedge cues, build the set with the defaults. Raise
        ValueError naming the cue if one cannot be parsed."""
        cues: list[Cue] = []
        for kind, texts in (
            ("negation", (*NEGATIONS, *negations)),
            ("hedge", (*HEDGES, *hedges)),
            ("pseudo", PSEUDO),
        ):
            cues.extend(parse_cue(text, kind) for text in texts)  # type: ignore[arg-type]
        # Indexed by first word, and by first two words, so that at a word such as "not" only
        # the cues that can still match are compared. Longest first, so the most specific cue
        # is the one named; the sort is stable, so between equal lengths the earlier (default,
        # then user) cue wins.
        singles: dict[str, list[Cue]] = {}
        pairs: dict[tuple[str, str], list[Cue]] = {}
        for cue in cues:
            if len(cue.words) == 1:
                singles.setdefault(cue.words[0], []).append(cue)
            else:
                pairs.setdefault((cue.words[0], cue.words[1]), []).append(cue)
        for (first, _), candidates in pairs.items():
            candidates.sort(key=lambda c: -len(c.words))
            candidates += singles.get(first, [])
        self.cues: tuple[Cue, ...] = tuple(cues)
        self._singles = singles
        self._pairs = pairs
        self._firsts = frozenset(singles).union(first for first, _ in pairs)

    def scopes(self, words: Words) -> Scopes:
        """Given a caption's words, return every cue found and the words each one covers."""
        texts = words.texts
        n = len(texts)
        hits: list[CueHit] = []
        firsts, pairs, singles = self._firsts, self._pairs, self._singles
        # Both take time linear in the caption however many cues it holds (see `clauses`).
        reach = _Reach(words)
        follows: _Follows | None = None
        # Where scopes overlap the earliest cue is the one named. Forward scopes start in the
        # order of their cues, so the words marked so far are a stretch up to `marked` from any
        # later start: each word is marked once, not once per cue that covers it.
        forward: list[str | None] = [None] * n
        marked = 0
        backward_hits: list[CueHit] = []
        skip_to = 0
        for i in [i for i, word in enumerate(texts) if word in firsts]:
            if i < skip_to:
                continue
            candidates = pairs.get((texts[i], texts[i + 1])) if i + 1 < n else None
            for cue in candidates or singles.get(texts[i], ()):
                end = i + len(cue.words)
                if end > n or texts[i:end] != cue.words or CLAUSE in words.breaks[i + 1 : end]:
                    continue
                if cue.needs:
                    follows = follows or _Follows(words)
                    if not follows(cue.needs, end):
                        continue
                if cue.kind != "pseudo":
                    if cue.direction == "forward":
                        stop = reach.end(end, cue.kind == "negation")
                        hit = CueHit(cue, i, end, end, stop)
                        start = end if end > marked else marked
                        if start < stop:
                            forward[start:stop] = [hit.why] * (stop - start)
                            marked = stop
                    else:
                        first, stop = _backward_scope(words, i)
                        hit = CueHit(cue, i, end, first, stop)
                        backward_hits.append(hit)
                    hits.append(hit)
                # A cue's own words are not looked at again: "not" inside "can not be seen".
                skip_to = end
                break
        # A backward scope is a few words (`clauses.MAX_BACKWARD`): latest first, so that the
        # earliest cue marks last.
        backward: list[str | None] = [None] * n
        for hit in reversed(backward_hits):
            size = hit.scope_end - hit.scope_start
            backward[hit.scope_start : hit.scope_end] = [hit.why] * size
        return Scopes(tuple(hits), tuple(forward), tuple(backward))


def cue_lists() -> dict[str, Sequence[str]]:
    """Return the default cue lists by kind, for documentation and `camwatch test-rules`."""
    return {"negations": NEGATIONS, "hedges": HEDGES, "pseudo": PSEUDO}
