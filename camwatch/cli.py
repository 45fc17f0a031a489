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
from typing import Any, NoReturn

from camwatch import __version__
from camwatch.config import DEFAULT_CONFIG_PATH, Config, load_config, parse_duration
from camwatch.errors import CaptionError, ConfigError, StateError, UsageError
from camwatch.log import configure, get_logger, register_secrets
from camwatch.runlock import AlreadyRunning

EX_OK = 0
EX_USAGE = 64
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_CONFIG = 78

log = get_logger(__name__)

NOT_APPLIED_IN_TESTS = "schedules (active, days) and cooldowns are not applied"


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


def cmd_run(args: argparse.Namespace) -> int:
    from camwatch.service import log_readable_secrets, run_service

    # The state directory, database and log file hold captions and alerts: private to the
    # service's user, whatever umask it was started with.
    os.umask(0o077)
    config = _load(args.config)
    if args.daemon:
        from camwatch.daemonize import run_detached

        log_readable_secrets(args.config)  # on the terminal, before detaching
        return run_detached(args.config, config, args.pidfile, once=args.once)
    bar = None
    if args.once and sys.stderr.isatty() and config.log.format != "json":
        from camwatch.progress import TerminalBar

        # Log lines go through the bar, which writes each above itself: lines and bar never
        # share a row, and every per-image line is still shown.
        bar = TerminalBar(sys.stderr)
    configure(config.log.level, config.log.format, stream=bar)  # type: ignore[arg-type]
    log_readable_secrets(args.config)
    return run_service(args.config, config, once=args.once, bar=bar)


def _provider_line(block: Any, key: str | None) -> str:
    """Return how check-config shows a provider block: its kind and address (the path, never a
    user, password or query), the model for openai, and whether a key is sent."""
    from camwatch.config import scrub_url
    from camwatch.config.providers import (
        CHAT_PATH,
        DEFAULT_MAX_TOKENS,
        DEFAULT_TEMPERATURE,
        MEMORIES_BASE_URL,
        MEMORIES_ENDPOINT,
    )

    if block.provider == "openai":
        tokens = DEFAULT_MAX_TOKENS if block.max_tokens is None else block.max_tokens
        heat = DEFAULT_TEMPERATURE if block.temperature is None else block.temperature
        where = f"{scrub_url(block.base_url, keep_path=True)}{CHAT_PATH}"
        extra = f" model={block.model} max_tokens={tokens} temperature={heat:g}"
    else:
        address = scrub_url(block.base_url or MEMORIES_BASE_URL, keep_path=True)
        where = f"{address}{block.endpoint or MEMORIES_ENDPOINT}"
        extra = ""
    return f"{block.provider} {where}{extra} ({'key set' if key else 'no key'})"


def cmd_check_config(args: argparse.Namespace) -> int:
    from camwatch.config import (
        address_warnings,
        readable_secrets,
        rule_warnings,
        scrub_url,
    )
    from camwatch.config.preflight import preflight
    from camwatch.config.providers import CHAT_PATH
    from camwatch.folders import choose_mode
    from camwatch.providers.keys import provider_keys
    from camwatch.rules import RuleSet

    config = _load(args.config)
    # Everything `run` would trip on, gathered before reporting, so that one pass fixes all.
    problems: list[str] = []
    keys: list[str | None] = []
    for check in (
        lambda: keys.extend(provider_keys(config.caption)),  # the primary's and the fallback's
        lambda: RuleSet(config.rules, config.matching, config.timezone),  # phrases, cues
    ):
        try:
            check()
        except ConfigError as exc:
            problems += exc.problems
    found = preflight(config)  # as the user running the check: state_dir, camera folders
    problems += found.errors
    warnings = address_warnings(config) + found.warnings + rule_warnings(config)
    exposed = readable_secrets(args.config)
    if exposed is not None:
        warnings.append(exposed.message)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if problems:
        raise ConfigError(problems)
    caption = config.caption
    print(f"{args.config}: OK")
    # URLs are shown as scheme://host:port (the caption API with its path): never a user,
    # password, query string or webhook path, which are often credentials.
    endpoint = CHAT_PATH if caption.provider == "openai" else caption.endpoint
    print(
        f"  caption: {scrub_url(caption.base_url, keep_path=True)}{endpoint}"
        f" upload={caption.upload}"
        f" concurrency={caption.concurrency} attempts={caption.retry.attempts}"
    )
    print(f"  provider: {_provider_line(caption, keys[0] if keys else None)}")
    if caption.fallback is not None:
        key = keys[1] if len(keys) > 1 else None
        print(f"  fallback: {_provider_line(caption.fallback, key)} (while the provider cannot)")
    for cam in config.cameras:
        mode, fstype = choose_mode(cam)
        extra = f" expect_every={cam.expect_every:g}s" if cam.expect_every else ""
        print(
            f"  camera {cam.name}: {cam.path}{' (recursive)' if cam.recursive else ''}"
            f" watch={cam.watch}: {mode} on {fstype}{extra}"
        )
    for rule in config.rules:
        conditions = []
        for key in ("any", "all", "none"):
            if getattr(rule, key):
                conditions.append(f"{key}={getattr(rule, key)}")
        if rule.regex:
            conditions.append(f"regex={rule.regex!r}")
        if rule.ask:
            conditions.append(f"ask={rule.ask!r}")
        print(f"  rule {rule.name} [{rule.severity}]: {' '.join(conditions)}")
    for hook in config.webhooks:
        # Validation refuses an empty secret; checked again so that this line cannot claim
        # "signed" for a webhook the sender would send unsigned.
        secret = hook.secret.get_secret_value() if hook.secret is not None else ""
        signed = "signed" if secret else "unsigned"
        print(f"  webhook {hook.name}: {scrub_url(hook.url)} {signed}")
    for target in config.notify:
        print(f"  notify {target.name}: {len(target.urls)} URL(s)")
    costs = []
    if caption.dedupe is not None:
        d = caption.dedupe
        costs.append(
            f"dedupe(window={d.window:g}s max_distance={d.max_distance} max_change={d.max_change})"
        )
    if caption.strip_metadata:
        costs.append("strip_metadata")
    if caption.upload_max_side is not None:
        costs.append(f"upload_max_side={caption.upload_max_side} q={caption.jpeg_quality}")
    if caption.max_per_minute is not None:
        costs.append(f"max_per_minute={caption.max_per_minute}")
    if caption.daily_tokens is not None:
        costs.append(f"daily_tokens={caption.daily_tokens}")
    if costs:
        print(f"  costs: {' '.join(costs)}")
    if config.http is not None:
        auth = "token required" if config.http.token is not None else "no token (this machine only)"
        print(f"  http: {config.http.listen} /metrics /healthz / ({auth})")
    if config.mqtt is not None:  # the broker as scheme://host:port: never its user or password
        found = f", discovery {config.mqtt.discovery_prefix}/" if config.mqtt.discovery else ""
        print(f"  mqtt: {config.mqtt.broker.shown} topics {config.mqtt.topic_prefix}/#{found}")
    print(f"  debounce={config.debounce:g}s after={config.after} state_dir={config.state_dir}")
    return EX_OK


def _read_image(path: Path, max_bytes: int) -> bytes:
    """Return the file's bytes. Raise TooLarge, before reading it, if it is over `max_bytes`
    (as the daemon would skip it), OSError if it cannot be read."""
    from camwatch.errors import TooLarge
    from camwatch.files import check_size

    with path.open("rb") as handle:
        check_size(os.fstat(handle.fileno()).st_size, max_bytes)
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while being read
        raise TooLarge(f"more than max_image_bytes {max_bytes}")
    return data


def _chosen_provider(caption: Any, wanted: str | None) -> str:
    """Given the caption settings and `--provider` (memories, openai, fallback or None), return
    which block `provider_for` builds: "configured", "primary" or "fallback". Raise UsageError
    if no block is of that kind."""
    if wanted is None:
        return "configured"
    fallback = caption.fallback
    if wanted == "fallback":
        if fallback is None:
            raise UsageError("--provider fallback: caption.fallback is not configured")
        return "fallback"
    if caption.provider == wanted:
        return "primary"
    if fallback is not None and fallback.provider == wanted:
        return "fallback"
    raise UsageError(
        f"--provider {wanted}: neither caption.provider nor caption.fallback.provider is {wanted!r}"
    )


def cmd_caption(args: argparse.Namespace) -> int:
    from camwatch.errors import TooLarge
    from camwatch.files import is_complete_image
    from camwatch.prompts import prompts_for
    from camwatch.providers import provider_for
    from camwatch.providers.keys import provider_key
    from camwatch.rules import RuleSet

    config = _load(args.config)
    configure(config.log.level, config.log.format)
    which = _chosen_provider(config.caption, args.provider)
    blocks = {"primary": [(config.caption, "caption")]}
    if config.caption.fallback is not None:
        fallback = (config.caption.fallback, "caption.fallback")
        blocks["fallback"] = [fallback]
        blocks["configured"] = [*blocks["primary"], fallback]
    else:
        blocks["configured"] = blocks["primary"]
    register_secrets([provider_key(block, where) for block, where in blocks[which]])
    path = Path(args.image)
    try:
        data = _read_image(path, config.caption.max_image_bytes)
    except TooLarge as exc:
        # The daemon's words for the same file (`image_skipped`), and what to change.
        print(
            f"camwatch: {path}: skipped: {exc} (raise caption.max_image_bytes to caption it)",
            file=sys.stderr,
        )
        return EX_NOINPUT
    except OSError as exc:
        print(f"camwatch: {path}: {exc.strerror}", file=sys.stderr)
        return EX_NOINPUT
    if not is_complete_image(data):
        print(f"camwatch: {path}: not a complete JPEG or PNG", file=sys.stderr)
        return EX_NOINPUT
    # What the daemon would upload: stripped and scaled as configured.
    from camwatch.upload import UploadError, UploadPlan, prepare

    caption = config.caption
    plan = UploadPlan(caption.strip_metadata, caption.upload_max_side, caption.jpeg_quality)
    try:
        data = prepare(data, plan).data
    except UploadError as exc:
        print(f"camwatch: {path}: cannot prepare the upload: {exc}", file=sys.stderr)
        return EX_NOINPUT
    _check_camera(config, args.camera)
    camera = config.camera(args.camera) if args.camera else config.cameras[0]
    assert camera is not None
    client = provider_for(config.caption, which=which)
    try:
        result = client.caption_file(
            data, path.name, prompts_for(config, camera), logger=log.bind(path=str(path))
        )
    except CaptionError as exc:
        print(f"camwatch: caption failed: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    finally:
        client.close()
    # What the daemon would keep: the caption without the answers to the rules' `ask`.
    answered = RuleSet(config.rules, config.matching, config.timezone).read_answers(
        result.text, camera.name
    )
    print(answered.caption)
    by = f"{result.provider}{' (the fallback)' if result.fallback else ''}"
    print(f"camwatch: captioned by {by}, {result.tokens_total} tokens", file=sys.stderr)
    if answered.answers or answered.unanswered:
        said = ", ".join(f"{rule}={answer}" for rule, answer in answered.answers.items())
        missing = f"; no answer: {', '.join(answered.unanswered)}" if answered.unanswered else ""
        print(f"camwatch: answers: {said or 'none'}{missing}", file=sys.stderr)
    return EX_OK


def cmd_test_rules(args: argparse.Namespace) -> int:
    from camwatch.rules import RuleSet, decision_json, explain

    config = _load(args.config)
    _check_camera(config, args.camera)
    rules = RuleSet(config.rules, config.matching, config.timezone)
    captions = args.text or (line.rstrip("\n") for line in sys.stdin)
    checked = 0
    for caption in captions:
        if not caption.strip():
            continue
        checked += 1
        # A caption may end with the answers to the rules' `ask`, as a model writes them.
        answered = rules.read_answers(caption, args.camera)
        decisions = rules.evaluate(
            answered.caption, args.camera, schedules=False, answers=answered.answers
        )
        if args.json:
            found = decision_json(answered.caption, decisions, answered)
            print(json.dumps(found, ensure_ascii=False), flush=True)
        else:
            print(explain(decisions, answered.caption, answered), flush=True)
    # On stderr, so that stdout stays one JSON object per caption for scripts.
    print(
        f"{checked} caption(s) checked; {NOT_APPLIED_IN_TESTS}",
        file=sys.stderr,
    )
    return EX_OK


def cmd_retry(args: argparse.Namespace) -> int:
    from camwatch.store import SkipKind, Store

    config = _load(args.config)
    _check_camera(config, args.camera)
    if args.reason is not None and not args.skipped:
        raise UsageError("--reason: only with --skipped")
    from camwatch.store.readonly import database_path

    db_file = database_path(config.state_dir)
    if not db_file.is_file():
        # Nothing can have failed or been skipped yet; creating a database here would leave
        # one owned by whoever ran the command, not by the daemon's user.
        print(
            f"camwatch: no state database yet at {str(db_file)!r}: nothing to retry",
            file=sys.stderr,
        )
        return EX_OK
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
        elif args.skipped:
            kind = SkipKind(args.reason) if args.reason is not None else None
            done = store.retry_skipped(kind, args.camera)
            which = f"reason {kind}" if kind is not None else "any reason"
            print(f"queued {done.queued} skipped image(s) again ({which})")
            if done.gone:
                print(f"left {done.gone} skipped image(s) as they were: their file is gone")
        else:
            count = store.retry_failed(args.camera)
            print(f"queued {count} failed image(s) again")
    finally:
        store.close()
    return EX_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from camwatch.files import printable_path
    from camwatch.rules import RuleSet
    from camwatch.store.readonly import NoDatabase, connect_readonly
    from camwatch.store.records import CaptionRecord
    from camwatch.store.report import captions_since

    config = _load(args.config)
    _check_camera(config, args.camera)
    try:
        since = time.time() - parse_duration(args.since)
    except ValueError as exc:
        print(f"camwatch: --since: {exc}", file=sys.stderr)
        return EX_USAGE
    # Read-only: replaying never creates a state_dir or a database, nor takes the daemon's lock.
    try:
        db = connect_readonly(config.state_dir)
    except NoDatabase as exc:
        print(f"camwatch: {exc}", file=sys.stderr)
        records: list[CaptionRecord] = []
    else:
        try:
            records = captions_since(db, since, args.camera)
        finally:
            db.close()
    rules = RuleSet(config.rules, config.matching, config.timezone)
    alerts = 0
    unanswered = 0
    for record in records:
        when = datetime.fromtimestamp(record.captioned_at).astimezone()
        # Captions are stored without the answers to the rules' `ask`: those rules fall back to
        # their keywords here, unless a caption still ends with its answers object.
        answered = rules.read_answers(record.caption, record.camera)
        unanswered += bool(answered.unanswered)
        decisions = rules.matching(
            answered.caption, record.camera, now=when, answers=answered.answers
        )
        path = printable_path(record.path)
        for decision in decisions:
            alerts += 1
            line = {
                "time": when.isoformat(timespec="seconds"),
                "camera": record.camera,
                "path": path,
                "rule": decision.rule,
                "matched": decision.phrases,
            }
            if args.json:
                print(json.dumps(line, ensure_ascii=False))
            else:
                print(
                    f"{line['time']} {record.camera} {decision.rule}: {', '.join(decision.phrases)}"
                    f"  ({path})"
                )
    print(
        f"{len(records)} caption(s) replayed, {alerts} alert(s) would be sent"
        " (cooldowns not applied)",
        file=sys.stderr,
    )
    if unanswered:
        print(
            f"{unanswered} caption(s) without answers to the rules' ask questions (answers are"
            " not stored): those rules were decided by their keywords (any, all, regex)",
            file=sys.stderr,
        )
    return EX_OK


def cmd_status(args: argparse.Namespace) -> int:
    from camwatch import status
    from camwatch.store.readonly import NoDatabase

    config = _load(args.config)
    try:
        found = status.read(config)
    except NoDatabase as exc:
        # A fresh install, not a fault: said on stderr, exit 0; --json still prints its one
        # object (all zeros, "database": null) for the script that reads it.
        print(f"camwatch: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps(status.to_json(status.nothing_yet(config)), ensure_ascii=False))
        return EX_OK
    if args.json:
        print(json.dumps(status.to_json(found), ensure_ascii=False))
    else:
        print(status.render(found))
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

    return run_demo(keep=args.keep, provider=args.provider)


class _Parser(argparse.ArgumentParser):
    """argparse, exiting 64 (EX_USAGE) on a bad argument as the README says, not its usual 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser."""
    parser = _Parser(
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
    p.add_argument(
        "--provider",
        choices=["memories", "openai"],
        default="memories",
        help="the stand-in to caption with: memories.ai (default), or an OpenAI-compatible"
        " chat completions server, as Ollama on this machine",
    )
    p.set_defaults(func=cmd_demo)

    p = with_config(sub.add_parser("run", help="run the daemon in the foreground"))
    p.add_argument("--once", action="store_true", help="process what is there, deliver, exit")
    p.add_argument("--daemon", action="store_true", help="detach (for hosts without systemd)")
    p.add_argument("--pidfile", help="with --daemon: the pid file to write and lock")
    p.set_defaults(func=cmd_run)

    p = with_config(sub.add_parser("check-config", help="validate the configuration"))
    p.set_defaults(func=cmd_check_config)

    p = with_config(
        sub.add_parser(
            "caption",
            help="caption one image and print the text",
            description="Caption one image with the configured API and prompts and print the"
            " text. Nothing is stored and no rule is applied. A file over"
            " caption.max_image_bytes is refused, as the daemon would skip it.",
        )
    )
    p.add_argument("image", help="the JPEG or PNG file to caption")
    p.add_argument("--camera", help="use this camera's prompts (default: the first camera's)")
    p.add_argument(
        "--provider",
        choices=["memories", "openai", "fallback"],
        help="try one provider by hand: the configured block of that kind (caption or"
        " caption.fallback), or the fallback block alone (default: the provider, and its"
        " fallback while it cannot caption, as the daemon does)",
    )
    p.set_defaults(func=cmd_caption)

    p = with_config(
        sub.add_parser(
            "test-rules",
            help="show which rules match captions, and why (schedules and cooldowns not applied)",
            description="Show which rules match each caption and why (which phrase). "
            f"{NOT_APPLIED_IN_TESTS[0].upper()}{NOT_APPLIED_IN_TESTS[1:]}: every rule is"
            " tried as if it were active now and had never alerted.",
        )
    )
    p.add_argument("--json", action="store_true", help="one JSON object per caption")
    p.add_argument("--camera", help="as if the caption came from this camera")
    p.add_argument("text", nargs="*", help="captions (default: one per line on stdin)")
    p.set_defaults(func=cmd_test_rules)

    from camwatch.store.records import SkipKind

    p = with_config(
        sub.add_parser(
            "retry",
            help="queue failed images (or skipped images, or dead-lettered alerts) again",
            description="Queue failed images again; with --skipped, skipped images (read from"
            " disk again; those whose file is gone are left); with --alerts, the alerts a"
            " target refused for good. Works with the daemon running or stopped.",
        )
    )
    p.add_argument("--camera", help="only this camera's failed (or skipped) images")
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--skipped",
        action="store_true",
        help="queue skipped images again instead of failed ones (say, after raising"
        " caption.max_image_bytes; the daemon also does that by itself when it starts)",
    )
    what.add_argument(
        "--alerts",
        action="store_true",
        help="queue again the alerts a target refused for good (dead letters), once fixed",
    )
    p.add_argument(
        "--reason",
        metavar="KIND",
        choices=[str(kind) for kind in SkipKind],
        help="with --skipped: only images skipped for this reason: "
        + ", ".join(str(kind) for kind in SkipKind)
        + " (unknown: skipped before camwatch recorded reasons)",
    )
    p.add_argument("--target", help="with --alerts: only this webhook or notify target")
    p.set_defaults(func=cmd_retry)

    p = with_config(
        sub.add_parser(
            "replay",
            help="re-run the rules over stored captions",
            description="Run the current rules over the captions stored in the state database,"
            " without calling the API or sending anything, and print the alerts they would"
            " send. Cooldowns are not applied. Reads the database only (the daemon may run).",
        )
    )
    p.add_argument("--since", default="24h", help="how far back (duration, default 24h)")
    p.add_argument("--camera", help="only this camera's captions")
    p.add_argument("--json", action="store_true", help="one JSON object per alert")
    p.set_defaults(func=cmd_replay)

    p = with_config(
        sub.add_parser(
            "status",
            help="what the daemon did today: images, queue, failures, alerts, tokens",
            description="Print, from the state database alone (the daemon may run or not), per"
            " camera the last image and today's images by outcome and tokens; the queue; the"
            " latest failures with their reasons; the alerts waiting per target and the oldest"
            " one's age; the dead letters; tokens today and this month. Days are local, in"
            " `timezone`. Before the daemon's first run there is no database: that is said on"
            " stderr, and the exit status is 0.",
        )
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("stop", help="stop a daemon started with --daemon --pidfile")
    p.add_argument("--pidfile", required=True, help="the pid file given to run --daemon")
    p.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        help="seconds to wait for the daemon to finish its work and exit (default 15)",
    )
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
    except AlreadyRunning as exc:
        print(f"camwatch: {exc}", file=sys.stderr)
        code = EX_TEMPFAIL
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
