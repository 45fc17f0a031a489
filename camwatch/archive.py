"""The `after:` action on a captioned file: keep it, delete it, or move it to `archive_dir`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any


def free_name(target: Path) -> Path:
    """Given a wanted path, return it, or `name-1.jpg`, `name-2.jpg`, ... if it is taken."""
    if not os.path.lexists(target):
        return target
    for n in range(1, 100_000):
        candidate = target.with_name(f"{target.stem}-{n}{target.suffix}")
        if not os.path.lexists(candidate):
            return candidate
    raise FileExistsError(f"no free name for {target}")


def move_without_overwrite(src: str, target: Path) -> Path:
    """Move `src` to `target` or the next free name beside it, never replacing a file, even if
    another process creates one at the same moment. Return where it went."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        dest = free_name(target)
        try:
            os.link(src, dest)  # fails if dest exists: no overwrite, even in a race
        except FileExistsError:
            continue
        except OSError:
            # Another filesystem (or no hard links): copy into a file that must not exist yet.
            try:
                with open(src, "rb") as fin, open(dest, "xb") as fout:
                    shutil.copyfileobj(fin, fout)
            except FileExistsError:
                continue
            shutil.copystat(src, dest)
        os.unlink(src)
        return dest
    raise FileExistsError(f"no free name for {target}")


def apply_after(
    action: str, archive_dir: Path | None, camera: str, path: str, relpath: str
) -> str | None:
    """Apply `after:` to a captioned file. Return the new path for a move, else None."""
    if action == "delete":
        os.unlink(path)
    elif action == "move":
        assert archive_dir is not None
        return str(move_without_overwrite(path, Path(archive_dir) / camera / relpath))
    return None


def finish_file(
    action: str, archive_dir: Path | None, camera: str, path: str, relpath: str, blog: Any
) -> str | None:
    """Apply `after:` to a captioned file and log what was done (`image_moved`,
    `image_deleted`). Return the error text if it could not be done (logged as a warning)."""
    if action == "keep":
        return None
    try:
        moved = apply_after(action, archive_dir, camera, path, relpath)
    except OSError as exc:
        blog.warning("after_action_failed", action=action, error=str(exc))
        return str(exc)
    blog.info("image_" + ("moved" if moved else "deleted"), to=moved)
    return None
