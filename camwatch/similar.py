"""Near-duplicate frames: a 64-bit difference hash (dHash) per image, and a local-change check.

A camera sends a burst of near-identical frames per event, and a parked car all day. The hash is
the sign of the brightness step between horizontal neighbours on a 9x8 greyscale thumbnail:
robust to re-encoding, noise, a few pixels of wobble and small exposure changes. It is a few lines
over Pillow, so no numpy for it.

The hash alone cannot be trusted with what matters most. Each of its 64 cells is 1/64 of the
frame, so a person walking into a 1080p frame moves it by a median of 2 bits (bench/dedupe.py),
no more than sensor noise does: a `max_distance` that skips bursts would also skip the frame in
which someone appears. So a frame is a near duplicate only if, in addition, no part of the picture
changed: on a 32x18 colour grid (60x60 px cells at 1080p), exposure-corrected, no cell may differ
by more than `max_change` levels in any channel. Noise and re-encoding average out over a cell,
wobble moves edges by a fraction of one; a figure that was not there changes its cells by tens of
levels. Colour, not grey: a red coat on green grass can have the grass's brightness.
"""

from __future__ import annotations

import io
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from camwatch.config import DedupeConfig

HASH_BITS = 64
_HASH_SIZE = (9, 8)  # 9 columns give 8 neighbour steps per row: 8 x 8 bits
GRID_SIZE = (32, 18)  # 16:9, the shape of most camera frames; 32 x 18 x RGB = 1,728 bytes
# Chosen with bench/dedupe.py (docs/costs.md has the table).
DEFAULT_MAX_DISTANCE = 5
DEFAULT_MAX_CHANGE = 16
# Decompression bombs: a camera snapshot is at most a few tens of megapixels.
MAX_PIXELS = 80_000_000


class HashError(ValueError):
    """The bytes could not be decoded as an image."""


@dataclass(frozen=True)
class Fingerprint:
    """What is kept of a captioned image to recognise its near duplicates."""

    dhash: int  # 64 bits, unsigned
    grid: bytes  # GRID_SIZE cells of R, G, B levels, row by row


def fingerprint(data: bytes) -> Fingerprint:
    """Return the fingerprint of a JPEG or PNG. Raise HashError if Pillow cannot decode it
    within MAX_PIXELS."""
    width, height = GRID_SIZE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise HashError(f"{image.width}x{image.height} is more than {MAX_PIXELS} px")
                # JPEG: let the decoder scale by 1/2..1/8 while decoding (DCT scaling), which is
                # most of the cost saved on a 1080p frame; the result is then resized exactly.
                image.draft("RGB", (width * 4, height * 4))
                grid = image.convert("RGB").resize(GRID_SIZE, Image.Resampling.BOX)
                small = grid.convert("L").resize(_HASH_SIZE, Image.Resampling.BOX)
    except HashError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning) as exc:
        raise HashError(f"cannot decode the image: {exc}") from None
    return Fingerprint(_dhash(small.tobytes()), grid.tobytes())


def _dhash(pixels: bytes) -> int:
    columns, rows = _HASH_SIZE
    value = 0
    for row in range(rows):
        line = pixels[row * columns : (row + 1) * columns]
        for col in range(columns - 1):
            value = (value << 1) | (line[col] < line[col + 1])
    return value


def dhash(data: bytes) -> int:
    """Return the 64-bit difference hash of a JPEG or PNG (see `fingerprint`)."""
    return fingerprint(data).dhash


def distance(a: int, b: int) -> int:
    """Return the number of bits in which two hashes differ (0..64)."""
    return (a ^ b).bit_count()


def local_change(a: bytes, b: bytes) -> int:
    """Return the largest difference, in levels (0..255) of any channel, between two grids' cells
    once `a` is scaled to `b`'s mean brightness (an exposure change is not a change of picture)."""
    if len(a) != len(b) or not a:
        return 255
    mean_a, mean_b = sum(a), sum(b)
    ratio = mean_b / mean_a if mean_a else 1.0
    return round(max(abs(x * ratio - y) for x, y in zip(a, b, strict=True)))


def is_near_duplicate(a: Fingerprint, b: Fingerprint, max_distance: int, max_change: int) -> bool:
    """Return whether `b` shows what `a` showed: within `max_distance` bits of hash, and no cell
    of the picture changed by more than `max_change` levels."""
    return distance(a.dhash, b.dhash) <= max_distance and local_change(a.grid, b.grid) <= max_change


@dataclass(frozen=True)
class Match:
    """The captioned image a frame was found to duplicate, and by how much it differs."""

    image_id: int
    path: str
    distance: int
    change: int


@dataclass
class _Frame:
    key: int  # the image's id in the store
    print_: Fingerprint
    path: str | None = None  # set once captioned
    at: float = 0.0  # when it was captioned (monotonic)


class RecentFrames:
    """The fingerprints of the images each camera captioned lately, and of those being captioned.

    In memory: after a restart the first frame of a burst is captioned again, which costs one
    call and loses nothing. A frame near one still being captioned waits for its answer, so that
    a burst claimed by several workers at once is captioned once, not once per worker."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._frames: dict[str, list[_Frame]] = {}

    def claim(
        self,
        camera: str,
        key: int,
        print_: Fingerprint,
        limits: DedupeConfig,
        stop: threading.Event,
        wait_s: float,
    ) -> Match | None:
        """Return the captioned image within `limits.window` that `print_` duplicates (within
        `limits.max_distance` bits and `limits.max_change` levels), or None after registering
        this frame as being captioned. Waits at most `wait_s` for near frames in flight."""
        deadline = self._clock() + wait_s
        with self._cond:
            while True:
                now = self._clock()
                frames = self._frames.setdefault(camera, [])
                frames[:] = [f for f in frames if f.path is None or now - f.at <= limits.window]
                waiting = False
                for frame in reversed(frames):  # the newest first
                    if not is_near_duplicate(
                        frame.print_, print_, limits.max_distance, limits.max_change
                    ):
                        continue
                    if frame.path is not None:
                        return Match(
                            frame.key,
                            frame.path,
                            distance(frame.print_.dhash, print_.dhash),
                            local_change(frame.print_.grid, print_.grid),
                        )
                    waiting = True
                if not waiting or stop.is_set() or now >= deadline:
                    frames.append(_Frame(key, print_))
                    return None
                self._cond.wait(min(deadline - now, 1.0))

    def end(self, camera: str, key: int, path: str | None) -> None:
        """Record that the frame `key` was captioned (`path`: it is what later frames are
        compared with) or not (None: forgotten), and wake the frames waiting for it."""
        with self._cond:
            frames = self._frames.get(camera, [])
            for frame in frames:
                if frame.key == key and frame.path is None:
                    if path is None:
                        frames.remove(frame)
                    else:
                        frame.path, frame.at = path, self._clock()
                    break
            self._cond.notify_all()
