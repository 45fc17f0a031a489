"""Skipped images, found again and put back in the queue.

Only the latest record of a file counts: an older skipped row of a file captioned since (or
queued again meanwhile) is history, not an image waiting for a second chance.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable

from camwatch.store.database import Database
from camwatch.store.records import Requeued, SkipKind, SkippedImage, py_path


class Skipped(Database):
    """Queries on skipped images and the one way to queue them again."""

    def skipped_images(
        self, kinds: Collection[SkipKind] | None = None, camera: str | None = None
    ) -> list[SkippedImage]:
        """Return the files whose latest record is skipped, oldest first: all, or those skipped
        for one of `kinds` (`UNKNOWN` for the rows from before kinds were recorded), and all
        cameras or one."""
        where = ["i.state = 'skipped'", "(? IS NULL OR i.camera = ?)"]
        args: list[object] = [camera, camera]
        if kinds is not None:
            known = [str(kind) for kind in kinds if kind is not SkipKind.UNKNOWN]
            either = [f"i.skip_kind IN ({','.join('?' * len(known))})"] if known else []
            if SkipKind.UNKNOWN in kinds:
                either.append("i.skip_kind IS NULL")
            if not either:
                return []
            # A plain IN (no COALESCE) lets the start-up look use the images_skipped index.
            where.append(f"({' OR '.join(either)})")
            args += known
        rows = self._read(
            "SELECT i.id, i.camera, i.path, i.skip_kind, i.size FROM images AS i"
            f" WHERE {' AND '.join(where)} AND i.id = (SELECT MAX(j.id) FROM images AS j"
            " WHERE j.camera = i.camera AND j.path = i.path) ORDER BY i.id",
            args,
        )
        return [
            SkippedImage(image_id, cam, py_path(path), _kind(kind), size)
            for image_id, cam, path, kind, size in rows
        ]

    def requeue_skipped(
        self, images: Iterable[SkippedImage], exists: Callable[[str], bool] = os.path.lexists
    ) -> Requeued:
        """Queue these skipped images again, due now, with fresh attempts; the file is read
        from disk again as for any queued image. An image whose file is gone is left as it
        is (counted in `gone`), as is one that is no longer skipped or whose file is queued
        anyway."""
        present: list[tuple[float, int]] = []
        gone = 0
        now = self._clock()
        for image in images:
            if exists(image.path):
                present.append((now, image.id))
            else:
                gone += 1
        queued = 0
        if present:
            with self._tx() as db:
                for args in present:
                    # OR IGNORE: a newer row of the same file already queued keeps its place.
                    queued += db.execute(
                        "UPDATE OR IGNORE images SET state = 'pending', skip_kind = NULL,"
                        " attempts = 0, next_at = 0, updated_at = ?"
                        " WHERE id = ? AND state = 'skipped'",
                        args,
                    ).rowcount
        return Requeued(queued=queued, gone=gone)

    def retry_skipped(
        self,
        kind: SkipKind | None = None,
        camera: str | None = None,
        exists: Callable[[str], bool] = os.path.lexists,
    ) -> Requeued:
        """Queue skipped images again (`camwatch retry --skipped`): all, or those skipped for
        `kind`, of all cameras or one. Return how many were queued and how many were left
        because their file is gone."""
        kinds = None if kind is None else [kind]
        return self.requeue_skipped(self.skipped_images(kinds, camera), exists)


def _kind(value: str | None) -> SkipKind:
    """A stored kind; NULL (skipped before schema 3) or a kind this camwatch does not know is
    unknown."""
    try:
        return SkipKind(value) if value is not None else SkipKind.UNKNOWN
    except ValueError:
        return SkipKind.UNKNOWN
