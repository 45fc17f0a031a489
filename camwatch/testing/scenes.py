"""Camera-like frames made with Pillow, and the changes a camera's burst makes to them.

A scene is a sky-to-ground gradient with buildings, a road and parked shapes, drawn from a seed;
the variants are what happens between two frames of one camera (re-encoding, sensor noise, a few
pixels of wobble, exposure) and what must not count as the same picture (someone walks in, another
scene). Used by the dedupe tests and bench/dedupe.py.
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter

SIZE = (1920, 1080)


def scene(seed: int, size: tuple[int, int] = SIZE) -> Image.Image:
    """Return an RGB frame of a street-like scene drawn from `seed`."""
    rng = random.Random(seed)
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    horizon = int(height * rng.uniform(0.35, 0.6))
    sky = [rng.randrange(80, 220) for _ in range(3)]
    ground = [rng.randrange(30, 140) for _ in range(3)]
    for y in range(height):
        top = y < horizon
        base = sky if top else ground
        shade = (y / horizon) if top else (y - horizon) / max(1, height - horizon)
        colour = tuple(max(0, min(255, int(c * (1.1 - 0.4 * shade)))) for c in base)
        draw.line([(0, y), (width, y)], fill=colour)
    for _ in range(rng.randrange(4, 12)):  # buildings on the horizon
        x = rng.randrange(0, width)
        w, h = rng.randrange(width // 20, width // 5), rng.randrange(height // 10, height // 2)
        draw.rectangle([x, horizon - h, x + w, horizon], fill=_colour(rng, 40, 200))
        for _ in range(rng.randrange(0, 12)):  # windows
            wx, wy = rng.randrange(x, x + w), rng.randrange(horizon - h, horizon)
            draw.rectangle(
                [wx, wy, wx + max(1, width // 160), wy + max(1, width // 120)],
                fill=_colour(rng, 150, 255),
            )
    road = [(width * rng.uniform(0.3, 0.45), horizon), (width * rng.uniform(0.55, 0.7), horizon)]
    draw.polygon([road[0], road[1], (width, height), (0, height)], fill=_colour(rng, 50, 110))
    unit = width / 1920  # sizes below are for 1080p
    for _ in range(rng.randrange(1, 5)):  # parked cars, bins, bushes
        x = rng.randrange(0, max(1, int(width - 200 * unit)))
        y = rng.randrange(horizon, max(horizon + 1, int(height - 100 * unit)))
        w, h = int(rng.randrange(80, 360) * unit) + 1, int(rng.randrange(50, 160) * unit) + 1
        draw.rounded_rectangle(
            [x, y, x + w, y + h],
            radius=max(1, int(rng.randrange(4, 30) * unit)),
            fill=_colour(rng, 0, 255),
        )
    return image.filter(ImageFilter.GaussianBlur(1.2))


def _colour(rng: random.Random, low: int, high: int) -> tuple[int, int, int]:
    return (rng.randrange(low, high), rng.randrange(low, high), rng.randrange(low, high))


def jpeg(image: Image.Image, quality: int = 85, **options: object) -> bytes:
    """Return `image` encoded as a JPEG."""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, **options)
    return out.getvalue()


def noisy(image: Image.Image, seed: int, amount: int = 12) -> Image.Image:
    """Return `image` with sensor-like noise of up to +-`amount` per pixel, the same for the
    same seed (Pillow's own noise generator cannot be seeded)."""
    width, height = image.size
    field = Image.frombytes("L", (width, height), random.Random(seed).randbytes(width * height))
    # Uniform 0..255 around 128, scaled to +-amount: a triangle-ish spread once JPEG-encoded.
    field = field.point(lambda v: 128 + (v - 128) * amount // 128)
    noise = Image.merge("RGB", (field, field, field))
    return ImageChops.add(image, noise, scale=1.0, offset=-128)


def shifted(image: Image.Image, dx: int, dy: int) -> Image.Image:
    """Return `image` moved by a few pixels (a camera's wobble), the edge repeated."""
    return ImageChops.offset(image, dx, dy)


def brighter(image: Image.Image, factor: float) -> Image.Image:
    """Return `image` with its exposure changed by `factor` (1.0: unchanged)."""
    return ImageEnhance.Brightness(image).enhance(factor)


def with_person(image: Image.Image, seed: int) -> Image.Image:
    """Return `image` with a person-sized figure standing (or lying) somewhere in the foreground."""
    rng = random.Random(seed)
    out = image.copy()
    draw = ImageDraw.Draw(out)
    width, height = out.size
    scale = rng.uniform(0.8, 1.6)
    x, y = rng.randrange(width // 8, width * 7 // 8), rng.randrange(height // 2, height - 40)
    body = _colour(rng, 0, 255)
    head = int(40 * scale)
    if rng.random() < 0.5:  # standing
        draw.ellipse([x - head // 2, y - 7 * head, x + head // 2, y - 6 * head], fill=body)
        draw.rectangle([x - head, y - 6 * head, x + head, y - 2 * head], fill=body)
        draw.rectangle([x - head, y - 2 * head, x + head, y], fill=_colour(rng, 0, 120))
    else:  # lying on the ground
        draw.ellipse([x - 7 * head, y - head, x - 6 * head, y], fill=body)
        draw.rectangle([x - 6 * head, y - head, x, y], fill=body)
    return out
