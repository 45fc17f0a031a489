"""What the rules decide: whether one rule matched one caption, and every mention behind it."""

from __future__ import annotations

from dataclasses import dataclass, field


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
