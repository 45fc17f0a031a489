"""Fixtures for the end-to-end tests: a camera tree in tmp_path, the stand-in caption API and
webhook receivers (`camwatch.testing`), a config writer, and `start_daemon`, which starts the REAL
`camwatch run` as a subprocess (see `support.Daemon`) and stops every one it started."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from camwatch.testing import StandinCaptionAPI, WebhookReceiver

from .support import API_KEY, SECRET_ENV, ConfigWriter, Daemon, Tree, base_config


@pytest.fixture
def start_daemon() -> Iterator[Callable[..., Daemon]]:
    """Return `start(config, *args, env=None, wait_ready=True) -> Daemon`; every daemon started
    is stopped at the end of the test, and none may have logged a traceback."""
    started: list[Daemon] = []

    def start(
        config: Path,
        *args: str,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
    ) -> Daemon:
        daemon = Daemon(config, args, env)
        started.append(daemon)
        return daemon.start(wait_ready=wait_ready)

    yield start
    for daemon in started:
        daemon.close()
    for daemon in started:
        assert not daemon.tracebacks(), f"the daemon logged a traceback\n{daemon.tail()}"


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    """Return a fresh camera tree."""
    root = tmp_path
    for sub in ("cams/frontdoor", "cams/driveway", "state", "archive", "outside"):
        (root / sub).mkdir(parents=True)
    real = Path(os.path.realpath(root))
    return Tree(
        root=real,
        frontdoor=real / "cams" / "frontdoor",
        driveway=real / "cams" / "driveway",
        state=real / "state",
        archive=real / "archive",
        outside=real / "outside",
    )


@pytest.fixture
def api() -> Iterator[StandinCaptionAPI]:
    """The stand-in caption API on 127.0.0.1, accepting `API_KEY`; captions come from the JPEG
    comment `jpeg_with_caption` writes."""
    with StandinCaptionAPI(captions={}, api_key=API_KEY) as server:
        yield server


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    """A webhook receiver on 127.0.0.1."""
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def hooks2() -> Iterator[WebhookReceiver]:
    """A second webhook receiver."""
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def config(
    tree: Tree, api: StandinCaptionAPI, hooks: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> ConfigWriter:
    """Return the config writer (file `tmp_path/config.yaml`), with the secrets in the
    environment the daemon is started with."""
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    return ConfigWriter(tree.root / "config.yaml", base_config(tree, api, hooks))
