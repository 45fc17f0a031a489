"""Local stand-ins for the far ends of camwatch's two HTTP connections, on 127.0.0.1.

These are for tests, benchmarks and `camwatch demo`; the daemon never imports them. They are
installed with camwatch because `camwatch demo` runs on them.

`StandinCaptionAPI` speaks the caption API's wire format (and checks it strictly: a request the
real API would not understand gets a 400 here too); `WebhookReceiver` records alert deliveries.
Both are built like a small real server (`LoopbackServer`: keep-alive, TCP_NODELAY, a clean stop
that joins every thread), can be scripted (`fail_next`, `set_outage`, `latency`) and taken off
the network (`go_down` refuses connections, `come_up` listens on the same port again), record
what they received, and `wait_for(n, timeout)` waits on a Condition rather than polling.

Modules:
- `server`: the loopback HTTP server both are built on; `answers`: scripted answers;
  `journal`: what a server recorded, to wait on;
- `caption_api`: `StandinCaptionAPI` and the `RecordedRequest`s it records;
- `chat_api`: `StandinChatAPI`, an OpenAI-compatible chat completions server (the `openai`
  provider's far end), and the `RecordedChat`s it records;
- `multipart`: the caption API's request format (multipart upload or JSON), parsed strictly;
- `webhooks`: `WebhookReceiver` and the `ReceivedWebhook`s it records;
- `samples`: the bundled sample snapshots and JPEGs that carry their caption;
- `__main__`: `python -m camwatch.testing api|webhook ...`, one in the foreground.
"""

from __future__ import annotations

from camwatch.testing.caption_api import (
    DEFAULT_API_KEY,
    DEFAULT_CAPTION,
    ENDPOINTS,
    RecordedRequest,
    StandinCaptionAPI,
)
from camwatch.testing.chaos import ChaosProxy, Fault, Faults
from camwatch.testing.chat_api import RecordedChat, StandinChatAPI, chat_error
from camwatch.testing.multipart import IMAGE_TYPES, Part, parse_multipart
from camwatch.testing.samples import (
    CAPTION_PREFIX,
    jpeg_caption,
    jpeg_with_caption,
    sample_images,
)
from camwatch.testing.server import LoopbackServer
from camwatch.testing.webhooks import ReceivedWebhook, WebhookReceiver

__all__ = [
    "CAPTION_PREFIX",
    "DEFAULT_API_KEY",
    "DEFAULT_CAPTION",
    "ENDPOINTS",
    "IMAGE_TYPES",
    "ChaosProxy",
    "Fault",
    "Faults",
    "LoopbackServer",
    "Part",
    "ReceivedWebhook",
    "RecordedChat",
    "RecordedRequest",
    "StandinCaptionAPI",
    "StandinChatAPI",
    "WebhookReceiver",
    "chat_error",
    "jpeg_caption",
    "jpeg_with_caption",
    "parse_multipart",
    "sample_images",
]
