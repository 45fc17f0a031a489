"""The README's first command, run exactly as written in a fresh copy of the source tree.

It is the newcomer's first contact: it makes its own virtualenv (on a stock Debian or Ubuntu a
plain `pip install` is refused as "externally managed"), installs camwatch into it from the
package registry, and runs the demo. A copy of the tree is used so that the checkout's own
`.venv` (CI's) is neither reused nor disturbed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# Generated or local: never part of what a newcomer clones.
IGNORED = shutil.ignore_patterns(
    ".venv", ".git", "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache", "build", "dist"
)


def readme_commands() -> list[str]:
    """Return the shell blocks of the README's "Try it, then test it" section, in order."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Try it, then test it", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL)]


def test_the_readme_opens_with_one_install_line_and_one_test_line() -> None:
    install, tests = readme_commands()[:2]
    assert "\n" not in install, "the first command is one line to copy"
    assert install.endswith("camwatch demo")
    assert "python3 -m venv .venv" in install
    assert "\n" not in tests
    assert tests.endswith("python -m pytest -q")


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is needed to run the line")
def test_the_first_command_installs_and_runs_the_demo_in_a_fresh_virtualenv(
    tmp_path: Path,
) -> None:
    install = readme_commands()[0]
    src = tmp_path / "camwatch"
    shutil.copytree(ROOT, src, ignore=IGNORED, symlinks=True)
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    # The test's own virtualenv must not be the `python3` the line finds first.
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT / ".venv"))
    )
    env.pop("PYTHONHOME", None)
    result = subprocess.run(
        ["bash", "-c", install],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert (src / ".venv" / "bin" / "camwatch").exists()
    summary = re.search(r"demo: (\d+)/(\d+) images captioned, (\d+)/(\d+) alerts received", out)
    assert summary is not None, out[-4000:]
    captioned, planned, received, expected = map(int, summary.groups())
    assert captioned == planned > 0
    assert received == expected > 0
