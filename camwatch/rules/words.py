"""Words of a caption: cut once into lower-case words, with their offsets and the breaks between.

A caption is cut into words once (`tokenize`): lower case, with every run of punctuation (hyphens
included) and white space a single word break. Contractions are spelt out, so that one cue covers
every spelling: "doesn't" -> "does not", "can't" and "cannot" -> "can not", "it's" -> "it is",
"they're" -> "they are". A possessive "'s" stays the word "s". Each word keeps the character
offsets it came from in the original caption.

Phrases (`phrases`) and cues (`cues`) are cut into words the same way, so that they compare word
for word with the caption.
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
from dataclasses import dataclass


def _words(text: str) -> frozenset[str]:
    """Given words separated by spaces, return them as a set."""
    return frozenset(text.split())


# Break before a word: none, a comma, or a clause end.
NONE, COMMA, CLAUSE = 0, 1, 2
_CLAUSE_CHARS = frozenset(".;:!?()[]{}\n\r\u2014\u2013\u2026")
_SPLIT_RE = re.compile(r"(\w+)")
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
    cannots = _indices(texts, "cannot")
    if not cannots:
        return texts, starts, ends, breaks
    # Rebuilt in one pass: inserting each "can not" in place would move every word after it,
    # time quadratic in a caption that repeats "cannot".
    out_texts: list[str] = []
    out_starts: list[int] = []
    out_ends: list[int] = []
    out_breaks: list[int] = []
    done = 0
    for i in cannots:
        start = starts[i]
        out_texts += texts[done:i]
        out_texts += ("can", "not")
        out_starts += starts[done:i]
        out_starts += (start, start + 3)
        out_ends += ends[done:i]
        out_ends += (start + 3, ends[i])
        out_breaks += breaks[done:i]
        out_breaks += (breaks[i], NONE)
        done = i + 1
    return (
        out_texts + texts[done:], out_starts + starts[done:], out_ends + ends[done:],
        out_breaks + breaks[done:],
    )  # fmt: skip


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
