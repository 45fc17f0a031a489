"""The newcomer's first hour: the example configuration as the README uses it, the exit codes the
README lists, and the help every command and option gives."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from camwatch.cli import build_parser

from .support import ConfigWriter, Daemon, run_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.yaml"


def _example_env(tmp_path: Path) -> dict[str, str]:
    for camera in ("frontdoor", "driveway"):
        (tmp_path / "cams" / camera).mkdir(parents=True, exist_ok=True)
    return {
        "CAMWATCH_CAMERAS": str(tmp_path / "cams"),
        "CAMWATCH_STATE_DIR": str(tmp_path / "state"),
    }


def test_the_example_takes_the_key_from_a_systemd_credential_when_no_variable_is_set(
    tmp_path: Path,
) -> None:
    # Step 7 of "Install as a service": the key file's folder stands in for the credentials.
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "api_key").write_text("k-from-the-credential\n")
    env = {**_example_env(tmp_path), "CREDENTIALS_DIRECTORY": str(creds)}
    result = run_cli("check-config", "-c", str(EXAMPLE), env=env)
    assert result.returncode == 0, result.stderr
    assert "k-from-the-credential" not in result.stdout + result.stderr


def test_without_any_key_the_error_says_where_a_key_can_come_from(tmp_path: Path) -> None:
    result = run_cli("check-config", "-c", str(EXAMPLE), env=_example_env(tmp_path))
    assert result.returncode == 78
    message = result.stderr
    assert message.startswith("camwatch: caption.api_key: no API key")
    for way in ("CAMWATCH_API_KEY", "caption.api_key_file", "LoadCredential=api_key"):
        assert way in message


def test_the_example_logs_for_a_terminal_on_a_terminal() -> None:
    # `format: json` forced in the example made "Run it for real" print JSON on a terminal.
    text = EXAMPLE.read_text()
    log_lines = [line for line in text.splitlines() if line.startswith("log:")]
    assert log_lines and "json" not in log_lines[0].split("#")[0]


def test_test_rules_says_that_schedules_and_cooldowns_are_not_applied(
    config: ConfigWriter,
) -> None:
    path = config.write()
    result = run_cli("test-rules", "-c", str(path), "--json", "a person lying on the ground")
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout.splitlines()[0])  # stdout stays JSON for scripts
    assert "schedules (active, days) and cooldowns are not applied" in result.stderr
    help_text = run_cli("test-rules", "--help").stdout
    assert re.search(r"schedules.*cooldowns\s+are\s+not\s+applied", help_text, re.DOTALL | re.I)


@pytest.mark.parametrize(
    "args",
    [["run", "--bogus"], ["test-rules", "--camera"], ["caption"], ["no-such-command"]],
    ids=["unknown-option", "missing-value", "missing-argument", "unknown-command"],
)
def test_an_argument_error_exits_64_as_the_readme_says(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 64, result.stderr
    assert "usage: camwatch" in result.stderr
    readme = (ROOT / "README.md").read_text()
    assert "64 usage" in readme


def test_a_second_daemon_on_the_same_state_dir_exits_75(
    config: ConfigWriter, start_daemon: Callable[..., Daemon]
) -> None:
    path = config.write()
    first = start_daemon(path)
    result = run_cli("run", "-c", str(path), "--once", timeout=30)
    assert result.returncode == 75, result.stderr
    assert f"already running as pid {first.pid}" in result.stderr
    assert "75 already running" in (ROOT / "README.md").read_text()
    first.terminate()
    # The lock goes with the process that held it: the next run starts.
    again = run_cli("run", "-c", str(path), "--once", timeout=60)
    assert again.returncode == 0, again.stderr


def _options(parser: argparse.ArgumentParser, where: str) -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _options(sub, f"{where} {name}")
        elif not isinstance(action, argparse._HelpAction):
            found.append((f"{where} {action.dest}", action))
    return found


def test_every_command_and_option_has_help() -> None:
    parser = build_parser()
    missing = [name for name, action in _options(parser, "camwatch") if not action.help]
    assert not missing, f"no --help text for: {missing}"
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    described = {c.dest for c in subparsers._choices_actions if c.help}
    assert described == set(subparsers.choices), set(subparsers.choices) - described
