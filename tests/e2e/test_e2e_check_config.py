"""End to end: `check-config` catches what `run` would trip on, each problem on one line that
starts with its field path; errors exit 78, warnings (on stderr, `warning: ...`) keep exit 0.

The checks that are part of loading (a base_url holding the endpoint path, a notify URL no
Apprise plugin accepts) make `run` exit 78 too, and a reload keep the old configuration. The
ones that depend on the user running the check (a state_dir it cannot write, a camera folder it
cannot read) run as uid 65534 (`nobody`) through setpriv, since the tests run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from camwatch.testing import StandinCaptionAPI

from .support import ConfigWriter, Daemon, daemon_env, run_cli

EX_CONFIG = 78
TOKEN = "T0KEN-e2e-7c41"  # the secret part of an Apprise URL: never printed
WIKI = "https://github.com/caronc/apprise/wiki"
RAW_PYDANTIC = ("Input should", "after validation", "pydantic", "type=", "Field required")


def _lines(stderr: str, prefix: str) -> list[str]:
    return [line.removeprefix(prefix) for line in stderr.splitlines() if line.startswith(prefix)]


# -- no rules --------------------------------------------------------------------------------------


def test_without_rules_check_config_warns_that_nothing_will_alert(config: ConfigWriter) -> None:
    for data in (config.data(rules=[]), {k: v for k, v in config.data().items() if k != "rules"}):
        result = run_cli("check-config", "-c", str(config.write(data)))
        assert result.returncode == 0, result.stderr
        assert _lines(result.stderr, "warning: ") == [
            "rules: none configured; no image will ever raise an alert"
        ]
    result = run_cli("check-config", "-c", str(config.write()))
    assert result.returncode == 0, result.stderr
    assert "rules:" not in result.stderr


# -- refused at load: check-config, run and a reload ---------------------------------------------


def test_a_base_url_holding_the_endpoint_path_is_refused_by_check_config_and_run(
    config: ConfigWriter, api: StandinCaptionAPI
) -> None:
    data = config.data()
    data["caption"]["base_url"] = f"{api.url}/v1/understand/uploadImg"
    path = config.write(data)
    for command in (("check-config",), ("run", "--once")):
        result = run_cli(*command, "-c", str(path), timeout=30)
        assert result.returncode == EX_CONFIG, result.stdout + result.stderr
        assert _lines(result.stderr, "camwatch: ") == [
            "caption.base_url: ends with the endpoint path '/v1/understand/uploadImg'; give only"
            f" the address ({api.url}); the path is caption.endpoint"
        ]


def test_an_apprise_url_no_plugin_understands_is_refused_without_its_token(
    config: ConfigWriter,
) -> None:
    data = config.data(
        notify=[{"name": "phones", "urls": ["ntfy://camwatch-alerts", f"foo://{TOKEN}@host/x"]}]
    )
    path = config.write(data)
    for command in (("check-config",), ("run", "--once")):
        result = run_cli(*command, "-c", str(path), timeout=30)
        assert result.returncode == EX_CONFIG, result.stdout + result.stderr
        assert _lines(result.stderr, "camwatch: ") == [
            f"notify[0].urls[1]: no Apprise plugin understands 'foo://...' URLs (see {WIKI})"
        ]
        assert TOKEN not in result.stdout + result.stderr


def test_a_reload_to_an_apprise_url_no_plugin_understands_is_refused(
    config: ConfigWriter, start_daemon: Callable[..., Daemon]
) -> None:
    path = config.write()
    daemon = start_daemon(path)
    config.write(notify=[{"name": "phones", "urls": [f"discord://{TOKEN}"]}])
    daemon.hup()
    refused = daemon.wait_event("reload_refused")
    assert refused["problems"] == [
        f"notify[0].urls[0]: Apprise's plugin for 'discord://...' URLs cannot use this one"
        f" (a part is missing or malformed; see {WIKI})"
    ]
    assert daemon.running()
    assert TOKEN not in daemon.stderr_text
    assert daemon.terminate()[0] == 0


# -- messages ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["rules"][0].update(cooldown="soon"),
            "rules[0].cooldown: expected a duration, got 'soon'"
            " (write e.g. 500ms, 1.5s, 5m, 2h or 7d, or a number of seconds)",
        ),
        (lambda d: d.update(debounse="2s"), "debounse: unknown key; did you mean 'debounce'?"),
        (
            lambda d: d["cameras"][0].update(debounce="2s"),
            "cameras[0].debounce: unknown key here; 'debounce' is a setting of the top level",
        ),
        (
            lambda d: d.update(cameras=[]),
            "cameras: at least one camera is needed, got an empty list",
        ),
        (
            lambda d: d["caption"].update(concurrency="lots"),
            "caption.concurrency: expected a whole number, got 'lots'",
        ),
        (
            lambda d: d["rules"][1].update(severity="urgnet"),
            "rules[1].severity: expected 'info', 'warning' or 'critical', got 'urgnet'",
        ),
    ],
    ids=["duration", "misspelt-key", "key-in-the-wrong-place", "no-camera", "int", "choice"],
)
def test_check_config_says_what_was_expected_in_plain_words(
    config: ConfigWriter, change: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    data = config.data()
    change(data)
    result = run_cli("check-config", "-c", str(config.write(data)))
    assert result.returncode == EX_CONFIG, result.stdout + result.stderr
    assert _lines(result.stderr, "camwatch: ") == [expected]
    for raw in RAW_PYDANTIC:
        assert raw not in result.stderr


# -- as another user: what it can write and read ---------------------------------------------------

NOBODY = 65534
AS_NOBODY = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
FIX_STATE = (
    "under systemd, keep state_dir: /var/lib/camwatch and let StateDirectory=camwatch create it"
    " (docs/systemd.md)"
)
FOR_SERVICE = "(for the systemd service, grant the group camwatch-cams: docs/systemd.md)"


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder uid 65534 can enter (tmp_path's parents are private to root), holding
    cams/front and cams/back (readable by all), and a config to write. Removed at the end."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to run check-config as another user")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    base = Path(os.path.realpath(tempfile.mkdtemp(prefix="camwatch-e2e-check-")))
    try:
        base.chmod(0o755)
        probe = _as_nobody([sys.executable, "-c", "import camwatch.cli"], base)
        if probe.returncode != 0:
            pytest.skip(f"uid {NOBODY} cannot run the project's Python: {probe.stderr[-300:]}")
        for sub in ("cams/front", "cams/back"):
            (base / sub).mkdir(parents=True)
            (base / sub).chmod(0o755)
        yield base
    finally:
        for folder, _, _ in os.walk(base):
            os.chmod(folder, 0o755)
        shutil.rmtree(base, ignore_errors=True)


def _as_nobody(argv: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AS_NOBODY, *argv],
        capture_output=True,
        text=True,
        env=daemon_env({"HOME": str(home), "CAMWATCH_API_KEY": "e2e-key-for-nobody"}),
        timeout=60,
        check=False,
    )


def _check_as_nobody(
    base: Path, state_dir: Path, **changes: Any
) -> subprocess.CompletedProcess[str]:
    """Write a config for the cameras in `base` (the key from the environment, nothing secret
    in the file) and run check-config on it as uid 65534."""
    data: dict[str, Any] = {
        "caption": {"api_key": "${CAMWATCH_API_KEY}"},
        "cameras": [
            {"name": "front", "path": str(base / "cams" / "front")},
            {"name": "back", "path": str(base / "cams" / "back")},
        ],
        "state_dir": str(state_dir),
        "rules": [{"name": "parcel", "any": ["parcel"]}],
        **changes,
    }
    path = base / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    path.chmod(0o644)
    return _as_nobody([sys.executable, "-m", "camwatch", "check-config", "-c", str(path)], base)


def _user() -> str:
    return f"user {pwd.getpwuid(NOBODY).pw_name} (uid {NOBODY})"


def _state_dir_for_nobody(base: Path) -> Path:
    state = base / "state"
    state.mkdir()
    os.chown(state, NOBODY, NOBODY)
    return state


def test_as_nobody_a_state_dir_it_cannot_write_is_an_error(shared: Path) -> None:
    state = shared / "state"
    state.mkdir(mode=0o755)  # root's
    result = _check_as_nobody(shared, state)
    assert result.returncode == EX_CONFIG, result.stdout + result.stderr
    assert _lines(result.stderr, "camwatch: ") == [
        f"state_dir: {str(state)!r} is not writable by {_user()}; give it to that user"
        f" (chown -R {pwd.getpwuid(NOBODY).pw_name} {state}), or {FIX_STATE}"
    ]
    assert not result.stdout  # no "OK" summary for a configuration run would refuse

    os.chown(state, NOBODY, NOBODY)  # the fix it gives
    result = _check_as_nobody(shared, state)
    assert result.returncode == 0, result.stderr
    assert f"{shared / 'config.yaml'}: OK" in result.stdout


def test_as_nobody_a_state_dir_it_cannot_create_is_an_error(shared: Path) -> None:
    state = shared / "private" / "camwatch"  # shared is root's: nobody cannot create in it
    result = _check_as_nobody(shared, state)
    assert result.returncode == EX_CONFIG, result.stdout + result.stderr
    assert _lines(result.stderr, "camwatch: ") == [
        f"state_dir: {str(state)!r} does not exist and {_user()} cannot create it in"
        f" {str(shared)!r}; create it for that user (install -d -o"
        f" {pwd.getpwuid(NOBODY).pw_name} {state}), or {FIX_STATE}"
    ]
    assert not state.exists() and not state.parent.exists()  # the check created nothing


def test_as_nobody_a_state_database_of_another_user_is_an_error(shared: Path) -> None:
    state = _state_dir_for_nobody(shared)
    (state / "camwatch.db").write_bytes(b"")  # root's, mode 0644: a root run made it
    result = _check_as_nobody(shared, state)
    assert result.returncode == EX_CONFIG, result.stdout + result.stderr
    assert _lines(result.stderr, "camwatch: ") == [
        f"state_dir: {str(state / 'camwatch.db')!r} cannot be read and written by {_user()}"
        f" (another user's?); give the folder to that user (chown -R"
        f" {pwd.getpwuid(NOBODY).pw_name} {state}), or {FIX_STATE}"
    ]


def test_as_nobody_a_camera_folder_it_cannot_read_is_a_warning(shared: Path) -> None:
    state = _state_dir_for_nobody(shared)
    front = shared / "cams" / "front"
    front.chmod(0o700)  # root's, private
    result = _check_as_nobody(shared, state)
    assert result.returncode == 0, result.stderr
    name = pwd.getpwuid(NOBODY).pw_name
    assert _lines(result.stderr, "warning: ") == [
        f"cameras[0].path: {_user()} cannot read the folder {str(front)!r}, so the daemon"
        f" cannot see this camera's images; grant it: setfacl -R -m u:{name}:rX {front} &&"
        f" setfacl -R -d -m u:{name}:rX {front} {FOR_SERVICE}"
    ]
    assert f"{shared / 'config.yaml'}: OK" in result.stdout

    front.chmod(0o755)
    result = _check_as_nobody(shared, state)
    assert result.returncode == 0, result.stderr
    assert "warning:" not in result.stderr


def test_as_nobody_a_camera_below_a_folder_it_cannot_enter_is_a_warning(shared: Path) -> None:
    state = _state_dir_for_nobody(shared)
    locked = shared / "locked"
    back = locked / "back"
    back.mkdir(parents=True)
    locked.chmod(0o700)
    result = _check_as_nobody(
        shared,
        state,
        cameras=[
            {"name": "front", "path": str(shared / "cams" / "front")},
            {"name": "back", "path": str(back)},
            {"name": "usb", "path": str(shared / "usb")},
        ],
    )
    assert result.returncode == 0, result.stderr
    assert _lines(result.stderr, "warning: ") == [
        f"cameras[1].path: {_user()} cannot enter {str(locked)!r}, a folder above"
        f" {str(back)!r}, so the daemon cannot see this camera's images; grant it:"
        f" setfacl -m u:{pwd.getpwuid(NOBODY).pw_name}:x {locked} {FOR_SERVICE}",
        f"cameras[2].path: {str(shared / 'usb')!r} is missing; the daemon starts anyway and"
        " watches it once it is there",
    ]
