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
                  (in force now?), then any, all, regex, none, skip_if on the hits
                                                                        │
                                                                        ▼
                  decision: a RuleDecision per rule, with the Mentions behind it
                                                                        │
                                                                        ▼
                  explanations: explain / decision_json, for `camwatch test-rules`

Import from `camwatch.rules` what `__all__` lists. The modules share some names with a leading
underscore (`_PhraseTable`, `_Hit`, ...): those are private to the package, not its API.
"""

from camwatch.rules.cues import HEDGES, NEGATIONS, PSEUDO, CueSet, cue_lists, parse_cue
from camwatch.rules.decision import Mention, RuleDecision
from camwatch.rules.engine import RuleSet
from camwatch.rules.explanations import decision_json, explain
from camwatch.rules.phrases import expand_phrase, inflections, phrase_problem
from camwatch.rules.schedule import in_schedule
from camwatch.rules.words import CLAUSE, COMMA, NONE, tokenize

__all__ = [
    "CLAUSE",
    "COMMA",
    "HEDGES",
    "NEGATIONS",
    "NONE",
    "PSEUDO",
    "CueSet",
    "Mention",
    "RuleDecision",
    "RuleSet",
    "cue_lists",
    "decision_json",
    "expand_phrase",
    "explain",
    "in_schedule",
    "inflections",
    "parse_cue",
    "phrase_problem",
    "tokenize",
]
