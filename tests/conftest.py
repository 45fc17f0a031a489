"""Shared test helpers: real image bytes, bounded polling, and a check for leaked threads."""

from __future__ import annotations

import functools
import io
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from PIL import Image


@functools.lru_cache(maxsize=64)
def image_bytes(fmt: str = "JPEG", seed: int = 0, size: tuple[int, int] = (32, 24)) -> bytes:
    """Given a Pillow format name and a seed, return the bytes of a small, complete image whose
    content differs per seed."""
    img = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, 200))
    img.putpixel((seed % size[0], 0), (255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def jpeg() -> bytes:
    """Return a small complete JPEG."""
    return image_bytes("JPEG")


@pytest.fixture
def png() -> bytes:
    """Return a small complete PNG."""
    return image_bytes("PNG")


@pytest.fixture
def make_image() -> Callable[..., bytes]:
    """Return `image_bytes(fmt="JPEG", seed=0)`: a small complete image per seed."""
    return image_bytes


def wait_for(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition",
) -> None:
    """Poll `predicate` until it returns a true value. Fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture
def poll() -> Callable[..., None]:
    """Return `wait_for(predicate, timeout=10.0, interval=0.01, message=...)`."""
    return wait_for


@pytest.fixture
def no_thread_leaks() -> Iterator[None]:
    """Fail a test that leaves a thread running (after giving threads 5 s to end)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    while extra and time.monotonic() < deadline:
        time.sleep(0.02)
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not extra, f"threads left running: {sorted(t.name for t in extra)}"
