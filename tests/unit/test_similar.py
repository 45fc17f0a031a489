"""Near duplicates on real encoder output (Pillow's JPEGs of camera-like frames), and the registry
of recent frames that a burst's workers share."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable

import pytest
from PIL import Image

from camwatch.config import DedupeConfig
from camwatch.similar import (
    HashError,
    RecentFrames,
    distance,
    fingerprint,
    is_near_duplicate,
    local_change,
)
from camwatch.testing.scenes import brighter, jpeg, noisy, scene, shifted, with_person

LIMITS = DedupeConfig()  # the defaults: window 30s, max_distance 5, max_change 16


@pytest.fixture(scope="module")
def base() -> Image.Image:
    return scene(7)


@pytest.mark.parametrize(
    "variant",
    [
        lambda im: jpeg(im, quality=60),
        lambda im: jpeg(im, quality=95),
        lambda im: jpeg(noisy(im, 1)),
        lambda im: jpeg(shifted(im, 3, 2)),
        lambda im: jpeg(brighter(im, 1.08)),
        lambda im: jpeg(brighter(shifted(noisy(im, 2), 2, 1), 0.95)),
    ],
    ids=["re-encoded-60", "re-encoded-95", "noise", "shifted", "brighter", "all-three"],
)
def test_the_same_frame_as_a_camera_re_sends_it_is_a_near_duplicate(
    base: Image.Image, variant: Callable[[Image.Image], bytes]
) -> None:
    first = fingerprint(jpeg(base))
    again = fingerprint(variant(base))
    assert is_near_duplicate(first, again, LIMITS.max_distance, LIMITS.max_change), (
        distance(first.dhash, again.dhash),
        local_change(first.grid, again.grid),
    )


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_person_walking_in_is_not_a_duplicate(base: Image.Image, seed: int) -> None:
    first = fingerprint(jpeg(base))
    person = fingerprint(jpeg(with_person(base, seed)))
    assert not is_near_duplicate(first, person, LIMITS.max_distance, LIMITS.max_change)
    # ...although the hash alone would often call it one: the reason for the local check.
    assert local_change(first.grid, person.grid) > LIMITS.max_change


def test_another_scene_is_far_by_the_hash_alone(base: Image.Image) -> None:
    first = fingerprint(jpeg(base))
    other = fingerprint(jpeg(scene(8)))
    assert distance(first.dhash, other.dhash) > 10


def test_a_png_hashes_like_its_jpeg(base: Image.Image) -> None:
    out = io.BytesIO()
    base.resize((640, 360)).save(out, "PNG")
    small_jpeg = jpeg(base.resize((640, 360)))
    a, b = fingerprint(out.getvalue()), fingerprint(small_jpeg)
    assert is_near_duplicate(a, b, LIMITS.max_distance, LIMITS.max_change)


def test_bytes_that_are_no_image_raise_hash_error() -> None:
    with pytest.raises(HashError):
        fingerprint(b"\xff\xd8\xff\xe0 not really a jpeg")


def test_the_hash_is_64_bits_and_distance_counts_them() -> None:
    print_ = fingerprint(jpeg(scene(3)))
    assert 0 <= print_.dhash < 1 << 64
    assert distance(print_.dhash, print_.dhash ^ 0b1011) == 3
    assert len(print_.grid) == 32 * 18 * 3


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_recent_frames_match_per_camera_and_within_the_window(base: Image.Image) -> None:
    clock = Clock()
    frames = RecentFrames(clock)
    stop = threading.Event()
    first, again = fingerprint(jpeg(base)), fingerprint(jpeg(noisy(base, 5)))
    assert frames.claim("front", 1, first, LIMITS, stop, wait_s=0) is None
    frames.end("front", 1, "/cams/front/a.jpg")
    match = frames.claim("front", 2, again, LIMITS, stop, wait_s=0)
    assert match is not None and (match.image_id, match.path) == (1, "/cams/front/a.jpg")
    # Another camera's frames are not compared.
    assert frames.claim("back", 3, again, LIMITS, stop, wait_s=0) is None
    frames.end("back", 3, None)
    clock.now += LIMITS.window + 1  # the window has passed
    assert frames.claim("front", 4, again, LIMITS, stop, wait_s=0) is None


def test_a_frame_that_failed_is_not_matched(base: Image.Image) -> None:
    frames = RecentFrames(Clock())
    stop = threading.Event()
    print_ = fingerprint(jpeg(base))
    assert frames.claim("front", 1, print_, LIMITS, stop, wait_s=0) is None
    frames.end("front", 1, None)  # not captioned (failed, requeued): forgotten
    assert frames.claim("front", 2, print_, LIMITS, stop, wait_s=0) is None


def test_a_burst_claimed_at_once_waits_for_the_first_answer(base: Image.Image) -> None:
    frames = RecentFrames()
    stop = threading.Event()
    first, again = fingerprint(jpeg(base)), fingerprint(jpeg(shifted(base, 1, 1)))
    assert frames.claim("front", 1, first, LIMITS, stop, wait_s=0) is None  # in flight
    results: list[object] = []
    waiter = threading.Thread(
        target=lambda: results.append(frames.claim("front", 2, again, LIMITS, stop, wait_s=10))
    )
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()  # waiting for frame 1's answer
    frames.end("front", 1, "/cams/front/a.jpg")
    waiter.join(10)
    assert not waiter.is_alive()
    assert results and getattr(results[0], "image_id", None) == 1


def test_a_frame_waiting_for_one_that_fails_is_captioned_itself(base: Image.Image) -> None:
    frames = RecentFrames()
    stop = threading.Event()
    print_ = fingerprint(jpeg(base))
    assert frames.claim("front", 1, print_, LIMITS, stop, wait_s=0) is None
    results: list[object] = []
    waiter = threading.Thread(
        target=lambda: results.append(frames.claim("front", 2, print_, LIMITS, stop, wait_s=10))
    )
    waiter.start()
    frames.end("front", 1, None)
    waiter.join(10)
    assert results == [None]  # registered and captioned in its own right
