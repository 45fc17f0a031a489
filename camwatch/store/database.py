"""The connection: one SQLite connection behind a lock, WAL, explicit transactions.

`synchronous=NORMAL` in WAL mode survives a kill -9 of the daemon; after a power cut the last
transactions may be lost but the database is never corrupt.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from camwatch.errors import StateError
from camwatch.store.readonly import database_path
from camwatch.store.schema import _MIGRATIONS, SCHEMA_VERSION


def _state_error(exc: sqlite3.Error) -> StateError:
    text = str(exc)
    if "full" in text:
        return StateError(f"state database: disk full ({text})")
    if "readonly" in text or "read-only" in text:
        return StateError(f"state database: read-only ({text})")
    return StateError(f"state database: {text}")


class Database:
    """The state database in `state_dir/camwatch.db`: the connection and its transactions."""

    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = database_path(state_dir)
        self._clock = clock
        self._lock = threading.Lock()
        try:
            Path(state_dir).mkdir(parents=True, exist_ok=True)
            if not os.access(state_dir, os.W_OK):
                # SQLite would only say "unable to open database file".
                raise StateError(
                    f"state_dir: {str(state_dir)!r} is not writable"
                    " (read-only file system or permissions)"
                )
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"state_dir: cannot open {str(self.path)!r}: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            # Fail now, not on the first image, if the database cannot be written.
            with self._tx() as db:
                db.execute("CREATE TABLE IF NOT EXISTS probe (x)")
        except (sqlite3.Error, StateError) as exc:
            self._db.close()
            if isinstance(exc, StateError):
                raise
            raise StateError(f"state_dir: cannot use {str(self.path)!r}: {exc}") from None

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _state_error(exc) from None
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _state_error(exc) from None
                raise

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(args)).fetchall()
            except sqlite3.Error as exc:
                raise _state_error(exc) from None

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state database {str(self.path)!r} has schema {version}, newer than this"
                f" camwatch ({SCHEMA_VERSION}): upgrade camwatch"
            )
        for target in range(version, SCHEMA_VERSION):
            with self._tx() as db:
                for statement in _MIGRATIONS[target]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {target + 1}")
