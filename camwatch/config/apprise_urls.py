"""Checks that every notify URL is one Apprise can send to, when the configuration is loaded.

A URL no Apprise plugin understands can never deliver anything: the daemon would accept the
file, then refuse each alert for that target when it comes. Checked at load, it is a config
error instead (check-config and run exit 78, a reload is refused), named `notify[i].urls[j]`
and shown by its scheme only: the rest of an Apprise URL is usually a token.

Apprise is imported here only when there are notify targets: it takes a tenth of a second to
load. It logs a URL it cannot parse, whole, at error level; those records are dropped while
checking, or they would print the token this module takes care not to show.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from camwatch.config.models import Config

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,31})://")
_WIKI = "https://github.com/caronc/apprise/wiki"


def apprise_url_problems(config: Config) -> list[str]:
    """Return one problem per notify URL that no Apprise plugin accepts, naming its field and
    at most its scheme."""
    urls = [
        (f"notify[{i}].urls[{j}]", url.get_secret_value())
        for i, target in enumerate(config.notify)
        for j, url in enumerate(target.urls)
    ]
    if not urls:
        return []
    import apprise  # slow to load: only for a file with notify targets
    from apprise.plugins import N_MGR

    problems: list[str] = []
    with _apprise_logs_dropped():
        for field, url in urls:
            if apprise.Apprise().add(url):
                continue
            problems.append(f"{field}: {_why(url, N_MGR)}")
    return problems


def _why(url: str, plugins: Any) -> str:
    """Return why Apprise refused `url`, showing only its scheme."""
    match = _SCHEME.match(url.strip())
    if match is None:
        return f"not an Apprise URL (expected service://..., e.g. ntfy://topic; see {_WIKI})"
    scheme = match.group(1).lower()
    if scheme not in plugins:
        return f"no Apprise plugin understands '{scheme}://...' URLs (see {_WIKI})"
    if not getattr(plugins[scheme], "enabled", True):
        return (
            f"Apprise's plugin for '{scheme}://...' URLs cannot run on this machine"
            " (a package it needs is missing)"
        )
    return (
        f"Apprise's plugin for '{scheme}://...' URLs cannot use this one (a part is missing or"
        f" malformed; see {_WIKI})"
    )


class _DropThisThread(logging.Filter):
    """Drops the records logged by one thread (the one checking), not the daemon's others."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread


@contextmanager
def _apprise_logs_dropped() -> Iterator[None]:
    logger = logging.getLogger("apprise")
    dropped = _DropThisThread()
    logger.addFilter(dropped)
    try:
        yield
    finally:
        logger.removeFilter(dropped)
