"""The command line: parses arguments, maps errors to exit codes (78 for a bad configuration)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from camwatch import __version__
from camwatch.config import DEFAULT_CONFIG_PATH, Config, load_config, parse_duration
from camwatch.errors import CaptionError, ConfigError, StateError, UsageError
from camwatch.log import configure, get_logger, register_secrets

EX_OK = 0
EX_USAGE = 64
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_IOERR = 74
EX_CONFIG = 78

log = get_logger(__name__)


def default_config_path() -> str:
    """Return `$CAMWATCH_CONFIG`, else /etc/camwatch/config.yaml."""
    return os.environ.get("CAMWATCH_CONFIG") or DEFAULT_CONFIG_PATH


def _load(path: str) -> Config:
    config = load_config(path)
    from camwatch.service import secrets_of

    register_secrets(secrets_of(config))
    return config


def _check_camera(config: Config, name: str | None) -> None:
    """Raise UsageError if `--camera NAME` names no configured camera."""
    if name and config.camera(name) is None:
        raise UsageError(f"--camera: unknown camera {name!r}")


def _print_problems(problems: list[str]) -> None:
    for problem in problems:
        print(f"camwatch: {problem}", file=sys.stderr)


def _log_readable_secrets(path: str) -> None:
    """Log `config_readable_by_others` if the file holds secrets every local user can read.
    Called once logging is configured as the file says (after `_load`)."""
    from camwatch.config import readable_secrets

    found = readable_secrets(path)
    if found is not None:
        log.warning(
            "config_readable_by_others",
            path=found.path,
            mode=f"{found.mode:04o}",
            secrets=found.fields,
            fix=found.fix,
        )


def cmd_run(args: argparse.Namespace) -> int:
    from camwatch.service import run_service

    # The state directory, database and log file hold captions and alerts: private to the
    # service's user, whatever umask it was started with.
    os.umask(0o077)
    config = _load(args.config)
    if args.daemon:
        from camwatch.daemonize import run_detached

        _log_readable_secrets(args.config)  # on the terminal, before detaching
        return run_detached(args.config, config, args.pidfile, once=args.once)
    configure(config.log.level, config.log.format)
    _log_readable_secrets(args.config)
    return run_service(args.config, config, once=args.once)


def cmd_check_config(args: argparse.Namespace) -> int:
    from camwatch.config import address_warnings, readable_secrets, resolve_api_key, scrub_url
    from camwatch.folders import choose_mode, folder_problem
    from camwatch.rules import RuleSet

    config = _load(args.config)
    resolve_api_key(config.caption)
    RuleSet(config.rules, config.matching, config.timezone)  # phrase and cue syntax
    caption = config.caption
    print(f"{args.config}: OK")
    # URLs are shown as scheme://host:port (the caption API with its path): never a user,
    # password, query string or webhook path, which are often credentials.
    print(
        f"  caption: {scrub_url(caption.base_url, keep_path=True)}{caption.endpoint}"
        f" upload={caption.upload}"
        f" concurrency={caption.concurrency} attempts={caption.retry.attempts}"
    )
    warnings = address_warnings(config)
    for i, cam in enumerate(config.cameras):
        mode, fstype = choose_mode(cam)
        extra = f" expect_every={cam.expect_every:g}s" if cam.expect_every else ""
        print(
            f"  camera {cam.name}: {cam.path}{' (recursive)' if cam.recursive else ''}"
            f" watch={cam.watch}: {mode} on {fstype}{extra}"
        )
        problem = folder_problem(str(cam.path))
        if problem is not None:
            warnings.append(
                f"cameras[{i}].path: {str(cam.path)!r} is {problem}; the daemon starts anyway"
                " and watches it once it is there"
            )
    for rule in config.rules:
        conditions = []
        for key in ("any", "all", "none"):
            if getattr(rule, key):
                conditions.append(f"{key}={getattr(rule, key)}")
        if rule.regex:
            conditions.append(f"regex={rule.regex!r}")
        print(f"  rule {rule.name} [{rule.severity}]: {' '.join(conditions)}")
    for hook in config.webhooks:
        # Validation refuses an empty secret; checked again so that this line cannot claim
        # "signed" for a webhook the sender would send unsigned.
        secret = hook.secret.get_secret_value() if hook.secret is not None else ""
        signed = "signed" if secret else "unsigned"
        print(f"  webhook {hook.name}: {scrub_url(hook.url)} {signed}")
    for target in config.notify:
        print(f"  notify {target.name}: {len(target.urls)} URL(s)")
    print(f"  debounce={config.debounce:g}s after={config.after} state_dir={config.state_dir}")
    exposed = readable_secrets(args.config)
    if exposed is not None:
        warnings.append(exposed.message)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return EX_OK


def cmd_caption(args: argparse.Namespace) -> int:
    from camwatch.caption import CaptionClient
    from camwatch.config import resolve_api_key
    from camwatch.files import is_complete_image
    from camwatch.prompts import prompts_for

    config = _load(args.config)
    configure(config.log.level, config.log.format)
    api_key = resolve_api_key(config.caption)
    register_secrets([api_key])
    path = Path(args.image)
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"camwatch: {path}: {exc.strerror}", file=sys.stderr)
        return EX_NOINPUT
    if not is_complete_image(data):
        print(f"camwatch: {path}: not a complete JPEG or PNG", file=sys.stderr)
        return EX_NOINPUT
    _check_camera(config, args.camera)
    camera = config.camera(args.camera) if args.camera else config.cameras[0]
    assert camera is not None
    client = CaptionClient(config.caption, api_key)
    try:
        result = client.caption_file(data, path.name, prompts_for(config, camera))
    except CaptionError as exc:
        print(f"camwatch: caption failed: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    finally:
        client.close()
    print(result.text)
    return EX_OK


def cmd_test_rules(args: argparse.Namespace) -> int:
    from camwatch.rules import RuleSet, decision_json, explain

    config = _load(args.config)
    _check_camera(config, args.camera)
    rules = RuleSet(config.rules, config.matching, config.timezone)
    captions = args.text or (line.rstrip("\n") for line in sys.stdin)
    for caption in captions:
        if not caption.strip():
            continue
        decisions = rules.evaluate(caption, args.camera, schedules=False)
        if args.json:
            print(json.dumps(decision_json(caption, decisions), ensure_ascii=False), flush=True)
        else:
            print(explain(decisions, caption), flush=True)
    return EX_OK


def cmd_retry(args: argparse.Namespace) -> int:
    from camwatch.store import Store

    config = _load(args.config)
    _check_camera(config, args.camera)
    store = Store(config.state_dir)
    try:
        if args.alerts:
            if args.target is not None and args.target not in {
                *(w.name for w in config.webhooks),
                *(n.name for n in config.notify),
            }:
                raise UsageError(f"--target: unknown webhook or notify target {args.target!r}")
            count = store.retry_dead_letters(args.target)
            print(f"queued {count} dead-lettered alert(s) again (the daemon sends them within 30s)")
        else:
            count = store.retry_failed(args.camera)
            print(f"queued {count} failed image(s) again")
    finally:
        store.close()
    return EX_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from camwatch.rules import RuleSet

    config = _load(args.config)
    _check_camera(config, args.camera)
    try:
        since = time.time() - parse_duration(args.since)
    except ValueError as exc:
        print(f"camwatch: --since: {exc}", file=sys.stderr)
        return EX_USAGE
    from camwatch.store import Store

    store = Store(config.state_dir)
    try:
        records = store.captions(since, args.camera)
    finally:
        store.close()
    rules = RuleSet(config.rules, config.matching, config.timezone)
    alerts = 0
    for record in records:
        when = datetime.fromtimestamp(record.captioned_at).astimezone()
        decisions = rules.matching(record.caption, record.camera, now=when)
        for decision in decisions:
            alerts += 1
            line = {
                "time": when.isoformat(timespec="seconds"),
                "camera": record.camera,
                "path": record.path,
                "rule": decision.rule,
                "matched": decision.phrases,
            }
            if args.json:
                print(json.dumps(line, ensure_ascii=False))
            else:
                print(
                    f"{line['time']} {record.camera} {decision.rule}: {', '.join(decision.phrases)}"
                    f"  ({record.path})"
                )
    print(
        f"{len(records)} caption(s) replayed, {alerts} alert(s) would be sent"
        " (cooldowns not applied)",
        file=sys.stderr,
    )
    return EX_OK


def cmd_stop(args: argparse.Namespace) -> int:
    try:
        pid = int(Path(args.pidfile).read_text().strip())
    except (OSError, ValueError) as exc:
        print(f"camwatch: {args.pidfile}: no running daemon ({exc})", file=sys.stderr)
        return EX_NOINPUT
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        print(f"camwatch: process {pid} is not running", file=sys.stderr)
        return EX_NOINPUT
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print(f"stopped {pid}")
            return EX_OK
        time.sleep(0.1)
    print(f"camwatch: process {pid} still running after {args.timeout:g}s", file=sys.stderr)
    return EX_SOFTWARE


def cmd_demo(args: argparse.Namespace) -> int:
    from camwatch.demo import run_demo

    return run_demo(keep=args.keep)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser."""
    parser = argparse.ArgumentParser(
        prog="camwatch",
        description="Watch camera snapshot folders, caption each image, alert on rules.",
    )
    parser.add_argument("--version", action="version", version=f"camwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "-c",
            "--config",
            default=default_config_path(),
            help="configuration file (default: $CAMWATCH_CONFIG, then /etc/camwatch/config.yaml)",
        )
        return p

    p = sub.add_parser("demo", help="run end to end on a temporary folder, no key or network")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.set_defaults(func=cmd_demo)

    p = with_config(sub.add_parser("run", help="run the daemon in the foreground"))
    p.add_argument("--once", action="store_true", help="process what is there, deliver, exit")
    p.add_argument("--daemon", action="store_true", help="detach (for hosts without systemd)")
    p.add_argument("--pidfile", help="with --daemon: the pid file to write and lock")
    p.set_defaults(func=cmd_run)

    p = with_config(sub.add_parser("check-config", help="validate the configuration"))
    p.set_defaults(func=cmd_check_config)

    p = with_config(sub.add_parser("caption", help="caption one image and print the text"))
    p.add_argument("image")
    p.add_argument("--camera", help="use this camera's prompts (default: the first camera's)")
    p.set_defaults(func=cmd_caption)

    p = with_config(sub.add_parser("test-rules", help="show which rules match captions, and why"))
    p.add_argument("--json", action="store_true", help="one JSON object per caption")
    p.add_argument("--camera", help="as if the caption came from this camera")
    p.add_argument("text", nargs="*", help="captions (default: one per line on stdin)")
    p.set_defaults(func=cmd_test_rules)

    p = with_config(
        sub.add_parser("retry", help="queue failed images (or, with --alerts, dead letters) again")
    )
    p.add_argument("--camera", help="only this camera's failed images")
    p.add_argument(
        "--alerts",
        action="store_true",
        help="queue again the alerts a target refused for good (dead letters), once fixed",
    )
    p.add_argument("--target", help="with --alerts: only this webhook or notify target")
    p.set_defaults(func=cmd_retry)

    p = with_config(sub.add_parser("replay", help="re-run the rules over stored captions"))
    p.add_argument("--since", default="24h", help="how far back (duration, default 24h)")
    p.add_argument("--camera")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("stop", help="stop a daemon started with --daemon --pidfile")
    p.add_argument("--pidfile", required=True)
    p.add_argument("--timeout", type=float, default=15.0)
    p.set_defaults(func=cmd_stop)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return (and exit with) its status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "daemon", False) and not args.pidfile:
        parser.error("--daemon needs --pidfile")
    configure("info", None)
    try:
        code = args.func(args)
    except ConfigError as exc:
        _print_problems(exc.problems)
        code = EX_CONFIG
    except StateError as exc:
        print(f"camwatch: {exc}", file=sys.stderr)
        code = EX_IOERR
    except UsageError as exc:
        print(f"camwatch: {exc}", file=sys.stderr)
        code = EX_USAGE
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
