"""Tokens per local day and camera, and the pauses that were announced (budget, credits)."""

from __future__ import annotations

from camwatch.store.database import Database
from camwatch.store.outbox import queue_alert
from camwatch.store.records import AlertCandidate


class Costs(Database):
    """What captioning cost, and which cost pauses have had their alert."""

    def tokens_on(self, day: str) -> int:
        """Return the tokens counted on a local day (YYYY-MM-DD), every camera together."""
        rows = self._read("SELECT COALESCE(SUM(total), 0) FROM token_usage WHERE day = ?", (day,))
        return int(rows[0][0])

    def announce_pause(self, kind: str, period: str, alert: AlertCandidate) -> bool:
        """Queue `alert` unless this pause (`kind`: budget or credits; `period`: which one) was
        announced before, in one transaction. Return whether it was queued now."""
        now = self._clock()
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO pauses (kind, period, event_id, at) VALUES (?, ?, ?, ?)",
                (kind, period, alert.event_id, now),
            )
            if cur.rowcount == 0:
                return False
            queue_alert(db, alert, None, now)
            return True

    def end_pauses(self, kind: str) -> int:
        """Forget the announced pauses of `kind` (captioning resumed): the next one is announced
        again. Return how many there were."""
        with self._tx() as db:
            return db.execute("DELETE FROM pauses WHERE kind = ?", (kind,)).rowcount
