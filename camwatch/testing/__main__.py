"""Run a stand-in in the foreground: `python -m camwatch.testing api --port 8080 --latency 0.1
--api-key K`, `python -m camwatch.testing chat --model llava:7b` (an OpenAI-compatible server:
`caption.base_url` is its URL plus /v1) or `python -m camwatch.testing webhook --port 8081`; the
first line on stdout is its URL. The benchmarks start the caption API this way, in a process of
its own.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from camwatch.testing.caption_api import DEFAULT_API_KEY, StandinCaptionAPI
from camwatch.testing.chat_api import DEFAULT_MODEL, StandinChatAPI
from camwatch.testing.webhooks import WebhookReceiver


def main(argv: list[str] | None = None) -> int:
    """Run a stand-in in the foreground until SIGINT/SIGTERM; print its URL first."""
    parser = argparse.ArgumentParser(
        prog="python -m camwatch.testing", description="Local stand-ins for benchmarks and demos."
    )
    sub = parser.add_subparsers(dest="what", required=True)
    api = sub.add_parser("api", help="the caption API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=0)
    api.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    api.add_argument("--api-key", default=DEFAULT_API_KEY)
    api.add_argument("--captions", help="JSON file: file name -> caption (default: the samples)")
    chat = sub.add_parser("chat", help="an OpenAI-compatible chat completions server")
    chat.add_argument("--host", default="127.0.0.1")
    chat.add_argument("--port", type=int, default=0)
    chat.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    chat.add_argument("--api-key", default=None, help="require this Bearer key (default: none)")
    chat.add_argument("--model", default=DEFAULT_MODEL, help="the one model served")
    hook = sub.add_parser("webhook", help="a webhook receiver")
    hook.add_argument("--host", default="127.0.0.1")
    hook.add_argument("--port", type=int, default=0)
    hook.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    args = parser.parse_args(argv)

    server: StandinCaptionAPI | StandinChatAPI | WebhookReceiver
    if args.what == "chat":
        server = StandinChatAPI(
            api_key=args.api_key,
            model=args.model,
            latency=args.latency,
            host=args.host,
            port=args.port,
        )
    elif args.what == "api":
        captions = None
        if args.captions:
            with open(args.captions, encoding="utf-8") as handle:
                captions = json.load(handle)
        server = StandinCaptionAPI(
            captions, api_key=args.api_key, latency=args.latency, host=args.host, port=args.port
        )
    else:
        server = WebhookReceiver(host=args.host, port=args.port, latency=args.latency)
    # Block the signals before any thread starts (threads inherit the mask); sigwait takes them.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server.start()
    try:
        print(server.url, flush=True)
        signal.sigwait(stop_signals)
    finally:
        server.stop()
    print(f"{server.name}: {server.count} requests", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
