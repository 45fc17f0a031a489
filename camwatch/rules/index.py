"""The phrase index: every distinct phrase of a rule set, compiled once and found in one pass.

Each phrase is numbered once however many rules and conditions list it. For a caption, only a
phrase that can start with one of the caption's words, and whose other required words are all
there, is searched for at all; each place it is found is a hit, which counts unless a cue covers
it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from camwatch.rules.cues import Scopes
from camwatch.rules.phrases import _Phrase, compile_phrase
from camwatch.rules.words import Words

_Hit = tuple[int, int, str | None]  # start, end (characters of the caption), why discarded


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
        norm_starts, starts, ends = words.norm_starts, words.starts, words.ends
        forward, backward = scopes.forward, scopes.backward
        # Every word follows a space in `padded`. A phrase that can start with a `word*` begins
        # with that space (`compile_phrase`), so it only matches where a word starts; any other
        # begins with its first word, which the regex engine skips ahead to in C, and a match
        # inside a word is looked past here. Either way, in `norm` the match's first word
        # starts at `start` (one less than in `padded` when it begins with the word) and its
        # last character is at `end - 2`.
        padded = " " + words.norm
        for number in candidates:
            phrase = phrases[number]
            if not phrase.required <= vocabulary:
                continue
            search = phrase.pattern.search
            found: list[_Hit] = []
            position = 0
            while (matched := search(padded, position)) is not None:
                start, end = matched.span()
                if padded[start] != " ":
                    if padded[start - 1] != " ":
                        position = start + 1
                        continue
                    start -= 1
                position = end
                first = bisect_right(norm_starts, start) - 1
                last = bisect_right(norm_starts, end - 2) - 1
                why = forward[first] or backward[last]
                found.append((starts[first], ends[last], why))
                if why is None:
                    counted.add(number)
            if found:
                hits[number] = found
        return hits, frozenset(counted)
