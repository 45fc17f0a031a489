"""Rules: decide which configured rules a caption matches, and explain each decision.

How a caption flows through the package. The rules are compiled once, when the `RuleSet` is
built; each caption then passes once through `words`, `cues` and `index`, and `engine` decides
every rule from what they found:

    rules (config) ──► phrases: compile each phrase ──► index: every distinct phrase, numbered,
                       ("lie+ on the {ground|floor}")    indexed by the words it can start with
                                                                        │
    caption ──► words: tokenize ──► Words ──────────────────────────────┤
                (lower case, offsets,  │                                │
                 clause breaks)        ▼                                │
                          cues: CueSet.scopes, the words each           │
                          negation or hedge covers ────── Scopes ───────┤
                          (clauses: how far a cue reaches)              ▼
                                                  index: find, in one pass, the phrases the
                                                  caption can hold; each hit counts or is
                                                  discarded by the cue that covers it
                                                                        │
                                                                        ▼
                  engine: RuleSet.matching / evaluate, per rule: camera filter, schedule
                  (in force now?), then any, all, regex (RE2), none, skip_if on the hits
                                                                        │
                                                                        ▼
                  decision: a RuleDecision per rule, with the Mentions behind it
                                                                        │
                                                                        ▼
                  explanations: explain / decision_json, for `camwatch test-rules`

Rules with `ask` (answers): the prompt of a camera such rules apply to asks their questions
(`RuleSet.questions`, `ask_paragraph`); `RuleSet.read_answers` takes the model's JSON answers off
the caption; `matching`/`evaluate` given those answers decide each asked rule by its answer (with
`all`, `none`, `skip_if`), and one left unanswered by its keywords.

A rule's regex is compiled with RE2 (`regex`): it never backtracks, so it matches in time linear
in the caption. The matcher looks at the first `MAX_CAPTION_CHARS` characters of a caption only,
and every step above is linear in them: a caption is text a person in front of a camera can
steer, and none may hold the daemon up. `MAX_CAPTION_CHARS` is exported so that the pipeline can
cap the captions it stores, logs and sends to the same length.

Import from `camwatch.rules` what `__all__` lists. The modules share some names with a leading
underscore (`_PhraseTable`, `_Hit`, ...): those are private to the package, not its API.
"""

from camwatch.rules.answers import Answered, ask_paragraph, asked, read_answers
from camwatch.rules.cues import HEDGES, NEGATIONS, PSEUDO, CueSet, cue_lists, parse_cue
from camwatch.rules.decision import Mention, RuleDecision
from camwatch.rules.engine import MAX_CAPTION_CHARS, RuleSet
from camwatch.rules.explanations import decision_json, explain
from camwatch.rules.phrases import expand_phrase, inflections, phrase_problem
from camwatch.rules.schedule import in_schedule
from camwatch.rules.words import CLAUSE, COMMA, NONE, tokenize

__all__ = [
    "CLAUSE",
    "COMMA",
    "HEDGES",
    "MAX_CAPTION_CHARS",
    "NEGATIONS",
    "NONE",
    "PSEUDO",
    "Answered",
    "CueSet",
    "Mention",
    "RuleDecision",
    "RuleSet",
    "ask_paragraph",
    "asked",
    "cue_lists",
    "decision_json",
    "expand_phrase",
    "explain",
    "in_schedule",
    "inflections",
    "parse_cue",
    "phrase_problem",
    "read_answers",
    "tokenize",
]
