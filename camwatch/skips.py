"""Skipped images whose reason the configuration has lifted, considered again.

An image skipped as larger than `caption.max_image_bytes` is captioned once the limit is raised,
and one skipped because its camera was not configured once the camera is back: at start and on
every reload, without a command. Every other reason is about the file, not the configuration;
`camwatch retry --skipped` queues those on request.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from camwatch.config import Config
from camwatch.log import get_logger
from camwatch.store import SkipKind, SkippedImage, Store

log = get_logger(__name__)

# The reasons a configuration can lift; the others still hold whatever it says.
LIFTABLE = (SkipKind.TOO_LARGE, SkipKind.NO_CAMERA)


def still_applies(image: SkippedImage, config: Config) -> bool:
    """Given a skipped image and the configuration in force, return whether the reason it was
    skipped for still holds: True for a size still over `caption.max_image_bytes` (or never
    recorded), a camera still not configured, and every reason a configuration cannot lift."""
    if image.kind is SkipKind.TOO_LARGE:
        return image.size is None or image.size > config.caption.max_image_bytes
    if image.kind is SkipKind.NO_CAMERA:
        return config.camera(image.camera) is None
    return True


def reconsider_skipped(
    store: Store, config: Config, exists: Callable[[str], bool] = os.path.lexists
) -> dict[SkipKind, int]:
    """Queue again the skipped images whose reason `config` no longer applies (files that are
    gone are left), logging `skipped_reconsidered` once per reason. Return how many were queued
    for each reason. Raise StateError if the database cannot be written."""
    lifted = [image for image in store.skipped_images(LIFTABLE) if not still_applies(image, config)]
    queued: dict[SkipKind, int] = {}
    for kind in LIFTABLE:
        done = store.requeue_skipped([i for i in lifted if i.kind is kind], exists)
        if done.queued:
            queued[kind] = done.queued
            log.info("skipped_reconsidered", count=done.queued, reason=str(kind), gone=done.gone)
    return queued
