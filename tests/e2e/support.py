"""Helpers for the end-to-end tests: the REAL `camwatch run` as a subprocess (`Daemon`), the
camera tree, the configuration, dropping images and checking the alerts received.

`Daemon` reads the daemon's JSON log lines (stderr) on a thread into a list of parsed events;
`wait_event` waits on a Condition with a deadline (never a blind sleep), and fails with the log
tail so that a failing test says what the daemon was doing. Every subprocess, pipe, thread and
server a test starts is stopped and closed by the fixtures (pytest runs with
`filterwarnings = error`, so a leaked pipe or process would fail the run).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from camwatch.testing import StandinCaptionAPI, WebhookReceiver, jpeg_with_caption

API_KEY = "e2e-api-key-4b7f09c2d1"
HOOK_SECRET = "e2e-hook-secret-9a61e3"
OTHER_SECRET = "e2e-other-secret-c58d2f"

START_TIMEOUT = 30.0  # interpreter start and imports, on a loaded 2-core CI machine
WAIT = 30.0  # default deadline for anything the daemon should do promptly

# Variables a developer's shell (or systemd) may hold that would change the daemon's behaviour.
_SCRUBBED_ENV = (
    "CAMWATCH_CONFIG",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "CREDENTIALS_DIRECTORY",
    "LISTEN_FDS",
)


def daemon_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment for a camwatch subprocess."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def sha256(data: bytes) -> str:
    """Return the hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def image(caption: str) -> bytes:
    """Return a real JPEG that the stand-in API captions as `caption` (distinct captions give
    distinct bytes)."""
    return jpeg_with_caption(caption)


# -- the daemon ----------------------------------------------------------------------------------


class Daemon:
    """The real daemon, `python -m camwatch run -c CONFIG`, as a subprocess."""

    def __init__(
        self,
        config: Path,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.config = config
        self.argv = [sys.executable, "-m", "camwatch", "run", "-c", str(config), *args]
        self.env = daemon_env(env)
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self._cond = threading.Condition()
        self._events: list[dict[str, Any]] = []
        self._lines: list[str] = []
        self._reader: threading.Thread | None = None
        self._eof = False

    # -- life cycle -----------------------------------------------------------------------------

    def start(self, wait_ready: bool = True) -> Daemon:
        """Start the daemon; with `wait_ready`, wait for its `ready` event."""
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.cwd,
        )
        self._reader = threading.Thread(target=self._read, name="e2e-daemon-log", daemon=True)
        self._reader.start()
        if wait_ready:
            self.wait_event("ready", timeout=START_TIMEOUT)
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:  # ends at EOF, when the process exits
            line = raw.rstrip("\n")
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                event = {"event": "<not json>", "raw": line}
            with self._cond:
                self._lines.append(line)
                self._events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        """Return whether the process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: signal.Signals) -> None:
        """Send a signal to the daemon."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def hup(self) -> None:
        """Ask the daemon to reload its configuration."""
        self.send(signal.SIGHUP)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit; return its status. Fail the test after `timeout`."""
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"camwatch still running after {timeout:g}s\n{self.tail()}")
        self._finish_reader()
        return code

    def terminate(self, timeout: float = 15.0) -> tuple[int, float]:
        """Send SIGTERM and wait for the exit. Return (exit status, seconds it took)."""
        started = time.monotonic()
        self.send(signal.SIGTERM)
        code = self.wait_exit(timeout)
        return code, time.monotonic() - started

    def kill9(self) -> None:
        """Kill the daemon with SIGKILL (no chance to clean up) and reap it."""
        self.send(signal.SIGKILL)
        self.wait_exit(10.0)

    def close(self) -> None:
        """Stop the process if it still runs, reap it, and close its pipe."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10.0)
        self._finish_reader()

    def _finish_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(10.0)
        assert self.proc is not None
        if self.proc.stderr is not None and not self.proc.stderr.closed:
            self.proc.stderr.close()

    # -- the log --------------------------------------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every log event so far, parsed (a copy)."""
        with self._cond:
            return list(self._events)

    @property
    def stderr_text(self) -> str:
        """Everything the daemon wrote on stderr so far."""
        with self._cond:
            return "\n".join(self._lines)

    def named(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        """Return the events called `name` whose fields equal `fields`."""
        return [e for e in self.events if e.get("event") == name and _has(e, fields)]

    def wait_event(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = WAIT,
        count: int = 1,
        **fields: Any,
    ) -> dict[str, Any]:
        """Wait until `count` events called `name` (with `fields`, passing `predicate`) were
        logged. Return the last of them. Fail the test after `timeout` seconds, or at once if the
        daemon exits first."""

        def found() -> list[dict[str, Any]]:
            return [
                e
                for e in self._events
                if e.get("event") == name
                and _has(e, fields)
                and (predicate is None or predicate(e))
            ]

        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = found()
                if len(hits) >= count:
                    return hits[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    break
                self._cond.wait(min(left, 0.5))
        why = "the daemon exited" if self._eof else f"timed out after {timeout:g}s"
        pytest.fail(f"{why} waiting for {count} x {name} {fields or ''}\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        """Return the last log lines, for a failure message."""
        with self._cond:
            return "daemon log tail:\n" + "\n".join(self._lines[-lines:])

    def tracebacks(self) -> list[dict[str, Any]]:
        """Return the events that carry an exception (a bug, whatever the test checks)."""
        return [e for e in self.events if "exception" in e]


def _has(event: dict[str, Any], fields: dict[str, Any]) -> bool:
    return all(event.get(k) == v for k, v in fields.items())


def run_cli(
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m camwatch ARGS` to completion; return its result (text stdout/stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "camwatch", *args],
        input=input,
        capture_output=True,
        text=True,
        env=daemon_env(env),
        timeout=timeout,
        check=False,
    )


# -- the camera tree and the configuration ---------------------------------------------------------


@dataclass
class Tree:
    """A camera tree in tmp_path: two camera folders, a state dir, an archive dir, and a folder
    no camera watches."""

    root: Path
    frontdoor: Path
    driveway: Path
    state: Path
    archive: Path
    outside: Path

    def cam(self, name: str) -> Path:
        """Return a camera's folder (resolved: the path alerts name)."""
        return Path(os.path.realpath(self.root / "cams" / name))


RULES: list[dict[str, Any]] = [
    {
        "name": "person-down",
        "any": ["lying on the ground", "collapsed"],
        "none": ["statue"],
        "severity": "critical",
    },
    {"name": "package", "any": ["parcel", "package"], "severity": "info"},
    {"name": "vehicle", "any": ["car", "truck"], "cameras": ["driveway"]},
]


def base_config(tree: Tree, api: StandinCaptionAPI, hooks: WebhookReceiver) -> dict[str, Any]:
    """Return the tests' configuration as a dict: small timings, two cameras, three rules, one
    signed webhook."""
    return {
        "caption": {
            "base_url": api.url,
            "api_key": "${CAMWATCH_API_KEY}",
            "user_prompt": "What is happening here?",
            "system_prompt": "You watch a house.",
            "timeout": "5s",
            "concurrency": 2,
            "retry": {"attempts": 3, "backoff_initial": "50ms", "backoff_max": "200ms"},
            "pause_probe": "1s",
        },
        "cameras": [
            {"name": "frontdoor", "path": str(tree.frontdoor)},
            {"name": "driveway", "path": str(tree.driveway)},
        ],
        "debounce": "250ms",
        "complete_timeout": "2s",
        "state_dir": str(tree.state),
        "rules": copy.deepcopy(RULES),
        "webhooks": [{"name": "main", "url": hooks.url, "secret": "${CAMWATCH_WEBHOOK_SECRET}"}],
        "delivery": {"backoff_initial": "100ms", "backoff_max": "500ms"},
        "log": {"level": "info", "format": "json"},
    }


SECRET_ENV = {"CAMWATCH_API_KEY": API_KEY, "CAMWATCH_WEBHOOK_SECRET": HOOK_SECRET}


@dataclass
class ConfigWriter:
    """Writes the configuration file; `write(**changes)` starts from the base each time."""

    path: Path
    base: dict[str, Any]

    def write(self, config: dict[str, Any] | None = None, **changes: Any) -> Path:
        """Write `config` (default: the base) with top-level `changes`; return the path."""
        data = copy.deepcopy(self.base if config is None else config)
        data.update(copy.deepcopy(changes))
        self.path.write_text(yaml.safe_dump(data, sort_keys=False))
        return self.path

    def write_text(self, text: str) -> Path:
        """Write the file as given (for invalid files)."""
        self.path.write_text(text)
        return self.path

    def data(self, **changes: Any) -> dict[str, Any]:
        """Return a copy of the base with top-level `changes`."""
        data = copy.deepcopy(self.base)
        data.update(copy.deepcopy(changes))
        return data


# -- dropping images and reading alerts ------------------------------------------------------------


def drop(path: Path, data: bytes) -> Path:
    """Write a file plainly, as a camera on a local disk does. Return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def uploads_of(api: StandinCaptionAPI, status: int | None = 200) -> list[Any]:
    """Return the upload requests the stand-in answered with `status` (None: all)."""
    return [r for r in api.requests if status is None or r.status == status]


def assert_alert(
    received: Any,
    *,
    rule: str,
    camera: str,
    image: Path,
    matched: list[str],
    data: bytes,
    secret: str | None = HOOK_SECRET,
    severity: str | None = None,
) -> dict[str, Any]:
    """Check one received webhook against the alert expected; return its body."""
    body = received.json
    assert isinstance(body, dict), received.body
    assert received.headers.get("Content-Type", "").startswith("application/json")
    assert body["event"] == "camwatch.alert"
    assert body["rule"] == rule
    assert body["camera"] == camera
    assert body["image"] == str(image)
    assert body["matched"] == matched
    assert body["sha256"] == sha256(data)
    if severity is not None:
        assert body["severity"] == severity
    assert received.headers.get("X-Camwatch-Event-Id") == body["id"]
    if secret is None:
        assert "X-Camwatch-Signature" not in received.headers
    else:
        assert WebhookReceiver.verify_signature(
            received.body, received.headers.get("X-Camwatch-Signature"), secret
        ), f"bad signature on {body['id']}"
    for key in ("detected_at", "alerted_at"):
        assert body[key].endswith("Z"), body[key]
    assert body["detected_at"] <= body["alerted_at"]
    return body


def alert_keys(received: list[Any]) -> list[tuple[str, str, str]]:
    """Return (rule, camera, image) of each received alert, sorted (duplicates kept)."""
    return sorted((r.json["rule"], r.json["camera"], r.json["image"]) for r in received)


def delivered(receiver: WebhookReceiver) -> list[Any]:
    """Return the POSTs the receiver answered with 2xx."""
    return receiver.delivered


def wait_until(
    predicate: Callable[[], object], timeout: float = WAIT, message: str = "condition"
) -> None:
    """Poll `predicate` (every 20 ms) until true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {message}")
        time.sleep(0.02)
