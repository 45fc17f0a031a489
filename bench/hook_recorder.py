"""The webhook receiver for the benchmark, in its own process (its CPU is not the daemon's, and
its clock is read as each POST arrives, not when the benchmark gets round to it).

    python bench/hook_recorder.py [--port P]

Prints its URL, then one JSON line per POST received: `{"t": <time.time() on arrival>,
"image": <the alert's image>, "status": <answer>}`. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from camwatch.testing import WebhookReceiver

POLL_S = 0.02


def main(argv: list[str] | None = None) -> int:
    """Run the receiver and stream what it receives until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with WebhookReceiver(port=args.port) as hook:
        print(hook.url, flush=True)
        sent = 0
        while not stop.is_set():
            hook.wait_for(sent + 1, POLL_S)
            if hook.count <= sent:
                continue
            fresh = hook.received[sent:]
            sent += len(fresh)
            lines = []
            for item in fresh:
                body = item.json if isinstance(item.json, dict) else {}
                record = {"t": item.wall_time, "image": body.get("image"), "status": item.status}
                lines.append(json.dumps(record))
            try:
                sys.stdout.write("\n".join(lines) + "\n")
                sys.stdout.flush()
            except BrokenPipeError:
                break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
