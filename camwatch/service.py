"""The composition root: builds the parts, starts and stops them, handles signals and sd_notify.

    watcher -> debouncer -> store (queue) -> workers (pipeline: caption, rules) -> store (outbox)
            -> dispatcher -> webhooks / notify

Signal handlers only set flags and wake the main loop; the main loop reloads, sends keep-alives
and status, prunes old records, and, with `--once`, notices when everything is drained.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import FrameType

from camwatch.archive import finish_file
from camwatch.caption import CaptionClient
from camwatch.config import Config, load_config, readable_secrets, resolve_api_key
from camwatch.debounce import Debouncer, ReadyFile
from camwatch.dispatch import Dispatcher
from camwatch.errors import ConfigError, StateError
from camwatch.files import relative_candidate
from camwatch.gate import CaptionGate, GateState
from camwatch.log import get_logger, register_secrets
from camwatch.pipeline import Outcome, Pipeline, Runtime
from camwatch.rules import RuleSet
from camwatch.scan import Scanner, scan_camera
from camwatch.sdnotify import Notifier, WatchdogGate, watchdog_interval
from camwatch.silence import SilenceWatch
from camwatch.store import ImageJob, Store
from camwatch.wakeup import Wakeup
from camwatch.watcher import Sinks, Watcher
from camwatch.workers import WorkerPool

log = get_logger(__name__)

STOP_BUDGET_S = 8.0  # SIGTERM to exit, leaving headroom under the promised 10 s
PRUNE_EVERY_S = 3600.0


def secrets_of(config: Config, api_key: str | None = None) -> list[str | None]:
    """Return every secret value a configuration holds, for log redaction."""
    values: list[str | None] = [api_key]
    if config.caption.api_key is not None:
        values.append(config.caption.api_key.get_secret_value())
    values += [w.secret.get_secret_value() for w in config.webhooks if w.secret is not None]
    values += [u.get_secret_value() for n in config.notify for u in n.urls]
    # A webhook URL often is a token (Home Assistant's /api/webhook/<id>, Slack, Discord), and
    # so are custom header values (Authorization: Bearer ...).
    values += [w.url for w in config.webhooks]
    values += [value for w in config.webhooks for value in w.headers.values()]
    return values


def build_runtime(config: Config, stop: threading.Event) -> Runtime:
    """Return the reloadable parts for `config`. Raise ConfigError if the API key is missing."""
    api_key = resolve_api_key(config.caption)
    register_secrets(secrets_of(config, api_key))
    client = CaptionClient(config.caption, api_key, stop=stop)
    rules = RuleSet(config.rules, config.matching, config.timezone)
    return Runtime(config=config, client=client, rules=rules)


def stall_limit(config: Config) -> float:
    """Return how long a busy pipeline may go without finishing a job before it counts as
    wedged: the longest a job can legitimately take, plus a margin."""
    caption = config.caption
    retry = caption.retry
    return retry.attempts * caption.timeout + (retry.attempts - 1) * retry.backoff_max + 60.0


class Service:
    """The daemon: `run()` blocks until SIGTERM/SIGINT (or, with `once`, until drained)."""

    def __init__(self, config_path: str, config: Config, once: bool = False) -> None:
        self.config_path = config_path
        self.config = config
        self.once = once
        self.stop = threading.Event()
        self._wakeup = Wakeup()
        self._reload_requested = False
        self._stop_requested = False
        self._old_clients: list[CaptionClient] = []
        self.notifier = Notifier()
        self.exit_code = 0

    # -- signals ----------------------------------------------------------------------------

    # Handlers only set flags: they run in the main thread at any bytecode, perhaps while it holds
    # a lock, so they must take none (see wakeup.py). The interpreter rings the Wakeup itself.

    def _on_stop_signal(self, signum: int, _: FrameType | None) -> None:
        self._stop_signal = signal.Signals(signum).name
        self._stop_requested = True

    def _on_hup(self, _: int, __: FrameType | None) -> None:
        self._reload_requested = True

    def install_signals(self) -> None:
        """Route SIGTERM/SIGINT to a clean stop and SIGHUP to a reload."""
        self._stop_signal = ""
        self._wakeup.attach_signals()
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)

    # -- wiring ------------------------------------------------------------------------------

    def _emit(self, ready: list[ReadyFile]) -> None:
        added = self.store.add_pending(ready)
        for r in ready:
            log.debug("image_queued", camera=r.camera, path=r.path)
        if added:
            self.pool.wake()

    def _retouch(self, camera: str, path: str, relpath: str) -> None:
        self.debouncer.touch(camera, path, relpath)

    def _on_done(self, job: ImageJob, outcome: Outcome) -> None:
        self._last_outcome = f"{outcome} {job.camera}:{job.relpath}"
        if self.once:
            self._wakeup.set()

    def _scan(self, name: str) -> None:
        try:
            camera = self.runtime.config.camera(name)
            if camera is None or self.stop.is_set():
                return
            started = time.monotonic()
            result = scan_camera(
                camera,
                self.store,
                self.debouncer.touch,
                self.runtime.config.debounce,
                stopping=self.stop.is_set,
                finished=self._finish_leftover,
            )
            self.pool.wake()
            log.info(
                "scan_finished",
                camera=name,
                seen=result.seen,
                queued=result.queued,
                settling=result.settling,
                already_done=result.already_done,
                seconds=round(time.monotonic() - started, 3),
            )
        except StateError as exc:
            log.error("scan_failed", camera=name, error=str(exc))
        finally:
            self._wakeup.set()

    def _finish_leftover(self, camera: str, path: str) -> None:
        """A file done before a crash that came between its caption and its after-action."""
        config = self.runtime.config
        if config.after == "keep":
            return
        cam = config.camera(camera)
        rel = relative_candidate(str(cam.path), path) if cam else None
        if cam is None or rel is None:
            return
        blog = log.bind(camera=camera, path=path)
        finish_file(config.after, config.archive_dir, camera, path, rel, blog, cam.path)

    # -- life cycle --------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped. Return the exit status."""
        config = self.config
        self.store = Store(config.state_dir)
        recovered = self.store.recover()
        self.store.skip_pending_of({c.name for c in config.cameras})
        self.runtime = build_runtime(config, self.stop)
        self.gate = CaptionGate.for_config(config.caption)
        self._last_outcome = ""
        self.debouncer = Debouncer(
            self._emit, config.debounce, config.complete_timeout, config.caption.max_image_bytes
        )
        self.debouncer.roots = {c.name: str(c.path) for c in config.cameras}
        self.pipeline = pipeline = Pipeline(
            self.store,
            self.gate,
            lambda: self.runtime,
            self.stop,
            self._retouch,
            on_alerts=lambda: self.dispatcher.wake(),
            on_done=self._on_done,
            on_recovered=lambda: self.pool.wake(),
        )
        self.pool = WorkerPool(self.store, pipeline, self.stop)
        self.dispatcher = Dispatcher(self.store)
        self.scanner = Scanner(self._scan)
        self.silence = SilenceWatch(self.store)
        self.watcher = Watcher(
            Sinks(
                touch=self.debouncer.touch,
                closed=self.debouncer.closed,
                forget=self.debouncer.forget,
                rescan=self.scanner.request,
            )
        )
        self.debouncer.start()
        self.dispatcher.sync(config)
        self.pool.resize(config.caption.concurrency)
        watched = self.watcher.sync(config.cameras)
        counts = self.store.counts()
        log.info(
            "ready",
            cameras=[c.name for c in config.cameras],
            recovered=recovered,
            queued=counts.get("pending", 0),
            alerts_pending=counts.get("alerts_pending", 0),
        )
        self.notifier.ready(status="watching; scanning folders")
        self.scanner.request(*watched)
        try:
            self._main_loop()
        finally:
            self._shutdown()
        return self.exit_code

    def _main_loop(self) -> None:
        keepalive = watchdog_interval()
        watchdog_gate = WatchdogGate(stall_limit(self.config))
        tick = min(keepalive or 1.0, 1.0)
        next_prune = time.monotonic() + 60.0
        stalled = False
        status = ""
        while not self.stop.is_set():
            self._wakeup.wait(tick)
            if self._stop_requested:
                break
            if self._reload_requested:
                self._reload_requested = False
                self.reload()
            now = time.monotonic()
            if keepalive is not None:
                busy = self.pool.busy > 0 and self.gate.state is GateState.CLOSED
                if watchdog_gate.allow(now, last_progress=self.pool.last_progress, busy=busy):
                    self.notifier.watchdog()
                    stalled = False
                elif not stalled:
                    stalled = True  # logged once; systemd restarts us after WatchdogSec
                    log.error("pipeline_stalled", since_s=round(now - self.pool.last_progress))
            if self.notifier.enabled:
                line = self._status_line()
                if line != status:
                    status = line
                    self.notifier.status(line)
            if now >= next_prune:
                next_prune = now + PRUNE_EVERY_S
                self._prune()
            self._check_silence()
            if self.once and self._drained():
                log.info("once_finished", **self.store.counts())
                break
            if self.once and self.gate.state is GateState.PAUSED:
                log.error("once_aborted", reason=self.gate.reason)
                self.exit_code = 1
                break

    def _status_line(self) -> str:
        try:
            queued = self.store.queue_length()
        except StateError as exc:
            return f"state database error: {exc}"
        parts = [f"queue {queued}"]
        if self.gate.state is not GateState.CLOSED:
            parts.append(f"captioning {self.gate.state}: {self.gate.reason}")
        if self._last_outcome:
            parts.append(f"last: {self._last_outcome}")
        if self.pipeline.last_caption:
            parts.append(f"last caption: {_clip(self.pipeline.last_caption, 80)}")
        if self.pipeline.last_error:
            parts.append(f"last error: {_clip(self.pipeline.last_error, 80)}")
        return "; ".join(parts)

    def _check_silence(self) -> None:
        try:
            if self.silence.check(self.runtime.config):
                self.dispatcher.wake()
        except StateError as exc:
            log.error("silence_check_failed", error=str(exc))

    def _drained(self) -> bool:
        if not self.scanner.idle() or len(self.debouncer) or self.pool.busy:
            return False
        counts = self.store.counts()
        return not (counts.get("pending") or counts.get("captioning") or counts["alerts_pending"])

    def _prune(self) -> None:
        try:
            deleted = self.store.prune(self.runtime.config.retention)
            if deleted:
                log.info("state_pruned", rows=deleted)
        except StateError as exc:
            log.error("prune_failed", error=str(exc))

    def reload(self) -> bool:
        """Load the configuration file again and apply it; keep the old one if it is invalid.
        Return whether the new one is in force."""
        try:
            new = load_config(self.config_path)
            if new.state_dir != self.config.state_dir:
                raise ConfigError(["state_dir: cannot change on reload; restart instead"])
            runtime = build_runtime(new, self.stop)
        except ConfigError as exc:
            log.error("reload_refused", problems=exc.problems, config=self.config_path)
            return False
        self.notifier.reloading()
        self._old_clients.append(self.runtime.client)
        self.runtime = runtime
        self.config = new
        exposed = readable_secrets(self.config_path)
        if exposed is not None:
            log.warning(
                "config_readable_by_others",
                path=exposed.path,
                mode=f"{exposed.mode:04o}",
                secrets=exposed.fields,
                fix=exposed.fix,
            )
        self.debouncer.debounce = new.debounce
        self.debouncer.complete_timeout = new.complete_timeout
        self.debouncer.max_bytes = new.caption.max_image_bytes
        self.debouncer.roots = {c.name: str(c.path) for c in new.cameras}
        self.gate.tune(new.caption)
        self.gate.resume()
        try:
            self.store.skip_pending_of({c.name for c in new.cameras})
            added = self.watcher.sync(new.cameras)
        except (StateError, OSError) as exc:
            log.error("reload_partial", error=str(exc))
            added = []
        self.dispatcher.sync(new)
        self.pool.resize(new.caption.concurrency)
        self.pool.wake()
        self.scanner.request(*added)
        log.info("reloaded", cameras=[c.name for c in new.cameras], rules=len(new.rules))
        self.notifier.ready(status="reloaded")
        return True

    def _shutdown(self) -> None:
        started = time.monotonic()
        self.notifier.stopping()
        self.stop.set()
        self.watcher.stop()
        self.scanner.stop()
        self.debouncer.stop()
        self.pool.wake()
        finished = self.pool.join(max(STOP_BUDGET_S - 2.0 - (time.monotonic() - started), 0.5))
        self.dispatcher.stop(timeout=max(STOP_BUDGET_S - (time.monotonic() - started), 0.5))
        for client in [*self._old_clients, self.runtime.client]:
            client.close()
        if finished:
            self.store.close()
        log.info(
            "stopped",
            signal=getattr(self, "_stop_signal", "") or None,
            in_flight_saved=not finished,
            seconds=round(time.monotonic() - started, 3),
        )
        self.notifier.close()
        self._wakeup.close()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_service(config_path: str | Path, config: Config, once: bool = False) -> int:
    """Run the daemon in the foreground. Return its exit status."""
    service = Service(str(config_path), config, once=once)
    service.install_signals()
    return service.run()
