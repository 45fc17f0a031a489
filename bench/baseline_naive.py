"""The script a user would write instead of camwatch: poll the folders, upload each new image,
post a webhook if the caption mentions something. Sequential, one request at a time, a new
connection for each (`requests.post`), no debounce, no state file, no retries.

    python bench/baseline_naive.py --api URL --key KEY --webhook URL FOLDER [FOLDER ...]

`--max N` stops after N images and `--deadline S` after S seconds, so a benchmark run is
bounded; a user's script would loop for ever.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import requests

PHRASES = ["person", "someone", "lying on the ground", "collapsed", "car", "smoke", "fire"]
POLL_S = 1.0


def main(argv: list[str] | None = None) -> int:
    """Poll, caption, alert; return 0 once `--max` images are done, 1 at the deadline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--api", required=True, help="base URL of the caption API")
    parser.add_argument("--key", required=True)
    parser.add_argument("--webhook", required=True)
    parser.add_argument("--max", type=int, default=1_000_000)
    parser.add_argument("--deadline", type=float, default=3600.0)
    args = parser.parse_args(argv)

    url = args.api + "/v1/understand/uploadImg"
    prompt = {
        "user_prompt": "What's happening in this picture?",
        "system_prompt": "You are an image understanding system.",
        "thinking": False,
    }
    seen: set[str] = set()
    done = 0
    stop_at = time.monotonic() + args.deadline
    while done < args.max and time.monotonic() < stop_at:
        for folder in args.folders:
            for name in sorted(os.listdir(folder)):
                if done >= args.max or time.monotonic() >= stop_at:
                    break
                path = os.path.join(folder, name)
                if path in seen or not name.lower().endswith((".jpg", ".jpeg", ".png")):
                    continue
                seen.add(path)
                with open(path, "rb") as handle:
                    data = handle.read()
                try:
                    answer = requests.post(
                        url,
                        headers={"Authorization": args.key},
                        files={
                            "req": ("req.json", json.dumps(prompt), "application/json"),
                            "file": (name, data, "image/jpeg"),
                        },
                        timeout=30,
                    )
                    text = answer.json()["data"]["text"]
                except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
                    print(f"{path}: {exc}", file=sys.stderr)
                    continue
                done += 1
                if any(phrase in text.lower() for phrase in PHRASES):
                    try:
                        requests.post(
                            args.webhook,
                            json={"image": path, "caption": text, "camera": folder},
                            timeout=10,
                        )
                    except requests.RequestException as exc:
                        print(f"webhook: {exc}", file=sys.stderr)
        if done < args.max:
            time.sleep(POLL_S)
    return 0 if done >= args.max else 1


if __name__ == "__main__":
    raise SystemExit(main())
