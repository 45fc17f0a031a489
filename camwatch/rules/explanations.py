"""Explanations: the decisions on a caption in words, and as `test-rules --json` wants them."""

from __future__ import annotations

from typing import Any

from camwatch.rules.answers import Answered
from camwatch.rules.decision import RuleDecision


def _snippet(caption: str, start: int, end: int, width: int = 30) -> str:
    """Return the mention with up to `width` characters either side, on one line."""
    left = max(0, start - width)
    right = min(len(caption), end + width)
    before = caption[left:start]
    after = caption[end:right]
    if left > 0 and " " in before:
        before = "..." + before[before.index(" ") + 1 :]
    if right < len(caption) and " " in after:
        after = after[: after.rindex(" ")] + "..."
    text = f"{before}[{caption[start:end]}]{after}"
    return " ".join(text.split())


def explain(decisions: list[RuleDecision], caption: str, answered: Answered | None = None) -> str:
    """Given the decisions for a caption and the caption, return a human explanation: the
    caption, then per rule whether it matched and why, each mention with a snippet of where it
    is, and for each discarded one the cue that discarded it. With `answered` (the caption's
    answers to the rules' `ask` questions), a line says what was answered and what was not."""
    lines = [f"caption: {' '.join(caption.split())}"]
    if answered is not None and (answered.answers or answered.unanswered):
        said = ", ".join(f"{rule}={answer}" for rule, answer in answered.answers.items())
        missing = ", ".join(answered.unanswered)
        parts = [f"answers: {said or 'none'}"]
        if missing:
            where = "no answer for" if answered.found else "no answers object; unanswered"
            parts.append(f"{where}: {missing} (keywords decide)")
        lines.append("; ".join(parts))
    for decision in decisions:
        verdict = "MATCH" if decision.matched else "no match"
        lines.append(f"{decision.rule}: {verdict} ({decision.reason})")
        for m in sorted(decision.mentions, key=lambda m: (m.start, m.condition)):
            status = "counted" if m.discarded is None else f"discarded, {m.discarded}"
            where = _snippet(caption, m.start, m.end)
            lines.append(f"  {m.condition} {m.phrase!r} at {m.start}-{m.end} {status}: {where}")
    return "\n".join(lines)


def decision_json(
    caption: str, decisions: list[RuleDecision], answered: Answered | None = None
) -> dict[str, Any]:
    """Given a caption and its decisions, return the `test-rules --json` object:
    `{"caption": ..., "matched": [{"rule": ..., "phrases": [...]}], "discarded": [...]}`, where
    each discarded entry is `{"rule", "condition", "phrase", "start", "end", "why"}`. With
    `answered`, also `"answers"` (rule -> "yes" | "no" | "unsure") and `"unanswered"` (the
    rules asked without a readable answer, decided by their keywords)."""
    extra: dict[str, Any] = {}
    if answered is not None and (answered.answers or answered.unanswered):
        extra = {"answers": dict(answered.answers), "unanswered": list(answered.unanswered)}
    return {
        "caption": caption,
        "matched": [{"rule": d.rule, "phrases": list(d.phrases)} for d in decisions if d.matched],
        "discarded": [
            {
                "rule": d.rule,
                "condition": m.condition,
                "phrase": m.phrase,
                "start": m.start,
                "end": m.end,
                "why": m.discarded,
            }
            for d in decisions
            for m in d.mentions
            if m.discarded is not None
        ],
        **extra,
    }
