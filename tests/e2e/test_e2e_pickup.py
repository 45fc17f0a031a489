"""End to end: when a file is picked up. A file closed after writing, renamed into place or moved
in is uploaded at once, without `debounce`; a file still open waits; completeness is decided by
the JPEG's structure (padding after the end is fine, a file cut after its EXIF thumbnail is not);
and file names that are not plain UTF-8 text still get captioned and alerted."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camwatch.testing import StandinCaptionAPI, WebhookReceiver
from camwatch.testing.samples import exif_app1

from .support import (
    ConfigWriter,
    Daemon,
    Tree,
    assert_alert,
    drop,
    image,
    sha256,
    uploads_of,
    wait_until,
)

StartDaemon = Callable[..., Daemon]

INSTANT = 1.5  # seconds from close/rename to the upload: far below the 5 s debounce
LONG_DEBOUNCE = "5s"


def _upload_with(api: StandinCaptionAPI, digest: str) -> Any | None:
    return next((r for r in uploads_of(api, None) if r.sha256 == digest), None)


def _wait_upload(api: StandinCaptionAPI, digest: str, daemon: Daemon, timeout: float = 15) -> Any:
    wait_until(lambda: _upload_with(api, digest) is not None, timeout, f"upload of {digest[:12]}")
    request = _upload_with(api, digest)
    assert request is not None and request.status == 200, (request, daemon.tail())
    return request


def test_closed_renamed_and_moved_in_files_are_uploaded_at_once(
    tree: Tree,
    api: StandinCaptionAPI,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(config.write(debounce=LONG_DEBOUNCE, complete_timeout="20s"))
    daemon.wait_event("scan_finished", camera="frontdoor")

    # 1. Written and closed.
    closed = image("Closed after writing: an empty porch.")
    with open(tree.frontdoor / "closed.jpg", "wb") as handle:
        handle.write(closed)
    t_closed = time.monotonic()
    got = _wait_upload(api, sha256(closed), daemon)
    assert got.time - t_closed < INSTANT, f"closed file uploaded {got.time - t_closed:.2f}s later"

    # 2. Written as `.part`, then renamed into place.
    renamed = image("Renamed into place: an empty porch.")
    part = tree.frontdoor / "renamed.jpg.part"
    with open(part, "wb") as handle:
        handle.write(renamed)
    os.rename(part, tree.frontdoor / "renamed.jpg")
    t_renamed = time.monotonic()
    got = _wait_upload(api, sha256(renamed), daemon)
    assert got.time - t_renamed < INSTANT, f"renamed file uploaded {got.time - t_renamed:.2f}s"
    assert got.file_name == "renamed.jpg"

    # 3. Moved in from a folder no camera watches (same filesystem: a rename).
    moved = image("Moved in from outside: an empty porch.")
    outside = drop(tree.outside / "moved.jpg", moved)
    os.rename(outside, tree.frontdoor / "moved.jpg")
    t_moved = time.monotonic()
    got = _wait_upload(api, sha256(moved), daemon)
    assert got.time - t_moved < INSTANT, f"moved-in file uploaded {got.time - t_moved:.2f}s"

    for name in ("closed.jpg", "renamed.jpg", "moved.jpg"):
        daemon.wait_event("image_captioned", path=str(tree.frontdoor / name))
    assert len(uploads_of(api, None)) == 3
    assert daemon.terminate()[0] == 0


def test_a_file_still_open_for_writing_waits(
    tree: Tree,
    api: StandinCaptionAPI,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(config.write(debounce=LONG_DEBOUNCE, complete_timeout="20s"))
    daemon.wait_event("scan_finished", camera="frontdoor")
    half_data = image("Written in two halves: an empty porch.")
    whole_data = image("Written whole, the writer still holding it open.")
    half = open(tree.frontdoor / "half.jpg", "wb")  # noqa: SIM115 - held open on purpose
    whole = open(tree.frontdoor / "whole.jpg", "wb")  # noqa: SIM115
    try:
        half.write(half_data[: len(half_data) // 2])
        half.flush()
        whole.write(whole_data)  # complete already, but its writer has not closed it
        whole.flush()
        started = time.monotonic()
        while time.monotonic() - started < 2.0:  # bounded: 2 s of nothing
            assert not uploads_of(api, None), (
                f"uploaded while still open: {[r.file_name for r in api.requests]}"
            )
            time.sleep(0.05)
        assert not daemon.named("image_captioned")

        half.write(half_data[len(half_data) // 2 :])
        half.close()
        t_half = time.monotonic()
        got = _wait_upload(api, sha256(half_data), daemon)
        assert got.time - t_half < INSTANT, f"uploaded {got.time - t_half:.2f}s after the close"

        whole.close()
        t_whole = time.monotonic()
        got = _wait_upload(api, sha256(whole_data), daemon)
        assert got.time - t_whole < INSTANT, f"uploaded {got.time - t_whole:.2f}s after the close"
    finally:
        half.close()
        whole.close()
    assert len(uploads_of(api, None)) == 2
    assert daemon.terminate()[0] == 0


# -- completeness by structure -----------------------------------------------------------------


def test_padding_after_the_end_is_uploaded_as_is_and_a_cut_after_the_thumbnail_is_not(
    tree: Tree,
    api: StandinCaptionAPI,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(config.write(debounce="200ms", complete_timeout="2s"))
    junk = bytes((i * 37 + 11) % 256 for i in range(300))
    padded_data = image("Padded by the recorder: an empty porch.") + junk
    padded = drop(tree.frontdoor / "padded.jpg", padded_data)

    thumb = image("the thumbnail")  # a small, real JPEG
    main = image("A camera frame with an EXIF thumbnail.")
    exif_data = main[:2] + exif_app1(thumb) + main[2:]
    cut_at = exif_data.index(thumb) + len(thumb)
    cut_data = exif_data[:cut_at]  # ends with the thumbnail's EOI: FF D9
    assert cut_data.endswith(b"\xff\xd9")
    cut = drop(tree.frontdoor / "cut.jpg", cut_data)
    whole = drop(tree.frontdoor / "exif.jpg", exif_data)

    got = _wait_upload(api, sha256(padded_data), daemon)
    assert got.file_size == len(padded_data)  # uploaded as it is, padding included
    daemon.wait_event("image_captioned", path=str(padded))
    got = _wait_upload(api, sha256(exif_data), daemon)
    assert got.file_size == len(exif_data)
    daemon.wait_event("image_captioned", path=str(whole))

    skipped = daemon.wait_event("file_incomplete_skipped", path=str(cut), timeout=20)
    assert skipped["level"] == "warning", skipped
    assert _upload_with(api, sha256(cut_data)) is None
    assert "cut.jpg" not in [r.file_name for r in api.requests]
    assert not daemon.named("image_captioned", path=str(cut))
    assert len(uploads_of(api, None)) == 2
    assert daemon.terminate()[0] == 0


# -- file names ----------------------------------------------------------------------------------

LATIN1 = b"caf\xe9.jpg"  # a legacy client's Latin-1 name: not valid UTF-8
NEWLINE = b"new\nline.jpg"
LONGEST = b"n" * 251 + b".jpg"  # 255 bytes, the longest name most filesystems take
GOOD = b"good.jpg"
NAMES = (LATIN1, NEWLINE, LONGEST, GOOD)


def _drop_named(folder: Path, name: bytes, data: bytes) -> bytes:
    """Write a file whose name is given as bytes; return its path as bytes."""
    path = os.fsencode(folder) + b"/" + name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return path


def _printable(path: bytes) -> str:
    """The path as an alert shows it: UTF-8 text, undecodable bytes as the four characters
    `\\xNN`."""
    return path.decode("utf-8", "backslashreplace")


def test_odd_file_names_are_captioned_at_start_and_live(
    tree: Tree,
    api: StandinCaptionAPI,
    hooks: WebhookReceiver,
    config: ConfigWriter,
    start_daemon: StartDaemon,
) -> None:
    assert len(LONGEST) == 255
    dropped: dict[bytes, bytes] = {}  # path -> data
    for i, name in enumerate(NAMES):  # there before the daemon starts
        data = image(f"At start {i}: a parcel on the step.")
        dropped[_drop_named(tree.frontdoor, name, data)] = data
    daemon = start_daemon(config.write(debounce="200ms"))
    daemon.wait_event("scan_finished", camera="driveway")
    for i, name in enumerate(NAMES):  # and written while it runs
        data = image(f"Live {i}: a parcel on the step.")
        dropped[_drop_named(tree.driveway, name, data)] = data

    digests = {sha256(data) for data in dropped.values()}
    assert len(digests) == 2 * len(NAMES)
    wait_until(
        lambda: digests <= {r.sha256 for r in uploads_of(api, None)},
        30,
        f"uploads of all {len(digests)} files\n{daemon.tail()}",
    )
    assert [r.status for r in uploads_of(api, None)] == [200] * len(digests), [
        (r.file_name, r.status, r.error) for r in api.requests
    ]
    wait_until(lambda: len(hooks.delivered) >= len(dropped), 30, "an alert per file")
    by_image = {r.json["image"]: r for r in hooks.delivered}
    assert sorted(by_image) == sorted(_printable(p) for p in dropped), sorted(by_image)
    for path, data in dropped.items():
        assert_alert(
            by_image[_printable(path)],
            rule="package",
            camera="frontdoor" if path.startswith(os.fsencode(tree.frontdoor)) else "driveway",
            image=Path(_printable(path)),
            matched=["parcel"],
            data=data,
        )
    for folder in (tree.frontdoor, tree.driveway):
        latin = by_image[f"{folder}/caf\\xe9.jpg"].json["image"]
        assert latin.endswith("/caf\\xe9.jpg")  # backslash, x, e, 9
        assert "\ufffd" not in latin and "\udce9" not in latin
        assert by_image[f"{folder}/new\nline.jpg"].json["image"].endswith("/new\nline.jpg")
    assert not daemon.named("file_skipped")
    assert not daemon.named("image_failed")
    assert len(hooks.received) == len(dropped)
    assert daemon.terminate()[0] == 0
