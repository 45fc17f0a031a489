"""Words of a caption, and which of them a negation or hedge cue takes out of play.

A caption is cut into words once (`tokenize`): lower case, with every run of punctuation (hyphens
included) and white space a single word break. Contractions are spelt out, so that one cue covers
every spelling: "doesn't" -> "does not", "can't" and "cannot" -> "can not", "it's" -> "it is",
"they're" -> "they are". A possessive "'s" stays the word "s". Each word keeps the character
offsets it came from in the original caption.

A cue is a few words with a direction, written with "..." where the covered text goes:

    "no one"              forward: covers the words after it, to the end of the clause
    "... is not visible"  backward: covers the noun phrase before it ("smoke is not visible")
    "could be ... or"     forward, but only when "or" follows in the same clause

Where several cues start at the same word the longest wins, so "does not appear to" is named in an
explanation rather than "not", and a pseudo-cue such as "not only" keeps "not" from negating.

A forward scope ends at the end of its clause: at . ; : ! ? ( ) … — and a line break; at "but",
"however", "although", "though", "yet", "while" and the other `TERMINATORS`; at a comma or "and"
that starts a new clause (the words after it, up to the next comma, hold a finite verb such as "is"
or "has", or begin with "which", "who", ...). A comma that only continues a list ("no smoke, fire,
or flames") keeps the scope open, and so does "or". So "a person lying on the ground, not moving"
keeps "lying on the ground", and "no smoke, but a person is lying on the ground" negates "smoke"
only. A negation (not a hedge) also stops before a place: "no one is in the car" negates who is
there, not the car, while "no one is lying on the ground" still negates "lying" and so every
mention that starts with it. A hedge questions its whole clause: "it is unclear whether the person
near the car has collapsed".

A backward scope reaches back over the subject it follows: it skips the auxiliaries next to the
cue ("is", "are", "can" ...), stops at a clause end, a comma, a finite verb, a relative word, a
possessive "'s" or after `MAX_BACKWARD` words, keeps to the part after an "and" that follows a
clause of its own, and is cut before the first preposition, so in "the face of the person is not
visible" only "the face" is covered.

Everything here is a heuristic a reader can follow; where it must guess it guesses towards
counting a mention, because a missed alert costs more than a false one.
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

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


def _words(text: str) -> frozenset[str]:
    """Given words separated by spaces, return them as a set."""
    return frozenset(text.split())


# Words that end a forward scope wherever they stand.
TERMINATORS = _words(
    "but however although though yet while whilst whereas except besides apart aside "
    "instead only just meanwhile"
)
# Words that start a new clause after a comma.
SUBORDINATORS = _words("which who whose whom where when because since so then")
# Finite verbs and auxiliaries: a comma or "and" followed by one of these starts a new clause.
VERBS = _words(
    "is are was were am has have had does do did can could will would may might shall should "
    "must appears appear appeared seems seem seemed looks look looked shows show showed sits sat "
    "stands stood lies lay remains remain holds held wears wore carries carried walks walked "
    "runs ran contains includes"
)
# Auxiliaries a backward cue absorbs: "smoke IS not visible", "a gun CAN not be seen".
AUXILIARIES = _words("is are was were be been being am can could will would may might")
RELATIVES = _words("which who whose whom that where when")
PREPOSITIONS = _words(
    "of in on at near by with from inside outside behind under beside next around along across "
    "into onto over through above below beneath"
)
# Where a negation's scope stops: what follows is a place the caption presupposes exists.
LOCATIVES = _words(
    "in inside on at near beside behind around by next under outside across along against "
    "beneath above"
)
# "in the image", "in this picture": where the caption looks from, not a place in the scene.
FRAMES = _words("image picture photo photograph frame scene shot footage view video")
MAX_BACKWARD = 8

# Break before a word: none, a comma, or a clause end.
NONE, COMMA, CLAUSE = 0, 1, 2
_CLAUSE_CHARS = frozenset(".;:!?()[]{}\n\r\u2014\u2013\u2026")
_SPLIT_RE = re.compile(r"(\w+)")
_APOSTROPHES = frozenset("'\u2019")
_IS_AFTER = _words("it that there here what who where he she this")
_CLITICS = {"re": "are", "ve": "have", "ll": "will", "m": "am", "d": "would"}
_NOT_BASES = {"can": "can", "won": "will", "ain": "is", "shan": "shall"}


@dataclass(frozen=True, slots=True)
class Words:
    """A caption cut into normalised words; parallel tuples, one entry per word.

    `breaks[i]` is what stands between word i-1 and word i (NONE, COMMA or CLAUSE; CLAUSE for the
    first word). `norm` is the words joined by single spaces and `norm_starts[i]` where word i
    starts in it, so a regex over `norm` finds whole words and phrases.
    """

    caption: str
    texts: tuple[str, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    breaks: tuple[int, ...]
    norm: str
    norm_starts: tuple[int, ...]


@functools.lru_cache(maxsize=512)
def _gap_break(gap: str) -> int:
    """Given the text between two words, return the break it makes: NONE, COMMA or CLAUSE."""
    if gap == " " or not gap:
        return NONE
    if not _CLAUSE_CHARS.isdisjoint(gap) or " - " in gap or "--" in gap:
        return CLAUSE
    return COMMA if "," in gap else NONE


def tokenize(text: str) -> Words:
    """Given a caption (or a phrase or cue), return its normalised words with their offsets."""
    lowered = text.lower()
    # lower() keeps every offset unless some character grows ("İ" -> "i̇"); then split the
    # original and lower word by word.
    aligned = len(lowered) == len(text)
    parts = _SPLIT_RE.split(lowered if aligned else text)
    gaps = parts[0::2]  # n + 1 gaps around n words
    texts: list[str] = parts[1::2] if aligned else [w.lower() for w in parts[1::2]]
    offsets = list(itertools.accumulate(map(len, parts), initial=0))
    starts = offsets[1:-1:2]
    ends = offsets[2::2]
    breaks = list(map(_gap_break, gaps[:-1]))  # the cache answers in C for the common gaps
    if texts:
        breaks[0] = CLAUSE
    if "'" in text or "\u2019" in text or "cannot" in lowered:
        texts, starts, ends, breaks = _spell_out(texts, gaps, starts, ends, breaks)
    # Word i starts after the lengths of the words before it and one space per word.
    lengths = itertools.accumulate(map(len, texts), initial=0)
    norm_starts = tuple(map(operator.add, lengths, range(len(texts))))
    return Words(
        text, tuple(texts), tuple(starts), tuple(ends), tuple(breaks), " ".join(texts),
        norm_starts,
    )  # fmt: skip


def _spell_out(
    texts: list[str], gaps: list[str], starts: list[int], ends: list[int], breaks: list[int]
) -> tuple[list[str], list[int], list[int], list[int]]:
    """Given words and the gaps before them, return them with contractions spelt out:
    "doesn't" -> "does not", "it's" -> "it is", "cannot" -> "can not"."""
    for i in sorted(_indices(gaps, "'") + _indices(gaps, "\u2019")):
        if i == 0 or i >= len(texts):
            continue
        word, previous = texts[i], texts[i - 1]
        breaks[i] = NONE
        if word == "t" and previous.endswith("n") and len(previous) > 1:
            texts[i - 1] = _NOT_BASES.get(previous, previous[:-1])
            texts[i] = "not"
        elif word == "s" and previous in _IS_AFTER:
            texts[i] = "is"
        elif word in _CLITICS:
            texts[i] = _CLITICS[word]
    # Backwards, so that inserting a word does not shift the ones still to do.
    for i in reversed(_indices(texts, "cannot")):
        start = starts[i]
        texts[i : i + 1] = ["can", "not"]
        starts[i : i + 1] = [start, start + 3]
        ends[i : i + 1] = [start + 3, ends[i]]
        breaks[i : i + 1] = [breaks[i], NONE]
    return texts, starts, ends, breaks


def _indices(items: list[str], value: str) -> list[int]:
    """Return where `value` occurs in `items` (list.index scans in C; the hits are few)."""
    found = []
    i = -1
    try:
        while True:
            i = items.index(value, i + 1)
            found.append(i)
    except ValueError:
        return found


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
        skip_to = 0
        for i in [i for i, word in enumerate(texts) if word in firsts]:
            if i < skip_to:
                continue
            candidates = pairs.get((texts[i], texts[i + 1])) if i + 1 < n else None
            for cue in candidates or singles.get(texts[i], ()):
                end = i + len(cue.words)
                if end > n or texts[i:end] != cue.words or CLAUSE in words.breaks[i + 1 : end]:
                    continue
                if cue.needs and not _follows(words, cue.needs, end):
                    continue
                if cue.kind != "pseudo":
                    if cue.direction == "forward":
                        stop = _forward_end(words, end, cue.kind == "negation")
                        hits.append(CueHit(cue, i, end, end, stop))
                    else:
                        first, stop = _backward_scope(words, i)
                        hits.append(CueHit(cue, i, end, first, stop))
                # A cue's own words are not looked at again: "not" inside "can not be seen".
                skip_to = end
                break
        forward: list[str | None] = [None] * n
        backward: list[str | None] = [None] * n
        # Latest first, so that where scopes overlap the earliest cue is the one named.
        for hit in reversed(hits):
            marks = forward if hit.cue.direction == "forward" else backward
            marks[hit.scope_start : hit.scope_end] = [hit.why] * (hit.scope_end - hit.scope_start)
        return Scopes(tuple(hits), tuple(forward), tuple(backward))


def _follows(words: Words, needed: tuple[str, ...], start: int) -> bool:
    """Return whether `needed` occurs from word `start` on, before the clause ends."""
    texts, breaks = words.texts, words.breaks
    size = len(needed)
    for k in range(start, len(texts) - size + 1):
        if breaks[k] == CLAUSE:
            return False
        if texts[k : k + size] == needed:
            return True
    return False


def _starts_clause(words: Words, k: int) -> bool:
    """Return whether the words from k up to the next comma or clause end read as a clause of
    their own (a finite verb, or a leading relative word) rather than the next item of a list."""
    texts, breaks = words.texts, words.breaks
    n = len(texts)
    if k >= n:
        return False
    if texts[k] in SUBORDINATORS:
        return True
    if texts[k] in ("or", "nor"):
        # ", or simply resting" continues the alternatives a hedge or negation covers.
        return False
    m = k
    while m < n and (m == k or breaks[m] == NONE) and texts[m] not in TERMINATORS:
        if texts[m] in VERBS:
            return True
        if m > k and texts[m] in ("and", "or", "nor"):
            # "no people, vehicles or packages are visible": the last items of a list.
            return False
        m += 1
    return False


def _forward_end(words: Words, start: int, locative: bool = False) -> int:
    """Return the index just past the last word a forward cue ending at `start` covers; with
    `locative`, the scope also ends before a place ("no one is in the car" keeps "the car")."""
    texts, breaks = words.texts, words.breaks
    n = len(texts)
    k = start
    while k < n:
        brk = breaks[k]
        if brk == CLAUSE:
            break
        word = texts[k]
        if word in TERMINATORS:
            break
        # "none of the people in the image are lying ...": the image is not a place in the
        # scene, so the scope goes on.
        framed = k + 2 < n and texts[k + 2] in FRAMES
        if locative and k > start and word in LOCATIVES and not framed:
            break
        if brk == COMMA and _starts_clause(words, k):
            break
        if word == "and" and _starts_clause(words, k + 1):
            break
        k += 1
    return k


def _walk_back(words: Words, end: int) -> int:
    """Return where the stretch of words ending at `end` starts: back to a clause end, comma,
    finite verb, relative word, possessive "'s" or `MAX_BACKWARD` words."""
    texts, breaks = words.texts, words.breaks
    start = end
    limit = max(0, end - MAX_BACKWARD)
    while start > limit and breaks[start] == NONE:
        word = texts[start - 1]
        if word in TERMINATORS or word in VERBS or word in RELATIVES or word == "s":
            break
        start -= 1
    return start


def _backward_scope(words: Words, cue_start: int) -> tuple[int, int]:
    """Return the word range a backward cue starting at `cue_start` covers: its subject."""
    texts, breaks = words.texts, words.breaks
    end = cue_start
    while end > 0 and breaks[end] == NONE and texts[end - 1] in AUXILIARIES:
        end -= 1
    start = _walk_back(words, end)
    # "the package that was on the porch is no longer visible": the subject is the head noun
    # before the relative clause, not the clause.
    relative = start - 2
    if (
        relative >= 0
        and texts[relative] in RELATIVES
        and texts[relative + 1] in VERBS
        and breaks[relative + 1] == breaks[start] == NONE
    ):
        head = _walk_back(words, relative)
        if head < relative:
            start, end = head, relative
    # "a person is lying on the ground and smoke is not visible": the subject is after "and".
    for k in range(end - 1, start - 1, -1):
        if texts[k] in ("and", "or") and (
            k - start > 3 or any(_is_participle(w) for w in texts[start:k])
        ):
            start = k + 1
            break
    for k in range(start + 1, end):
        if texts[k] in PREPOSITIONS:
            return start, k
    return start, end


_ING_NOUNS = _words(
    "clothing building ceiling railing awning lighting parking painting morning evening "
    "ring string spring wing king thing something nothing anything everything"
)


def _is_participle(word: str) -> bool:
    return len(word) > 4 and word.endswith("ing") and word not in _ING_NOUNS


def cue_lists() -> dict[str, Sequence[str]]:
    """Return the default cue lists by kind, for documentation and `camwatch test-rules`."""
    return {"negations": NEGATIONS, "hedges": HEDGES, "pseudo": PSEUDO}
