"""Logging: one JSON object per line, and registered secrets never shown, wherever they hide."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from camwatch import log as camlog

SECRET = "sk-live-0123456789abcdef"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    camlog.configure("info", "json", stream=out)
    camlog.register_secrets([SECRET, None, "ab"])
    yield out
    logging.captureWarnings(False)
    logging.basicConfig(handlers=[logging.NullHandler()], force=True)
    structlog.reset_defaults()


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_events_have_timestamp_level_event(stream: io.StringIO) -> None:
    camlog.get_logger("t").info("image_captioned", camera="front", path="/x/a.jpg")
    (event,) = _lines(stream)
    assert event["event"] == "image_captioned"
    assert event["level"] == "info"
    assert event["camera"] == "front" and event["path"] == "/x/a.jpg"
    assert str(event["timestamp"]).endswith("Z")


def test_secrets_are_redacted_in_fields_nested_values_and_tracebacks(stream: io.StringIO) -> None:
    logger = camlog.get_logger("t")
    logger.warning("caption_failed", reason=f"bad key {SECRET}", extra={"k": [SECRET]})
    try:
        raise RuntimeError(f"Authorization: {SECRET}")
    except RuntimeError:
        logger.exception("job_failed")
    text = stream.getvalue()
    assert SECRET not in text
    assert text.count("***") >= 3
    first, second = _lines(stream)
    assert first["reason"] == "bad key ***"
    assert "RuntimeError" in str(second["exception"])


def test_short_values_are_not_registered(stream: io.StringIO) -> None:
    camlog.get_logger("t").info("about", word="ab cab")
    assert _lines(stream)[0]["word"] == "ab cab"


def test_library_warnings_are_json_and_redacted(stream: io.StringIO) -> None:
    logging.getLogger("urllib3.connectionpool").warning("retrying %s", f"https://x/?k={SECRET}")
    logging.getLogger("urllib3.connectionpool").info("not shown: below warning")
    (event,) = _lines(stream)
    assert event["level"] == "warning"
    assert SECRET not in str(event["event"]) and "***" in str(event["event"])


def test_debug_is_filtered_at_info(stream: io.StringIO) -> None:
    camlog.get_logger("t").debug("image_queued")
    assert stream.getvalue() == ""


def test_console_format_is_for_people() -> None:
    out = io.StringIO()
    try:
        camlog.configure("info", "console", stream=out)
        camlog.get_logger("t").info("ready", cameras=["front"])
    finally:
        logging.captureWarnings(False)
        logging.basicConfig(handlers=[logging.NullHandler()], force=True)
        structlog.reset_defaults()
    text = out.getvalue()
    assert "ready" in text and "front" in text
    with pytest.raises(ValueError):
        json.loads(text)


@pytest.mark.parametrize(
    ("line", "priority"),
    [
        ('{"event": "ready", "level": "info"}', 6),
        ('{"event": "caption_retry", "level": "warning"}', 4),
        ('{"event": "captioning_paused", "level": "error"}', 3),
        ('{"event": "image_queued", "level": "debug"}', 7),
        ("2026-11-23T12:00:00Z [error    ] state_write_failed", 3),
        ("something else", 6),
    ],
)
def test_syslog_priority_follows_the_level(line: str, priority: int) -> None:
    assert camlog.syslog_priority(line) == priority
