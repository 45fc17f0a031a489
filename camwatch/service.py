"""The composition root: builds the parts, starts and stops them, handles signals and sd_notify.

    watcher -> debouncer -> store (queue) -> workers (pipeline: caption, rules) -> store (outbox)
            -> dispatcher -> webhooks / notify

Signal handlers only set flags and wake the main loop; the main loop reloads, sends keep-alives
and status, prunes old records, reports progress through a burst (progress.py), and, with
`--once`, notices when everything is drained.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import FrameType

from camwatch.archive import finish_file
from camwatch.config import Config, load_config, readable_secrets
from camwatch.debounce import Debouncer, ReadyFile
from camwatch.dispatch import Dispatcher
from camwatch.errors import ConfigError, StateError
from camwatch.files import relative_candidate
from camwatch.gate import CaptionGate, GateState
from camwatch.homeassistant import discovery
from camwatch.http_server import App, HttpListener
from camwatch.log import clip, get_logger, register_secrets
from camwatch.metrics import Metrics
from camwatch.mqtt.link import MqttLink, connection_settings
from camwatch.pipeline import CaptionedImage, Outcome, Pipeline, Runtime
from camwatch.progress import Progress, TerminalBar, every_from_env
from camwatch.providers import Provider, provider_for
from camwatch.providers.keys import provider_keys
from camwatch.rules import RuleSet
from camwatch.runlock import state_lock
from camwatch.scan import Scanner, scan_camera
from camwatch.sdnotify import Notifier, WatchdogGate, watchdog_interval
from camwatch.silence import SilenceWatch
from camwatch.skips import reconsider_skipped
from camwatch.state_view import Parts, ServiceView
from camwatch.store import ImageJob, Store
from camwatch.timeline import Timeline
from camwatch.wakeup import Wakeup
from camwatch.watcher import Sinks, Watcher
from camwatch.workers import WorkerPool

log = get_logger(__name__)

STOP_BUDGET_S = 8.0  # SIGTERM to exit, leaving headroom under the promised 10 s
PRUNE_EVERY_S = 3600.0
# How often the main loop counts the queue for progress (`--once` wakes it at every image).
PROGRESS_LOOK_S = 0.5


def secrets_of(config: Config, *api_keys: str | None) -> list[str | None]:
    """Return every secret value a configuration holds, for log redaction (with `api_keys`, the
    keys resolved from files or credentials)."""
    values: list[str | None] = list(api_keys)
    if config.caption.api_key is not None:
        values.append(config.caption.api_key.get_secret_value())
    fallback = config.caption.fallback
    if fallback is not None and fallback.api_key is not None:
        values.append(fallback.api_key.get_secret_value())
    values += [w.secret.get_secret_value() for w in config.webhooks if w.secret is not None]
    values += [u.get_secret_value() for n in config.notify for u in n.urls]
    # A webhook URL often is a token (Home Assistant's /api/webhook/<id>, Slack, Discord), and
    # so are custom header values (Authorization: Bearer ...).
    values += [w.url for w in config.webhooks]
    values += [value for w in config.webhooks for value in w.headers.values()]
    if config.http is not None and config.http.token is not None:
        values.append(config.http.token.get_secret_value())
    if config.mqtt is not None and config.mqtt.broker.username is not None:
        # The URL with its credentials, and the password. Not the user name alone: a common one
        # ("mqtt", "camwatch") would blank those words out of every log line, and it is never
        # logged. (A URL without credentials is what the logs show as the broker.)
        values += [config.mqtt.url.get_secret_value(), config.mqtt.broker.password]
    return values


def log_readable_secrets(config_path: str) -> None:
    """Log `config_readable_by_others` if the file holds secrets every local user can read: at
    start (once logging is configured as the file says) and at each reload."""
    found = readable_secrets(config_path)
    if found is not None:
        log.warning(
            "config_readable_by_others",
            path=found.path,
            mode=f"{found.mode:04o}",
            secrets=found.fields,
            fix=found.fix,
        )


def build_runtime(config: Config, stop: threading.Event, metrics: Metrics | None = None) -> Runtime:
    """Return the reloadable parts for `config`. Raise ConfigError if an API key is missing."""
    register_secrets(secrets_of(config, *provider_keys(config.caption)))
    client = provider_for(config.caption, stop=stop, metrics=metrics)
    rules = RuleSet(config.rules, config.matching, config.timezone)
    return Runtime(config=config, client=client, rules=rules)


def stall_limit(config: Config) -> float:
    """Return how long a busy pipeline may go without finishing a job before it counts as
    wedged: the longest a job can legitimately take, plus a margin."""
    caption = config.caption
    # With a fallback, one job may go through both providers' retries.
    blocks = [caption] if caption.fallback is None else [caption, caption.fallback]
    longest = sum(
        b.retry.attempts * b.timeout + (b.retry.attempts - 1) * b.retry.backoff_max for b in blocks
    )
    return longest + 60.0


class Service:
    """The daemon: `run()` blocks until SIGTERM/SIGINT (or, with `once`, until drained)."""

    def __init__(
        self,
        config_path: str,
        config: Config,
        once: bool = False,
        bar: TerminalBar | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.once = once
        self.progress = Progress(every_from_env())
        self.bar = bar  # `--once` on a terminal
        self._progress_look_at = 0.0
        self._bar_total = 0
        self.stop = threading.Event()
        self._wakeup = Wakeup()
        self._reload_requested = False
        self._stop_requested = False
        self._old_clients: list[Provider] = []
        self.metrics = Metrics()
        self.listener: HttpListener | None = None
        self.mqtt: MqttLink | None = None  # the broker connection, with `mqtt:`
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
        self.progress.finished(outcome)
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

    def _captioned(self, event: CaptionedImage) -> None:
        link = self.mqtt
        if link is not None:
            link.captioned(event)

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
        reconsider_skipped(self.store, config)  # e.g. too large for a limit since raised
        # What waited for a time (a spent daily budget's midnight, an outage's backoff) is due
        # now: a restart, like a reload, may come with the cause fixed (a raised daily_tokens).
        # If it is not, the first image puts the rest off again.
        self.store.due_now()
        self.metrics.prime(config)
        self.runtime = build_runtime(config, self.stop, self.metrics)
        self.gate = CaptionGate.for_config(config.caption)
        self._last_outcome = ""
        self.debouncer = Debouncer(self._emit, config.debounce, config.complete_timeout)
        self.debouncer.tune(config)
        self.pipeline = pipeline = Pipeline(
            self.store,
            self.gate,
            lambda: self.runtime,
            self.stop,
            self._retouch,
            on_alerts=lambda: self.dispatcher.wake(),
            on_done=self._on_done,
            on_recovered=lambda: self.pool.wake(),
            metrics=self.metrics,
            on_captioned=self._captioned,
        )
        pipeline.pace.set_rate(config.caption.max_per_minute)
        self.pool = WorkerPool(self.store, pipeline, self.stop)
        self.dispatcher = Dispatcher(self.store, metrics=self.metrics, mqtt_link=lambda: self.mqtt)
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
        self._sync_mqtt(None, config)
        self.dispatcher.sync(config)
        self.pool.resize(config.caption.concurrency)
        watched = self.watcher.sync(config.cameras)
        self.view = ServiceView(
            Parts(
                state_dir=config.state_dir,
                config=lambda: self.runtime.config,
                gate=self.gate,
                watching=self.watcher.states,
                busy=lambda: self.pool.busy,
                settling=lambda: len(self.debouncer),
            )
        )
        self.metrics.watch(self.view)
        self._sync_listener(config)
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
        try:
            self._loop()
        finally:
            if self.bar is not None:
                self.bar.close()

    def _loop(self) -> None:
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
            self._report_progress(now)
            if self.once and self._drained():
                self._report_progress(now, final=True)
                log.info("once_finished", **self.store.counts())
                break
            if self.once and self.gate.state is GateState.PAUSED:
                log.error("once_aborted", reason=self.gate.reason)
                self.exit_code = 1
                break
            if self.once and self.pipeline.costs.paused_until is not None:
                log.error("once_aborted", reason="daily token budget spent")
                self.exit_code = 1
                break

    def _report_progress(self, now: float, final: bool = False) -> None:
        """Log a summary line when a burst is due one, and move the `--once` bar."""
        if final or now >= self._progress_look_at:
            self._progress_look_at = now + PROGRESS_LOOK_S
            # Counting the queue reads the images table: not while idle (the usual state).
            look = final or self.bar is not None or self.pool.busy > 0 or self.progress.active
            try:
                queued = self.store.queue_length() if look else 0
            except StateError:
                return  # the workers and the status line report a failing database
            line = self.progress.observe(queued)
            if line is not None:
                log.info(line.event, **line.fields)
            self._bar_total = self.progress.done_ever + queued + len(self.debouncer)
        if self.bar is not None:
            self.bar.update(self.progress.done_ever, self._bar_total)

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
            parts.append(f"last caption: {clip(self.pipeline.last_caption, 80)}")
        if self.pipeline.last_error:
            parts.append(f"last error: {clip(self.pipeline.last_error, 80)}")
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
            runtime = build_runtime(new, self.stop, self.metrics)
        except ConfigError as exc:
            log.error("reload_refused", problems=exc.problems, config=self.config_path)
            return False
        self.notifier.reloading()
        self._old_clients.append(self.runtime.client)
        self.runtime = runtime
        old, self.config = self.config, new
        log_readable_secrets(self.config_path)
        self.debouncer.tune(new)
        self.gate.tune(new.caption)
        self.gate.resume()
        self.pipeline.pace.set_rate(new.caption.max_per_minute)
        budget_changed = old.caption.daily_tokens != new.caption.daily_tokens
        if self.pipeline.costs.paused_until is not None or budget_changed:
            # The images put off until midnight are due now: a raised (or removed)
            # daily_tokens lets them go; if it is still spent, they are put off again. (A
            # process started since the pause has no paused_until, hence the change itself.)
            self.pipeline.costs.paused_until = None
            self.store.due_now()
        try:
            self.store.skip_pending_of({c.name for c in new.cameras})
            reconsider_skipped(self.store, new)
            added = self.watcher.sync(new.cameras)
        except (StateError, OSError) as exc:
            log.error("reload_partial", error=str(exc))
            added = []
        self._sync_mqtt(old, new)
        self.dispatcher.sync(new)
        self.metrics.prime(new)
        self._sync_listener(new)
        self.pool.resize(new.caption.concurrency)
        self.pool.wake()
        self.scanner.request(*added)
        log.info("reloaded", cameras=[c.name for c in new.cameras], rules=len(new.rules))
        self.notifier.ready(status="reloaded")
        return True

    def _sync_mqtt(self, old: Config | None, new: Config) -> None:
        """Connect to the broker as `new.mqtt` says: start, stop or replace the link (a changed
        URL, keepalive or topic prefix), or hand it the new cameras and rules. What the old
        configuration announced to Home Assistant and the new one does not is cleared."""
        link = self.mqtt
        if new.mqtt is None:
            if link is not None:
                self.mqtt = None
                link.stop(clear_discovery=True)  # mqtt removed: its entities go too
            return
        before = set(discovery(old).messages) if old is not None else set()
        if link is not None and connection_settings(link.settings) == connection_settings(new.mqtt):
            link.update(new, previous=before)
            return
        if link is not None:
            before |= link.published_topics()
            self.mqtt = None
            link.stop()
        self.mqtt = MqttLink(new, cleared=before)
        self.mqtt.start()

    def _sync_listener(self, config: Config) -> None:
        """Serve HTTP as `config.http` says: start, stop or re-bind the listener (a listener
        that could not bind is tried again at each reload), with `config`'s timeline."""
        current = self.listener
        if current is not None and current.http == config.http:
            current.app.timeline = Timeline(config.state_dir, config, rules=self.runtime.rules)
            return
        if current is not None:
            current.stop()
            self.listener = None
        if config.http is None:
            return
        app = App(
            self.metrics, self.view, Timeline(config.state_dir, config, rules=self.runtime.rules)
        )
        listener = HttpListener(config.http, app)
        try:
            listener.start()
        except OSError as exc:
            log.error(
                "http_listen_failed",
                listen=config.http.listen,
                error=exc.strerror or str(exc),
                hint="/metrics, /healthz and the timeline are off; fix http.listen and reload",
            )
            return
        self.listener = listener

    def _shutdown(self) -> None:
        started = time.monotonic()
        self.notifier.stopping()
        if self.listener is not None:
            self.listener.stop()  # first: a page must not read what is being closed
        self.stop.set()
        self.watcher.stop()
        self.scanner.stop()
        self.debouncer.stop()
        self.pool.wake()
        finished = self.pool.join(max(STOP_BUDGET_S - 2.0 - (time.monotonic() - started), 0.5))
        self.dispatcher.stop(timeout=max(STOP_BUDGET_S - (time.monotonic() - started), 0.5))
        if self.mqtt is not None:  # after the dispatcher: an alert in flight gets its answer
            self.mqtt.stop(timeout=max(STOP_BUDGET_S - (time.monotonic() - started), 0.5))
        for client in [*self._old_clients, self.runtime.client]:
            client.close()
        self.view.close()
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


def run_service(
    config_path: str | Path, config: Config, once: bool = False, bar: TerminalBar | None = None
) -> int:
    """Run the daemon in the foreground. Return its exit status. Raise AlreadyRunning if
    another daemon uses the same `state_dir`."""
    with state_lock(config.state_dir):
        service = Service(str(config_path), config, once=once, bar=bar)
        service.install_signals()
        return service.run()
