"""`camwatch run --daemon --pidfile P`: detach with python-daemon, for hosts without systemd.

The pid file is locked for as long as the daemon runs, so a second daemon on the same pid file
refuses to start instead of running twice. Logs go to `log.file` (default
`<state_dir>/camwatch.log`), or to syslog with `log.syslog: true`, since a detached process has no
terminal.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

import daemon
import daemon.pidfile

from camwatch.config import Config
from camwatch.log import SyslogStream, configure


def log_path(config: Config) -> Path:
    """Return where a detached daemon writes its log."""
    return config.log.file or Path(config.state_dir) / "camwatch.log"


def run_detached(config_path: str, config: Config, pidfile: str, once: bool = False) -> int:
    """Detach and run the daemon. Return 0 in the parent once the child is detached; refuse
    (exit 75) if another daemon holds the pid file."""
    from camwatch.service import run_service

    pid_path = os.path.abspath(pidfile)
    lock = daemon.pidfile.TimeoutPIDLockFile(pid_path, acquire_timeout=0)
    if lock.is_locked():
        try:
            pid = int(Path(pid_path).read_text().strip())
            os.kill(pid, 0)
            print(f"camwatch: already running as pid {pid} ({pid_path})", file=sys.stderr)
            return 75
        except (OSError, ValueError):
            lock.break_lock()  # a stale pid file left by a crash
    config_path = os.path.abspath(config_path)
    log_file: TextIO | None = None
    if not config.log.syslog:
        log_file_path = log_path(config)
        log_file_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log_file_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    context = daemon.DaemonContext(
        pidfile=lock,
        working_directory="/",
        umask=0o027,
        files_preserve=[log_file] if log_file else [],
        stdout=log_file,
        stderr=log_file,
        # Our own handlers are installed by the service; keep python-daemon's out of the way.
        signal_map={},
    )
    with context:
        stream = log_file if log_file is not None else SyslogStream()
        configure(config.log.level, config.log.format or "json", stream=stream)
        code = run_service(config_path, config, once=once)
    return code
