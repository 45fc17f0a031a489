"""`camwatch demo`: the real daemon, end to end, with no key and no network.

It starts `camwatch run` as a child process on a temporary folder, with a local stand-in of the
caption API (the real wire format, captions for the bundled sample snapshots; with `--provider
openai`, an OpenAI-compatible chat completions server as Ollama runs one) and a local webhook
receiver, both on 127.0.0.1. It drops the samples the ways cameras do (a plain copy, a file
written slowly in chunks, a `.part` file renamed when finished, and a truncated file that never
completes), prints each caption, rule decision and alert as it happens, then stops the daemon.
Only the far ends of the two HTTP connections are local; every line of camwatch is the real one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from camwatch.config import parse_config
from camwatch.rules import RuleSet
from camwatch.testing import StandinCaptionAPI, StandinChatAPI, WebhookReceiver, sample_images

DEMO_KEY = "demo-key-not-secret"
DEMO_SECRET = "demo-webhook-secret"
DEADLINE_S = 50.0

# The caption section for each provider; the rest of the file is the same.
CAPTION = {
    "memories": "  base_url: {api}\n  api_key: {key}\n",
    "openai": "  provider: openai\n  base_url: {api}\n  model: {model}\n",
}

CONFIG = """\
caption:
{caption}  concurrency: 2
  timeout: 10s
  retry: {{attempts: 3, backoff_initial: 200ms, backoff_max: 1s}}
cameras:
  - name: frontdoor
    path: {root}/cameras/frontdoor
  - name: driveway
    path: {root}/cameras/driveway
debounce: 500ms
complete_timeout: 3s
state_dir: {root}/state
rules:
  - name: person-down
    any: ["lying on the ground", "collapsed", "fallen", "unconscious"]
    none: ["statue", "poster", "mannequin"]
    severity: critical
    cooldown: 5m
  - name: package-delivered
    any: ["package", "parcel", "delivery"]
    severity: info
  - name: vehicle
    any: ["car", "truck", "van"]
    cameras: [driveway]
    severity: info
webhooks:
  - name: demo-receiver
    url: {hook}
    secret: {secret}
log: {{level: info, format: json}}
"""


def _say(text: str) -> None:
    print(text, flush=True)


def _describe(event: dict[str, Any], root: str) -> str | None:
    """Turn one daemon log event into a line for a person, or None to stay quiet."""
    name = event.get("event")
    where = f"[{event.get('camera', '-')}] {os.path.basename(str(event.get('path', '')))}"
    if name == "ready":
        return "daemon ready: watching " + ", ".join(event.get("cameras", []))
    if name == "image_captioned":
        rules = ", ".join(event.get("rules") or []) or "no rule"
        return f"{where} caption: {event.get('caption')}\n    rules matched: {rules}"
    if name == "alert_decided":
        return f"{where} ALERT {event.get('rule')} (matched {event.get('matched')})"
    if name == "alert_suppressed":
        return f"{where} alert {event.get('rule')} suppressed by cooldown"
    if name == "alert_delivered":
        camera = event.get("camera")
        return f"[{camera}] alert {event.get('rule')} delivered to {event.get('target')}"
    if name in ("image_skipped", "file_incomplete_skipped", "image_failed"):
        return f"{where} skipped: {event.get('reason')}"
    if event.get("level") in ("warning", "error"):
        return (
            f"daemon {event.get('level')}: {name} {event.get('reason') or event.get('error') or ''}"
        )
    return None


def _pump(stream: Any, root: str, captions: list[str]) -> None:
    for raw in stream:
        line = raw.strip()
        try:
            event = json.loads(line)
        except ValueError:
            if line:
                _say(f"daemon: {line}")
            continue
        if event.get("event") in ("image_captioned", "file_incomplete_skipped"):
            captions.append(str(event.get("event")))
        text = _describe(event, root)
        if text:
            _say(text)


def _write_slowly(path: Path, data: bytes, chunks: int = 4, pause: float = 0.2) -> None:
    size = -(-len(data) // chunks)
    with open(path, "wb") as handle:
        for start in range(0, len(data), size):
            handle.write(data[start : start + size])
            handle.flush()
            time.sleep(pause)  # a camera on a slow link: the debouncer must wait it out


def run_demo(keep: bool = False, provider: str = "memories") -> int:
    """Run the demo with the stand-in of `provider` (memories, or openai: an OpenAI-compatible
    server without a key, as Ollama on the same machine). Return 0 if every sample was
    captioned and every expected alert arrived."""
    root = Path(tempfile.mkdtemp(prefix="camwatch-demo-"))
    samples = sample_images()
    captions = {name: caption for name, _, caption in samples}
    api: StandinCaptionAPI | StandinChatAPI
    if provider == "openai":
        api = StandinChatAPI(latency=0.2)  # the samples' captions, by their bytes
    else:
        api = StandinCaptionAPI(captions=captions, api_key=DEMO_KEY, latency=0.2)
    hooks = WebhookReceiver()
    proc: subprocess.Popen[str] | None = None
    try:
        api.start()
        hooks.start()
        for cam in ("frontdoor", "driveway"):
            (root / "cameras" / cam).mkdir(parents=True)
        address = api.base_url if isinstance(api, StandinChatAPI) else api.url
        caption = CAPTION[provider].format(api=address, key=DEMO_KEY, model=api_model(api))
        text = CONFIG.format(caption=caption, hook=hooks.url, secret=DEMO_SECRET, root=root)
        config_path = root / "config.yaml"
        config_path.write_text(text)
        import yaml

        config = parse_config(yaml.safe_load(text))
        rules = RuleSet(config.rules, config.matching, config.timezone)
        plan = _plan(samples)
        expected = sum(
            len(rules.matching(caption, cam, schedules=False)) for cam, _, _, caption, _ in plan
        )
        _say(f"camwatch demo in {root}")
        what = "OpenAI-compatible API" if provider == "openai" else "caption API"
        _say(f"  stand-in {what} {address}, webhook receiver {hooks.url}")
        proc = subprocess.Popen(
            [sys.executable, "-m", "camwatch", "run", "-c", str(config_path)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        seen: list[str] = []
        pump = threading.Thread(
            target=_pump, args=(proc.stderr, str(root), seen), name="demo-log", daemon=True
        )
        pump.start()
        if not _wait(lambda: (root / "state" / "camwatch.db").exists(), 15):
            _say("demo: the daemon did not start")
            return 1
        time.sleep(0.3)  # let the watches settle before the first drop
        for cam, name, data, _, how in plan:
            target = root / "cameras" / cam / name
            if how == "slow":
                _say(f"[{cam}] {name}: writing slowly in chunks")
                _write_slowly(target, data)
            elif how == "part":
                _say(f"[{cam}] {name}: written as {name}.part, then renamed")
                part = target.with_name(name + ".part")
                part.write_bytes(data)
                part.rename(target)
            else:
                _say(f"[{cam}] {name}: copied in")
                target.write_bytes(data)
        truncated = root / "cameras" / "frontdoor" / "broken.jpg"
        truncated.write_bytes(plan[0][2][: len(plan[0][2]) // 2])
        _say("[frontdoor] broken.jpg: half a JPEG that never completes")
        # Every sample captioned, the broken file given up on, and every expected alert in.
        ok = _wait(
            lambda: (
                seen.count("image_captioned") >= len(plan)
                and "file_incomplete_skipped" in seen
                and len(hooks.received) >= expected
            ),
            DEADLINE_S,
        )
        time.sleep(0.5)
        for alert in hooks.received:
            body = alert.json
            signed = hooks.verify_signature(
                alert.body, alert.headers.get("X-Camwatch-Signature", ""), DEMO_SECRET
            )
            _say(
                f"webhook received: {body['severity']} {body['rule']} on {body['camera']}"
                f" (id {body['id'][:8]}, signature {'valid' if signed else 'INVALID'})"
            )
        _say(
            f"demo: {seen.count('image_captioned')}/{len(plan)} images captioned,"
            f" {len(hooks.received)}/{expected} alerts received, {api.count} API calls"
        )
        return 0 if ok else 1
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        hooks.stop()
        api.stop()
        if keep:
            _say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def api_model(api: StandinCaptionAPI | StandinChatAPI) -> str:
    """Return the model the stand-in serves ("" for the memories stand-in, which has none)."""
    return (api.model or "") if isinstance(api, StandinChatAPI) else ""


def _plan(samples: list[tuple[str, bytes, str]]) -> list[tuple[str, str, bytes, str, str]]:
    """Return (camera, name, bytes, caption, how) for each sample to drop."""
    ways = ["copy", "slow", "part"]
    cams = ["frontdoor", "driveway"]
    return [
        (cams[i % 2], name, data, caption, ways[i % 3])
        for i, (name, data, caption) in enumerate(samples)
    ]


def _wait(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())
