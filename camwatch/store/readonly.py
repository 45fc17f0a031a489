"""Read-only access to the state database, for the commands and pages that only look.

`status`, `replay` and the timeline must never create a `state_dir` or a database (a typo in
`-c` would otherwise leave an empty one behind, and the daemon's user would not own it), and must
not take the daemon's write lock. SQLite's `mode=ro` gives both; WAL lets them read while the
daemon writes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from camwatch.errors import StateError
from camwatch.store.schema import SCHEMA_VERSION


class NoDatabase(StateError):
    """There is no state database yet: the daemon has not run with this `state_dir`."""


def database_path(state_dir: Path | str) -> Path:
    """Return where the state database of `state_dir` lives."""
    return Path(state_dir) / "camwatch.db"


def connect_readonly(state_dir: Path | str, timeout: float = 5.0) -> sqlite3.Connection:
    """Return a read-only connection to the state database of `state_dir`, usable from any one
    thread at a time. Raise NoDatabase when there is none yet, StateError when it cannot be
    read or its schema is not this camwatch's. Opened while no daemon runs, it is for one look
    (a command), not to keep: it does not see what a daemon started later writes."""
    path = database_path(state_dir)
    if not path.is_file():
        raise NoDatabase(
            f"no state database yet at {str(path)!r}: the daemon creates it when it first runs"
            " (is state_dir right?)"
        )
    uri = f"{path.absolute().as_uri()}?mode=ro"
    if not Path(f"{path}-wal").exists():
        # No write-ahead log: no daemon has the database open, and it was closed cleanly, so
        # the file alone is the whole database. Read it as immutable: a `mode=ro` connection
        # would create `-wal` and `-shm` files (and cannot remove them), owned by whoever runs
        # `status`, which a daemon running as another user could then not open for writing.
        uri += "&immutable=1"
    try:
        db = sqlite3.connect(
            uri,
            uri=True,
            timeout=timeout,
            check_same_thread=False,
        )
        db.execute("PRAGMA query_only = ON")
        version = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise StateError(f"state database {str(path)!r}: cannot read: {exc}") from None
    if version != SCHEMA_VERSION:
        db.close()
        newer = "newer" if version > SCHEMA_VERSION else "older"
        fix = (
            "upgrade camwatch"
            if version > SCHEMA_VERSION
            else "start the daemon once to upgrade it"
        )
        raise StateError(
            f"state database {str(path)!r} has schema {version}, {newer} than this camwatch"
            f" ({SCHEMA_VERSION}): {fix}"
        )
    return db
