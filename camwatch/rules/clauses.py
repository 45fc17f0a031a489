"""How far a cue reaches: where a forward scope ends, and which subject a backward cue covers.

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

All of it takes time linear in the caption however many cues it holds: "no no no ... no one is
lying on the ground" has a cue at every word, and scanning each one's clause afresh would take
time quadratic in the caption, which whoever stands in front of a camera can make long. So a
forward scan is shared by every scope that starts within it (`_Reach`), what a cue needs is
looked up (`_Follows`), and a backward scope is a few words by construction (`MAX_BACKWARD`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from camwatch.rules.words import CLAUSE, COMMA, NONE, Words, _words

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


class _Reach:
    """Where the forward scopes of one caption end, each word scanned once however many cues
    the caption holds.

    What stops a scope is a property of the word it stops at (a clause end, "but", a comma or
    "and" that starts a clause), except a place, which stops only a negation and only after its
    first word. So every scope that starts in a stretch already scanned ends where that scan
    ends, or for a negation at the first place after its start; `CueSet.scopes` asks in the order
    of the words, and the scan goes on from where it got to. Scanning each scope afresh would
    take time quadratic in the caption on "no no no ... no smoke"."""

    __slots__ = ("_done", "_from", "_places", "_to", "_words")

    def __init__(self, words: Words) -> None:
        self._words = words
        # The stretch scanned so far: from `_from` up to `_to` no word stops a scope; `_to` is
        # where they all stop if `_done`. `_places` are the places in the stretch.
        self._from = self._to = -1
        self._done = False
        self._places: list[int] = []

    def end(self, start: int, negation: bool) -> int:
        """Return the index just past the last word a forward cue ending at `start` covers; a
        `negation` also stops before a place ("no one is in the car" keeps "the car")."""
        if not self._from <= start <= self._to:
            self._from = self._to = start
            self._done = False
            self._places = []
        places = self._places
        if negation:
            k = bisect_right(places, start)
            if k < len(places):
                return places[k]
        k = self._to
        if self._done:
            return k
        words = self._words
        texts, breaks = words.texts, words.breaks
        n = len(texts)
        while k < n:
            brk = breaks[k]
            if brk == CLAUSE:
                break
            word = texts[k]
            if word in TERMINATORS:
                break
            if brk == COMMA and _starts_clause(words, k):
                break
            if word == "and" and _starts_clause(words, k + 1):
                break
            # "none of the people in the image are lying ...": the image is not a place in the
            # scene, so the scope goes on.
            if word in LOCATIVES and not (k + 2 < n and texts[k + 2] in FRAMES):
                places.append(k)
                if negation and k > start:
                    self._to = k + 1
                    return k
            k += 1
        self._to = k
        self._done = True
        return k


class _Follows:
    """Whether the words a cue needs ("could be ... or") follow it in its clause, for one
    caption: where clauses start and where each needed sequence occurs, found once, so that a
    caption full of such cues ("either smoke either smoke ...") takes linear time."""

    __slots__ = ("_clauses", "_found", "_words")

    def __init__(self, words: Words) -> None:
        self._words = words
        self._clauses = [k for k, brk in enumerate(words.breaks) if brk == CLAUSE]
        self._found: dict[tuple[str, ...], list[int]] = {}

    def __call__(self, needed: tuple[str, ...], start: int) -> bool:
        """Return whether `needed` occurs from word `start` on, before the clause ends."""
        found = self._found.get(needed)
        if found is None:
            texts = self._words.texts
            size, first = len(needed), needed[0]
            found = [k for k, w in enumerate(texts) if w == first and texts[k : k + size] == needed]
            self._found[needed] = found
        k = bisect_left(found, start)
        if k == len(found):
            return False
        # Before the next clause starts; one that starts at the needed words starts first.
        c = bisect_left(self._clauses, start)
        return c == len(self._clauses) or found[k] < self._clauses[c]


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
    # At most MAX_BACKWARD of them, as for the subject: no caption stacks more, and so a scope
    # costs the same on "is is is ... is not visible".
    while (
        end > max(0, cue_start - MAX_BACKWARD)
        and breaks[end] == NONE
        and texts[end - 1] in AUXILIARIES
    ):
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
