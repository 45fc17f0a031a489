"""The alert outbox: one row per alert and target until delivered, dead-lettered or expired;
and the silent-camera state, whose alerts go through it too."""

from __future__ import annotations

import json
import sqlite3

from camwatch.store.database import Database
from camwatch.store.records import AlertCandidate, OutboxRow


def queue_alert(
    db: sqlite3.Connection, alert: AlertCandidate, image_id: int | None, now: float
) -> None:
    """Put one alert in the outbox, a row per target (inside the caller's transaction)."""
    for kind, target in alert.targets:
        body = alert.messages.get(target, alert.body) if kind == "notify" else alert.body
        db.execute(
            "INSERT OR IGNORE INTO alerts (event_id, image_id, rule, camera, target_kind, target,"
            " body, state, next_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            (alert.event_id, image_id, alert.rule, alert.camera, kind, target, body, now, now),
        )


def _drop_attachment(db: sqlite3.Connection, alert_id: int) -> None:
    """Remove the image bytes stored with a notify message once it will not be sent again
    (delivered or expired), inside the caller's transaction: the row stays for `retention`
    (status, pruning), the image need not. Dead letters keep theirs: they can be retried."""
    rows = db.execute(
        "SELECT body FROM alerts WHERE id = ? AND target_kind = 'notify'", (alert_id,)
    ).fetchall()
    if not rows or '"attachment"' not in rows[0][0]:
        return
    try:
        message = json.loads(rows[0][0])
    except ValueError:
        return
    if isinstance(message, dict) and message.pop("attachment", None) is not None:
        db.execute("UPDATE alerts SET body = ? WHERE id = ?", (json.dumps(message), alert_id))


class Outbox(Database):
    """Alerts on their way to their targets."""

    def due_alerts(self, kind: str, target: str, limit: int = 50) -> list[OutboxRow]:
        """Return the alerts for one target that are due now, oldest first."""
        rows = self._read(
            "SELECT id, event_id, rule, camera, body, attempts, created_at FROM alerts"
            " WHERE state = 'pending' AND target_kind = ? AND target = ? AND next_at <= ?"
            " ORDER BY id LIMIT ?",
            (kind, target, self._clock(), limit),
        )
        return [OutboxRow(*row) for row in rows]

    def next_alert_due(self, kind: str, target: str) -> float | None:
        """Return when the earliest undelivered alert for a target becomes due, or None."""
        rows = self._read(
            "SELECT MIN(next_at) FROM alerts WHERE state = 'pending' AND target_kind = ?"
            " AND target = ?",
            (kind, target),
        )
        return rows[0][0]

    def delivered(self, alert_id: int) -> None:
        """Mark an alert delivered."""
        with self._tx() as db:
            db.execute(
                "UPDATE alerts SET state = 'delivered', delivered_at = ?, attempts = attempts + 1"
                " WHERE id = ?",
                (self._clock(), alert_id),
            )
            _drop_attachment(db, alert_id)

    def postpone(self, alert_id: int, next_at: float, error: str) -> None:
        """Record a failed delivery; try again at `next_at`."""
        with self._tx() as db:
            db.execute(
                "UPDATE alerts SET attempts = attempts + 1, next_at = ?, last_error = ?"
                " WHERE id = ?",
                (next_at, error, alert_id),
            )

    def dead_letter(self, alert_id: int, error: str) -> None:
        """Set aside an alert its target refused for good, with the reason."""
        with self._tx() as db:
            db.execute(
                "UPDATE alerts SET state = 'dead', attempts = attempts + 1, last_error = ?"
                " WHERE id = ?",
                (error, alert_id),
            )

    def retry_dead_letters(self, target: str | None = None) -> int:
        """Queue dead-lettered alerts again (all, or one target's), due now. Return how many."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE alerts SET state = 'pending', next_at = 0, attempts = 0"
                " WHERE state = 'dead' AND (? IS NULL OR target = ?)",
                (target, target),
            )
            return cur.rowcount

    def expire(self, alert_id: int, error: str) -> None:
        """Give up on an alert that stayed undelivered past its maximum age."""
        with self._tx() as db:
            db.execute(
                "UPDATE alerts SET state = 'expired', last_error = ? WHERE id = ?",
                (error, alert_id),
            )
            _drop_attachment(db, alert_id)

    def drop_alerts_for(self, kind: str, known: set[str]) -> int:
        """Expire undelivered alerts whose target is no longer configured. Return how many."""
        marks = ",".join("?" * len(known)) or "''"
        with self._tx() as db:
            cur = db.execute(
                "UPDATE alerts SET state = 'expired', last_error = 'target not configured'"
                f" WHERE state = 'pending' AND target_kind = ? AND target NOT IN ({marks})",
                (kind, *known),
            )
            return cur.rowcount

    # -- silent cameras -------------------------------------------------------------------------

    def last_image_at(self, camera: str) -> float | None:
        """Return when the latest image of `camera` was first seen, or None."""
        rows = self._read("SELECT MAX(detected_at) FROM images WHERE camera = ?", (camera,))
        return rows[0][0]

    def silent_cameras(self) -> dict[str, float]:
        """Return each camera whose silence was announced, with since when it is silent."""
        return dict(self._read("SELECT camera, silent_since FROM camera_silence"))

    def mark_silent(self, alert: AlertCandidate, since: float) -> None:
        """Record that a camera went silent and queue the alert saying so, in one transaction."""
        now = self._clock()
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO camera_silence (camera, silent_since, event_id)"
                " VALUES (?, ?, ?)",
                (alert.camera, since, alert.event_id),
            )
            queue_alert(db, alert, None, now)

    def mark_back(self, alert: AlertCandidate) -> None:
        """Record that a silent camera sent an image again and queue the alert saying so."""
        now = self._clock()
        with self._tx() as db:
            db.execute("DELETE FROM camera_silence WHERE camera = ?", (alert.camera,))
            queue_alert(db, alert, None, now)
