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
"""

from __future__ import annotations

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
