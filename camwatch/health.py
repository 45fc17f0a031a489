"""`/healthz`: is the daemon doing its job, and if not, what is wrong, in a few words each.

Degraded while captioning is paused (a bad key, no credits), while a camera's folder is
unavailable, while an alert has waited more than UNDELIVERED_LIMIT_S for its target, or while
the state database cannot be read. An API outage is not a problem of its own here: images wait
and are captioned when it ends, and an alert it delays shows as undelivered.
"""

from __future__ import annotations

from dataclasses import dataclass

from camwatch.state_view import Look

UNDELIVERED_LIMIT_S = 300.0


@dataclass(frozen=True)
class Health:
    """The answer of /healthz."""

    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, object]:
        return {"status": "ok" if self.ok else "degraded", "problems": self.problems}


def health(look: Look) -> Health:
    """Given a look at the service, return its health."""
    problems: list[str] = []
    if look.gate == "paused":
        problems.append(f"captioning paused: {look.gate_reason or 'no reason given'}")
    for camera in look.cameras:
        if camera.mode is None:
            problems.append(f"camera {camera.name} unavailable: {camera.reason or 'not watched'}")
    if look.database_error is not None:
        problems.append(f"state database unreadable: {look.database_error}")
    for backlog in look.backlogs:
        waited = look.at - backlog.oldest_at
        if waited > UNDELIVERED_LIMIT_S:
            alerts = "1 alert" if backlog.pending == 1 else f"{backlog.pending} alerts"
            problems.append(
                f"{backlog.kind} {backlog.target}: {alerts} undelivered, the oldest for"
                f" {_age(waited)}"
            )
    return Health(problems)


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600)}h"
