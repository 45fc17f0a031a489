"""A stand-in of an OpenAI-compatible chat completions server (OpenAI, Ollama, llama.cpp, vLLM)
on loopback, for the `openai` provider: `POST {base_url}/chat/completions`.

It checks a request as strictly as a real server would (the field names and shapes of OpenAI's
published `CreateChatCompletionRequest`: a field the document does not define, a message without
a role, an image that is neither a data URL of the type its bytes are nor an http(s) URL: 400),
answers with a `chat.completion` object and its `usage`, and records every request as a
`RecordedChat`. It can be scripted like the memories stand-in (`fail_next`, `set_outage`,
`latency`, `go_down`/`come_up`), answering with OpenAI's error envelope
`{"error": {"message", "type", "param", "code"}}`.

The caption of an image is, in order: the text after `caption:` in a JPEG comment of the image
sent (see `jpeg_with_caption`), `captions[sha256 of its bytes]`, `captions[file name]` of a URL
request, `default_caption`. `captions=None` means the bundled samples' captions by their bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from requests.structures import CaseInsensitiveDict

from camwatch.files import content_kind
from camwatch.testing.answers import Answer, json_bytes
from camwatch.testing.samples import jpeg_caption, sample_images
from camwatch.testing.server import Handler, LoopbackServer, send_answer

DEFAULT_CAPTION = "A quiet scene with nothing unusual."
DEFAULT_MODEL = "llava:7b"
API_ROOT = "/v1"
PATH = API_ROOT + "/chat/completions"
# The request fields OpenAI's CreateChatCompletionRequest defines (openai-openapi, 2026-08);
# anything else gets a 400, as OpenAI answers "Unrecognized request argument supplied".
REQUEST_FIELDS = frozenset(
    {
        "messages", "model", "service_tier", "modalities", "verbosity", "reasoning_effort",
        "max_completion_tokens", "frequency_penalty", "presence_penalty", "web_search_options",
        "top_logprobs", "response_format", "audio", "store", "moderation", "stream", "stop",
        "logit_bias", "logprobs", "max_tokens", "n", "prediction", "seed", "stream_options",
        "tools", "tool_choice", "parallel_tool_calls", "function_call", "functions",
        "metadata", "temperature", "top_p", "user", "safety_identifier", "prompt_cache_key",
        "prompt_cache_retention", "prompt_cache_options",
    }
)  # fmt: skip
ROLES = frozenset({"developer", "system", "user", "assistant", "tool", "function"})
IMAGE_TYPES = ("image/jpeg", "image/png")


@dataclass(frozen=True)
class RecordedChat:
    """One request the stand-in received, as it understood it. `json` is the body, `image`
    the bytes of the data URL sent (None for an http(s) URL, then in `image_url`),
    `image_type` the type the data URL declared, `status` the status answered, `error` the
    reason of a 400 the stand-in gave itself."""

    time: float
    wall_time: float
    path: str
    headers: CaseInsensitiveDict[str]
    json: dict[str, Any] | None
    model: str | None
    system_prompt: str | None
    user_prompt: str | None
    image_url: str | None
    image: bytes | None
    image_type: str | None
    status: int
    caption: str | None = None
    error: str | None = None

    @property
    def authorization(self) -> str | None:
        """The `Authorization` header as received."""
        return self.headers.get("Authorization")


class _Refused(Exception):
    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def chat_error(
    status: int,
    message: str | None = None,
    code: str | None = None,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """Return an answer in OpenAI's error envelope: `{"error": {"message", "type", "param",
    "code"}}` (the message defaults to the status's phrase)."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
    error = {
        "message": message or phrase,
        "type": kind or ("invalid_request_error" if status < 500 else "server_error"),
        "param": None,
        "code": code,
    }
    return Answer(status, json_bytes({"error": error}), dict(headers or {}))


class StandinChatAPI(LoopbackServer):
    """An OpenAI-compatible chat completions server on loopback. `base_url` is what
    `caption.base_url` takes; `api_key=None` accepts any key or none; `model` is the one model
    it serves (any other: 404, as Ollama answers for a model it has not pulled; None: any);
    `content_as_parts` answers `content` as a list of text parts instead of a string."""

    name = "standin-chat"

    def __init__(
        self,
        captions: dict[str, str] | None = None,
        api_key: str | None = None,
        model: str | None = DEFAULT_MODEL,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        default_caption: str = DEFAULT_CAPTION,
        max_bytes: int = 40_000_000,
        content_as_parts: bool = False,
    ) -> None:
        super().__init__(host, port, latency)
        if captions is None:
            captions = {hashlib.sha256(data).hexdigest(): text for _, data, text in sample_images()}
        self.captions = dict(captions)
        self.api_key = api_key
        self.model = model
        self.default_caption = default_caption
        self.max_bytes = max_bytes
        self.content_as_parts = content_as_parts

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/v1`: the API root, for `caption.base_url`."""
        return self.url + API_ROOT

    # -- scripting -------------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        message: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next `count` requests with `status`, in OpenAI's error envelope (or with
        `body` as given: bytes/str as is, else JSON), e.g. `fail_next(2, 429, headers={
        "Retry-After": "1"})`, `fail_next(1, 429, code="insufficient_quota")`."""
        self.script.push(count, self._forced(status, message, code, headers, body))

    def set_outage(
        self, status: int | None, message: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        """Answer every request with `status` until called with None."""
        answer = None if status is None else self._forced(status, message, None, headers, None)
        self.script.set_outage(answer)

    @staticmethod
    def _forced(
        status: int,
        message: str | None,
        code: str | None,
        headers: dict[str, str] | None,
        body: Any,
    ) -> Answer:
        if body is None:
            return chat_error(status, message, code, headers=headers)
        payload = (
            body
            if isinstance(body, bytes)
            else (body.encode("utf-8") if isinstance(body, str) else json_bytes(body))
        )
        return Answer(status, payload, dict(headers or {}))

    # -- what was received -----------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedChat]:
        """Every request received so far, in order (a copy)."""
        return self._journal.items()

    # -- answering -------------------------------------------------------------------------

    def _on_post(self, handler: Handler) -> None:
        arrived, wall = time.monotonic(), time.time()
        self._journal.begin()
        try:
            raw = self._read_body(handler, self.max_bytes)
            if raw is None:
                return
            answer, seen = self._decide(handler, raw)
            if not self._pause(arrived):
                handler.close_connection = True
                return
            self._journal.add(
                RecordedChat(
                    time=arrived,
                    wall_time=wall,
                    path=handler.path,
                    headers=CaseInsensitiveDict(handler.headers.items()),
                    status=answer.status,
                    **seen,
                )
            )
            send_answer(handler, answer)
        finally:
            self._journal.end()

    def _decide(self, handler: Handler, raw: bytes) -> tuple[Answer, dict[str, Any]]:
        seen: dict[str, Any] = {
            "json": None, "model": None, "system_prompt": None, "user_prompt": None,
            "image_url": None, "image": None, "image_type": None,
        }  # fmt: skip
        path = urllib.parse.urlsplit(handler.path).path
        if path != PATH:
            message = f"404 page not found: {path}"
            return chat_error(404, message, kind="not_found_error"), seen
        forced = self.script.take()
        if forced is not None:
            return forced, seen
        if self.api_key is not None and handler.headers.get("Authorization") != (
            f"Bearer {self.api_key}"
        ):
            return chat_error(401, "Incorrect API key provided", "invalid_api_key"), seen
        try:
            body = _read_request(handler.headers.get("Content-Type") or "", raw, seen)
        except _Refused as refused:
            seen["error"] = refused.reason
            return chat_error(refused.status, refused.reason), seen
        if self.model is not None and body["model"] != self.model:
            message = f"model {body['model']!r} not found, try pulling it first"
            return chat_error(404, message, kind="not_found_error"), seen
        caption = self._caption_for(seen)
        seen["caption"] = caption
        prompt = f"{seen['system_prompt'] or ''} {seen['user_prompt'] or ''}"
        tokens_in = 85 + len(prompt) // 4
        tokens_out = 1 + len(caption) // 4
        content: Any = caption
        if self.content_as_parts:
            half = len(caption) // 2
            content = [
                {"type": "text", "text": caption[:half]},
                {"type": "text", "text": caption[half:]},
            ]
        answer = {
            "id": f"chatcmpl-{hashlib.sha256(raw).hexdigest()[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": tokens_in,
                "completion_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
        }
        return Answer(200, json_bytes(answer)), seen

    def _caption_for(self, seen: dict[str, Any]) -> str:
        image: bytes | None = seen["image"]
        if image is not None:
            embedded = jpeg_caption(image)
            if embedded is not None:
                return embedded
            return self.captions.get(hashlib.sha256(image).hexdigest(), self.default_caption)
        url = seen["image_url"] or ""
        name = urllib.parse.unquote(urllib.parse.urlsplit(url).path).rsplit("/", 1)[-1]
        return self.captions.get(name, self.default_caption)


# -- the request, checked --------------------------------------------------------------------


def _read_request(content_type: str, raw: bytes, seen: dict[str, Any]) -> dict[str, Any]:
    """Check a chat completions request as a strict server would; fill `seen` with what it
    holds. Return the body; raise _Refused with the reason otherwise."""
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise _Refused(f"expected Content-Type application/json, got {content_type!r}", 415)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise _Refused("the body is not JSON") from None
    if not isinstance(body, dict):
        raise _Refused("the body is not a JSON object")
    seen["json"] = body
    unknown = sorted(set(body) - REQUEST_FIELDS)
    if unknown:
        raise _Refused(f"Unrecognized request argument supplied: {', '.join(unknown)}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _Refused("'model' is required and must be a string")
    seen["model"] = model
    for key, low, high in (("max_tokens", 1, None), ("temperature", 0, 2)):
        value = body.get(key)
        if value is None:
            continue
        kind = int if key == "max_tokens" else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise _Refused(f"'{key}' must be a number, got {value!r}")
        if value < low or (high is not None and value > high):
            raise _Refused(f"'{key}' out of range: {value!r}")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Refused("'messages' must be a non-empty array")
    for i, message in enumerate(messages):
        _read_message(i, message, seen)
    if seen["image_url"] is None:
        raise _Refused("no image_url content part: nothing to describe")
    return body


def _read_message(i: int, message: Any, seen: dict[str, Any]) -> None:
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        raise _Refused(f"messages[{i}]: expected an object with a role of {sorted(ROLES)}")
    unknown = sorted(set(message) - {"role", "content", "name"})
    if unknown:
        raise _Refused(f"messages[{i}]: unrecognized field(s) {', '.join(unknown)}")
    content = message.get("content")
    role = message["role"]
    if isinstance(content, str):
        seen["system_prompt" if role == "system" else "user_prompt"] = content
        return
    if not isinstance(content, list) or not content:
        raise _Refused(f"messages[{i}].content: expected a string or a non-empty array of parts")
    for j, part in enumerate(content):
        where = f"messages[{i}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str) and set(part) <= {"type", "text"}:
            key = "system_prompt" if role == "system" else "user_prompt"
            seen[key] = (seen[key] or "") + part["text"]
        elif kind == "image_url" and role == "user" and set(part) <= {"type", "image_url"}:
            _read_image(where, part.get("image_url"), seen)
        else:
            raise _Refused(f"{where}: expected a text part or (from the user) an image_url part")


def _read_image(where: str, image_url: Any, seen: dict[str, Any]) -> None:
    if not isinstance(image_url, dict) or not isinstance(image_url.get("url"), str):
        raise _Refused(f"{where}.image_url: expected an object with a string 'url'")
    if set(image_url) - {"url", "detail"}:
        raise _Refused(f"{where}.image_url: unrecognized field(s)")
    url: str = image_url["url"]
    seen["image_url"] = url[:200]
    if url.startswith(("http://", "https://")):
        return
    head, sep, data = url.partition(",")
    if not url.startswith("data:") or not sep or not head.endswith(";base64"):
        raise _Refused(f"{where}.image_url.url: expected data:<type>;base64,... or an http(s) URL")
    declared = head[len("data:") : -len(";base64")]
    if declared not in IMAGE_TYPES:
        raise _Refused(f"{where}: unsupported image type {declared!r}", 415)
    try:
        image = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _Refused(f"{where}: the data URL is not valid base64") from None
    kind = content_kind(image)
    if kind is None or f"image/{kind}" != declared:
        raise _Refused(f"{where}: declared {declared}, but the bytes are {kind or 'no image'}")
    seen["image"] = image
    seen["image_type"] = declared
