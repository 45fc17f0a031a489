"""A stand-in of the memories.ai Image Caption API on loopback, with its exact wire format.

It checks requests as strictly as the real API (a request the real API would not understand gets
a 400 here too), answers with the documented envelope, and records every request as a
`RecordedRequest`. It can be scripted (`fail_next`, `set_outage`, `latency`) and taken off the
network (`go_down`/`come_up`, from `LoopbackServer`).
"""

from __future__ import annotations

import hashlib
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from requests.structures import CaseInsensitiveDict

from camwatch.testing.answers import Answer, error_answer, json_bytes
from camwatch.testing.multipart import ParsedRequest, parse_request
from camwatch.testing.samples import bundled_captions, jpeg_caption
from camwatch.testing.server import Handler, LoopbackServer, send_answer

DEFAULT_CAPTION = "A quiet scene with nothing unusual."
DEFAULT_API_KEY = "standin-key"
ENDPOINTS = ("/v1/understand/uploadImg", "/v1/understand/uploadImgFile")


@dataclass(frozen=True)
class RecordedRequest:
    """One request the stand-in caption API received, as it understood it.

    `time` is `time.monotonic()` when the request arrived (compare two of them for the gap between
    tries); `wall_time` is the same moment as `time.time()`. For an upload, `json` is the `req`
    part and `parts`, `part_filenames`, `part_types` describe the parts in the order they came;
    for a URL request `json` is the body and `url` its `url`. `status` is the HTTP status of the
    answer given, `error` the reason for a 400/415 the stand-in gave itself, `client_port` the
    client's TCP port (the same one on consecutive requests when the connection is reused)."""

    time: float
    wall_time: float
    method: str
    path: str
    headers: CaseInsensitiveDict[str]
    content_type: str
    json: dict[str, Any] | None
    file_name: str | None
    file_size: int
    file_content_type: str | None
    sha256: str | None
    url: str | None
    status: int
    parts: list[str] = field(default_factory=list)
    part_filenames: list[str | None] = field(default_factory=list)
    part_types: list[str | None] = field(default_factory=list)
    caption: str | None = None
    error: str | None = None
    client_port: int = 0

    @property
    def authorization(self) -> str | None:
        """The `Authorization` header as received."""
        return self.headers.get("Authorization")


class StandinCaptionAPI(LoopbackServer):
    """The memories.ai Image Caption API, on loopback, with its exact wire format.

    The caption of an upload is, in order: the text after `caption:` in a JPEG comment segment
    of the uploaded bytes (see `jpeg_with_caption`), `captions[file name]`, `default_caption`. A
    URL request is never fetched: its base name is looked up in `captions`. `captions=None`
    means the bundled samples' captions. `api_key=None` accepts any key."""

    name = "standin-api"

    def __init__(
        self,
        captions: dict[str, str] | None = None,
        api_key: str | None = DEFAULT_API_KEY,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        default_caption: str = DEFAULT_CAPTION,
        max_bytes: int = 25_000_000,
    ) -> None:
        super().__init__(host, port, latency)
        self.captions = dict(bundled_captions() if captions is None else captions)
        self.api_key = api_key
        self.default_caption = default_caption
        self.max_bytes = max_bytes

    # -- scripting -------------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        status: int | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        code: Any = None,
    ) -> None:
        """Answer the next `count` requests with `status` (default 503, or 200 when `code` is
        given), `headers` (e.g. `{"Retry-After": "2"}`) and `body` (bytes/str as is, else JSON;
        default the API's error envelope with `code`). E.g. `fail_next(2, code=-1)` for two
        `code: -1` answers, `fail_next(1, 200, body=b"<html>")` for a garbled one."""
        if status is None:
            status = 200 if code is not None else 503
        self.script.push(count, error_answer(status, body, headers, code))

    def set_outage(
        self, status: int | None, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        """Answer every request with `status` until called with None."""
        self.script.set_outage(None if status is None else error_answer(status, body, headers))

    # -- what was received -----------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order (a copy)."""
        return self._journal.items()

    @property
    def in_flight(self) -> int:
        """How many requests are being answered right now."""
        return self._journal.in_flight

    def wait_in_flight(self, n: int, timeout: float) -> bool:
        """Wait until `n` requests are being answered at once (e.g. held by `latency`)."""
        return self._journal.wait_in_flight(n, timeout)

    # -- answering -------------------------------------------------------------------------

    def _on_post(self, handler: Handler) -> None:
        arrived, wall = time.monotonic(), time.time()
        self._journal.begin()
        try:
            body = self._read_body(handler, self.max_bytes)
            if body is None:
                return
            parsed = parse_request(handler.headers.get("Content-Type") or "", body)
            answer, caption = self._decide(handler, parsed)
            if not self._pause(arrived):
                handler.close_connection = True
                return
            data = parsed.file_bytes
            self._journal.add(
                RecordedRequest(
                    time=arrived,
                    wall_time=wall,
                    method=handler.command,
                    path=handler.path,
                    headers=CaseInsensitiveDict(handler.headers.items()),
                    content_type=parsed.content_type,
                    json=parsed.json,
                    file_name=parsed.file_name,
                    file_size=len(data),
                    file_content_type=parsed.file_content_type,
                    sha256=hashlib.sha256(data).hexdigest()
                    if parsed.file_name is not None
                    else None,
                    url=parsed.url,
                    status=answer.status,
                    parts=parsed.parts,
                    part_filenames=parsed.part_filenames,
                    part_types=parsed.part_types,
                    caption=caption,
                    error=parsed.error[1] if parsed.error else None,
                    client_port=handler.client_address[1],
                )
            )
            # Recorded first: a client that has its answer finds its request in the record.
            send_answer(handler, answer)
        finally:
            self._journal.end()

    def _decide(self, handler: Handler, parsed: ParsedRequest) -> tuple[Answer, str | None]:
        path = urllib.parse.urlsplit(handler.path).path
        if path not in ENDPOINTS:
            return error_answer(404, {"code": "0404", "msg": "not found", "data": None}), None
        forced = self.script.take()
        if forced is not None:
            return forced, None
        given = handler.headers.get("Authorization")
        if not given or (self.api_key is not None and given != self.api_key):
            return error_answer(401, {"code": "0401", "msg": "unauthorized", "data": None}), None
        if parsed.error is not None:
            status, reason = parsed.error
            return error_answer(status, {"code": -1, "msg": reason, "data": None}), None
        caption = self._caption_for(parsed)
        assert parsed.json is not None
        prompt = f"{parsed.json['user_prompt']} {parsed.json['system_prompt']}"
        tokens_in = 258 + len(prompt) // 4
        tokens_out = 1 + len(caption) // 4
        body = {
            "code": 0,
            "msg": "success",
            "data": {
                "text": caption,
                "token": {
                    "input": tokens_in,
                    "output": tokens_out,
                    "total": tokens_in + tokens_out,
                },
            },
        }
        return Answer(200, json_bytes(body)), caption

    def _caption_for(self, parsed: ParsedRequest) -> str:
        if parsed.url is not None:
            name = urllib.parse.unquote(urllib.parse.urlsplit(parsed.url).path).rsplit("/", 1)[-1]
            return self.captions.get(name, self.default_caption)
        embedded = jpeg_caption(parsed.file_bytes)
        if embedded is not None:
            return embedded
        return self.captions.get(parsed.file_name or "", self.default_caption)
