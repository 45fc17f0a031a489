"""The state database's schema: one list of migrations, applied in order at open.

`PRAGMA user_version` is the number of migrations applied; a database newer than this camwatch
is refused rather than guessed at.
"""

SCHEMA_VERSION = 5

_MIGRATIONS: list[list[str]] = [
    # version 0 -> 1: the first schema
    [
        """CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            camera TEXT NOT NULL,
            path TEXT NOT NULL,
            relpath TEXT NOT NULL,
            size INTEGER,
            mtime_ns INTEGER,
            sha256 TEXT,
            state TEXT NOT NULL,
            prio INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL DEFAULT 0,
            last_error TEXT,
            caption TEXT,
            tokens_input INTEGER,
            tokens_output INTEGER,
            tokens_total INTEGER,
            detected_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            captioned_at REAL
        )""",
        # At most one queued row per file; a file re-written while being captioned queues again.
        "CREATE UNIQUE INDEX images_one_pending ON images(camera, path) WHERE state = 'pending'",
        "CREATE INDEX images_queue ON images(prio, id) WHERE state = 'pending'",
        "CREATE INDEX images_path ON images(camera, path, state)",
        "CREATE INDEX images_updated ON images(updated_at)",
        """CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL,
            image_id INTEGER,
            rule TEXT NOT NULL,
            camera TEXT NOT NULL,
            target_kind TEXT NOT NULL,
            target TEXT NOT NULL,
            body TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            last_error TEXT,
            created_at REAL NOT NULL,
            delivered_at REAL,
            UNIQUE (event_id, target_kind, target)
        )""",
        "CREATE INDEX alerts_due ON alerts(target_kind, target, next_at) WHERE state = 'pending'",
        "CREATE INDEX alerts_created ON alerts(created_at)",
        """CREATE TABLE cooldowns (
            rule TEXT NOT NULL,
            camera TEXT NOT NULL,
            last_at REAL NOT NULL,
            PRIMARY KEY (rule, camera)
        )""",
    ],
    # version 1 -> 2: silent cameras (issue 9)
    [
        # The latest image of a camera, found without reading all of its rows.
        "CREATE INDEX images_camera_detected ON images(camera, detected_at)",
        # A camera whose silence was announced: no second alert until it is back, across restarts.
        """CREATE TABLE camera_silence (
            camera TEXT PRIMARY KEY,
            silent_since REAL NOT NULL,
            event_id TEXT NOT NULL
        )""",
    ],
    # version 2 -> 3: why an image was skipped, for machines (issue 12): `camwatch retry
    # --skipped --reason KIND`, and images skipped for a reason the configuration has lifted
    # (too large for the old max_image_bytes) considered again at start. NULL: unknown.
    [
        "ALTER TABLE images ADD COLUMN skip_kind TEXT",
        "CREATE INDEX images_skipped ON images(skip_kind) WHERE state = 'skipped'",
        # Rows skipped before: their reason texts have not changed since the first release, so
        # each maps to its kind; what matches none stays NULL.
        *(
            f"UPDATE images SET skip_kind = '{kind}' WHERE state = 'skipped' AND ({where})"
            for kind, where in (
                ("too_large", "last_error LIKE '%max_image_bytes%'"),
                ("incomplete", "last_error LIKE 'not a complete JPEG/PNG %'"),
                ("waiting", "last_error = 'incomplete; waiting for the rest'"),
                (
                    "unsafe_path",
                    "last_error IN ('resolves outside the camera folder',"
                    " 'is not below its camera folder', 'is in a symbolically linked folder',"
                    " 'is a symbolic link', 'is not a regular file',"
                    " 'has more than one hard link')",
                ),
                ("vanished", "last_error = 'file vanished before it was read'"),
                ("duplicate", "last_error = 'same bytes already captioned'"),
                ("no_camera", "last_error = 'camera not configured'"),
                ("superseded", "last_error = 'superseded'"),
            )
        ),
    ],
    # version 3 -> 4: the timeline page (issue 13): the alerts of an image, and the images that
    # raised one, newest first (of one camera too: it is in the index).
    [
        "CREATE INDEX alerts_image ON alerts(image_id, camera)",
    ],
    # version 4 -> 5: costs (issue 14). A near duplicate names the captioned image it matched;
    # tokens are kept per local day and camera (they outlive `retention`, which prunes images:
    # the month's total and the daily budget need them); a budget or credits pause is
    # announced once, across restarts.
    [
        "ALTER TABLE images ADD COLUMN deduped_of INTEGER",
        """CREATE TABLE token_usage (
            day TEXT NOT NULL,
            camera TEXT NOT NULL,
            input INTEGER NOT NULL DEFAULT 0,
            output INTEGER NOT NULL DEFAULT 0,
            total INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (day, camera)
        )""",
        """CREATE TABLE pauses (
            kind TEXT NOT NULL,
            period TEXT NOT NULL,
            event_id TEXT NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (kind, period)
        )""",
    ],
]
