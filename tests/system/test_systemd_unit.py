"""systemd/camwatch.service passes `systemd-analyze verify` and scores 1.5 or lower on
`systemd-analyze security --offline=true` (the Debian package `systemd` ships the tool)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "camwatch.service"
SYSUSERS = ROOT / "packaging" / "sysusers.d" / "camwatch.conf"
MAX_EXPOSURE = 1.5
ANALYZE = shutil.which("systemd-analyze")

pytestmark = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (Debian package: systemd)"
)

_EXPOSURE_RE = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")
# The only complaint verify may have about the shipped file on a machine without camwatch in
# /opt: the ExecStart binary is not there.
_MISSING_EXEC_RE = re.compile(r"Command (\S+) is not executable: No such file or directory")


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    """Given systemd-analyze arguments, run it without colours or pager and return the result."""
    assert ANALYZE is not None
    env = dict(os.environ, SYSTEMD_COLORS="0", SYSTEMD_PAGER="", LC_ALL="C.UTF-8")
    return subprocess.run(
        [ANALYZE, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def _directive(text: str, name: str) -> list[str]:
    """Given unit-file text and a directive name, return the values of its active lines."""
    return [
        line.split("=", 1)[1]
        for line in text.splitlines()
        if line.startswith(f"{name}=") and not line.startswith("#")
    ]


def _problems(output: str, allowed_missing: set[str]) -> list[str]:
    """Given verify's output, return its lines that are not a missing-binary complaint about an
    allowed path (and not blank)."""
    problems = []
    for line in output.splitlines():
        match = _MISSING_EXEC_RE.search(line)
        if not line.strip() or (match and match.group(1) in allowed_missing):
            continue
        problems.append(line)
    return problems


def test_unit_verifies_with_its_binary_in_place(tmp_path: Path) -> None:
    # A copy whose ExecStart names a binary that exists here, under the same unit name: verify
    # then sees every other directive, and any complaint at all is a real one.
    text = UNIT.read_text(encoding="utf-8")
    (exec_start,) = _directive(text, "ExecStart")
    binary = exec_start.split()[0]
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={binary} ", f"ExecStart={sys.executable} "))
    result = _analyze("verify", str(copy))
    assert result.returncode == 0, result.stdout + result.stderr
    assert _problems(result.stdout + result.stderr, set()) == []


def test_shipped_unit_verifies_but_for_the_absent_install(tmp_path: Path) -> None:
    text = UNIT.read_text(encoding="utf-8")
    (exec_start,) = _directive(text, "ExecStart")
    binary = exec_start.split()[0]
    result = _analyze("verify", str(UNIT))
    output = result.stdout + result.stderr
    assert _problems(output, {binary}) == [], output
    if Path(binary).exists():
        assert result.returncode == 0, output


def test_verify_catches_a_real_error(tmp_path: Path) -> None:
    # The check above must be able to fail: a misspelt directive is reported.
    copy = tmp_path / UNIT.name
    copy.write_text(
        UNIT.read_text(encoding="utf-8").replace("NotifyAccess=main", "NotifyAccess=mian")
    )
    result = _analyze("verify", str(copy))
    binary = _directive(UNIT.read_text(encoding="utf-8"), "ExecStart")[0].split()[0]
    assert _problems(result.stdout + result.stderr, {binary}) != []


def test_security_exposure_is_at_most_the_threshold() -> None:
    result = _analyze("security", "--offline=true", "--no-pager", str(UNIT))
    output = result.stdout + result.stderr
    match = _EXPOSURE_RE.search(output)
    assert match, f"no overall exposure in systemd-analyze output:\n{output}"
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, output


def test_unit_keeps_the_behaviour_the_daemon_relies_on() -> None:
    text = UNIT.read_text(encoding="utf-8")
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "Restart": ["on-failure"],
        "RestartPreventExitStatus": ["78"],
        "LoadCredential": ["api_key:/etc/camwatch/api_key"],
        "DynamicUser": ["yes"],
        "StateDirectory": ["camwatch"],
        "SupplementaryGroups": ["camwatch-cams"],
    }
    for name, values in expected.items():
        assert _directive(text, name) == values, name
    (exec_start,) = _directive(text, "ExecStart")
    assert exec_start.split()[1:] == ["run", "-c", "/etc/camwatch/config.yaml"]
    (watchdog,) = _directive(text, "WatchdogSec")
    assert watchdog.endswith("s") and int(watchdog[:-1]) >= 30
    # Writes to camera folders are opt-in: shipped commented out.
    assert _directive(text, "ReadWritePaths") == []
    assert "#ReadWritePaths=" in text


def test_sysusers_snippet_creates_the_group_the_unit_joins(tmp_path: Path) -> None:
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        pytest.skip("systemd-sysusers is not installed (Debian package: systemd)")
    # --root keeps the host's /etc/group out of it: a fresh tree that gets the group created.
    (tmp_path / "etc").mkdir()
    result = subprocess.run(
        [sysusers, f"--root={tmp_path}", str(SYSUSERS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    groups = (tmp_path / "etc" / "group").read_text(encoding="utf-8").splitlines()
    assert any(line.startswith("camwatch-cams:") for line in groups), groups
