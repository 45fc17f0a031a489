"""OpenAI-compatible chat completions: OpenAI, and the servers that speak its API on a machine of
your own (Ollama, llama.cpp's server, vLLM, LocalAI, LM Studio).

The request is `POST {base_url}/chat/completions` (the wire format of OpenAI's published OpenAPI
document, `CreateChatCompletionRequest`; a copy of its schema is in tests/data):

    {"model": MODEL,
     "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                  {"role": "user", "content": [
                      {"type": "text", "text": USER_PROMPT},
                      {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}]}],
     "max_tokens": 300, "temperature": 0}

with `Authorization: Bearer KEY` only when a key is configured. The image goes inline as a data
URL of the type its bytes are (`upload: url` sends the public URL instead). The caption is
`choices[0].message.content` (a string, or a list of text parts, joined); the tokens are
`usage.prompt_tokens` and `usage.completion_tokens`.

| answer                                                 | outcome                             |
|--------------------------------------------------------|-------------------------------------|
| HTTP 2xx with `choices[0].message.content`             | CaptionResult                       |
| HTTP 401/403                                           | AuthError at once: captioning pauses|
| HTTP 402, or 429 saying `insufficient_quota`           | CreditsError at once (no retries:   |
|                                                        | only an operator can fix either)    |
| HTTP 400/404/413/415/422, other 4xx, 3xx               | PermanentCaptionError (a 404 says   |
|                                                        | which URL and to check the model)   |
| a refusal (`message.refusal`, no content)              | PermanentCaptionError               |
| connection error, timeout, HTTP 408/409/429/5xx, an    | retried (Retry-After honoured);     |
| answer that is not a chat completion                   | TransientCaptionError when used up  |
"""

from __future__ import annotations

import base64
import http
import json
import threading
from typing import Any

import requests
import requests.auth

from camwatch.config import scrub_url
from camwatch.errors import (
    AuthError,
    CreditsError,
    PermanentCaptionError,
    TransientCaptionError,
)
from camwatch.metrics import Metrics
from camwatch.prompts import Prompts, mime_type
from camwatch.providers import CaptionResult
from camwatch.providers.http import HttpProvider, _Retry, checked_key, count

PATH = "/chat/completions"
DEFAULT_MAX_TOKENS = 300
DEFAULT_TEMPERATURE = 0.0
TRANSIENT_STATUS = frozenset({408, 409, 429})  # and every 5xx
AUTH_STATUS = frozenset({401, 403})
CREDITS_STATUS = frozenset({402})
# OpenAI answers 429 both for "slow down" and for "no credits left"; only the body tells.
_QUOTA_WORDS = ("insufficient_quota", "billing_hard_limit_reached")
_MAX_PARTS = 1000  # text parts joined from a list `content`; a caption has one or a few


class _BearerAuth(requests.auth.AuthBase):
    """Puts `Bearer KEY` in the `Authorization` header."""

    def __init__(self, key: str) -> None:
        self._value = f"Bearer {key}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._value
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(***)"


def request_body(
    model: str,
    prompts: Prompts,
    image_url: str,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    temperature: float = DEFAULT_TEMPERATURE,
) -> dict[str, Any]:
    """Given the model, the prompts and the image (a data URL or a public URL), return the chat
    completions request body. An empty system prompt sends no system message."""
    messages: list[dict[str, Any]] = []
    if prompts.system_prompt.strip():
        messages.append({"role": "system", "content": prompts.system_prompt})
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": prompts.user_prompt},
                {"type": "image_url", "image_url": {"url": image_url}},
            ],
        }
    )
    return {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
    }


def data_url(data: bytes, content_type: str) -> str:
    """Given an image's bytes and content type, return it as a `data:` URL (base64)."""
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"


class OpenAIProvider(HttpProvider):
    """Captions images through an OpenAI-compatible chat completions API. Thread-safe."""

    name = "openai"
    label = "OpenAI-compatible API"

    def __init__(
        self,
        config: Any,
        api_key: str | None = None,
        stop: threading.Event | None = None,
        session: requests.Session | None = None,
        metrics: Metrics | None = None,
        pool_size: int | None = None,
        field: str = "caption",
    ) -> None:
        """Given a provider block with `provider: openai` (`base_url`, `model`, `max_tokens`,
        `temperature`, `timeout`, `retry`) and its key (None: send no `Authorization`), build
        the provider. The other arguments as for the memories provider. Raise ConfigError
        (naming `field`) if the key cannot be sent in an HTTP header."""
        key = checked_key(api_key, field) if api_key is not None else None
        auth = _BearerAuth(key) if key is not None else None
        url = str(config.base_url).rstrip("/") + PATH
        super().__init__(config, url, auth, key, stop, session, metrics, pool_size)
        self.model: str = config.model
        max_tokens = getattr(config, "max_tokens", None)
        temperature = getattr(config, "temperature", None)
        self.max_tokens = DEFAULT_MAX_TOKENS if max_tokens is None else int(max_tokens)
        self.temperature = DEFAULT_TEMPERATURE if temperature is None else float(temperature)
        self._field = field

    def __repr__(self) -> str:
        return f"OpenAIProvider(url={self._url!r}, model={self.model!r})"

    def __enter__(self) -> OpenAIProvider:
        return self

    # -- public calls ------------------------------------------------------------------------

    def caption_file(
        self,
        data: bytes,
        filename: str,
        prompts: Prompts,
        logger: Any = None,
        content_type: str | None = None,
    ) -> CaptionResult:
        """Given an image's bytes, its file name and the prompts, send the image inline (a data
        URL of its sniffed type, unless `content_type` says) and return its caption. Raise a
        CaptionError subclass if there is none. `logger` logs the retries."""
        kind = content_type or mime_type(data, filename)
        return self._ask(data_url(data, kind), prompts, logger)

    def caption_url(self, url: str, prompts: Prompts, logger: Any = None) -> CaptionResult:
        """Given a public URL of an image and the prompts, have the server fetch it (as an
        `image_url`) and return its caption. Raise a CaptionError subclass if there is none."""
        return self._ask(url, prompts, logger)

    def _ask(self, image_url: str, prompts: Prompts, logger: Any) -> CaptionResult:
        body = request_body(self.model, prompts, image_url, self.max_tokens, self.temperature)
        # Encoded once, not again on every try.
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        return self._call(lambda: self._post(data=payload, headers=headers), logger)

    def _retry_fields(self) -> dict[str, Any]:
        return {"provider": self.name}

    # -- reading an answer -------------------------------------------------------------------

    def _read(self, response: requests.Response) -> CaptionResult:
        status = response.status_code
        try:
            body: Any = response.json()
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python parses
            body = None
        msg = self._said(_error_message(body))
        detail = f": {msg}" if msg else ""
        where = f"HTTP {status} from {self.label}"
        if status in AUTH_STATUS:
            raise AuthError(f"{where} (is {self._field}.api_key right?){detail}")
        if status in CREDITS_STATUS or (status == 429 and _out_of_quota(body)):
            raise CreditsError(f"{where} (credits or quota exhausted?){detail}")
        if status in TRANSIENT_STATUS or status >= 500:
            hint = self._retry_after(response)
            raise _Retry(TransientCaptionError(f"{where}{detail}", hint), hint)
        if 400 <= status < 500:
            hint = f"; {self._address_hint(status)}" if status in (404, 405) else ""
            raise PermanentCaptionError(f"{where}{detail}{hint}")
        if not 200 <= status < 300:
            target = response.headers.get("Location", "")
            raise PermanentCaptionError(
                f"{where} (redirect to {self._scrub(target)!r}; check {self._field}.base_url)"
            )
        return self._result(body, self._retry_after(response))

    def _result(self, body: Any, hint: float | None) -> CaptionResult:
        choices = body.get("choices") if isinstance(body, dict) else None
        first = choices[0] if isinstance(choices, list) and choices else None
        message = first.get("message") if isinstance(first, dict) else None
        if not isinstance(message, dict):
            error = TransientCaptionError(
                f"unexpected answer from {self.label} (no choices[0].message)"
            )
            raise _Retry(error, hint)
        text = _content_text(message.get("content"))
        if text is None:
            refusal = message.get("refusal")
            if isinstance(refusal, str) and refusal.strip():
                said = self._said(refusal)
                raise PermanentCaptionError(f"the model refused to describe the image: {said}")
            error = TransientCaptionError(
                f"unexpected answer from {self.label} (no choices[0].message.content)"
            )
            raise _Retry(error, hint)
        usage = body.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        tokens_in = count(usage.get("prompt_tokens"))
        tokens_out = count(usage.get("completion_tokens"))
        total = count(usage.get("total_tokens")) if "total_tokens" in usage else 0
        return CaptionResult(
            text, tokens_in, tokens_out, total or tokens_in + tokens_out, provider=self.name
        )

    def _address_hint(self, status: int) -> str:
        """Return what to check when nothing answers at the address posted to, or the server
        does not know the model (Ollama answers 404 for a model it has not pulled)."""
        url = scrub_url(self._url, keep_path=True) or "the configured address"
        return (
            f"the server answered {status} {http.HTTPStatus(status).phrase} for POST {url}:"
            f" check {self._field}.base_url (the API root, e.g. http://127.0.0.1:11434/v1) and"
            f" {self._field}.model ({self.model!r}: pulled or served there?)"
        )


def _content_text(content: Any) -> str | None:
    """Given `message.content`, return its text: the string itself, or the text parts of a
    list joined; None if there is no text at all."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    texts = []
    for part in content[:_MAX_PARTS]:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type", "text") in ("text", "output_text"):
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
    return "".join(texts) if texts else None


def _error_message(body: Any) -> Any:
    """Given an error answer, return what it says: `error.message` (OpenAI, llama.cpp, vLLM),
    `error` as text (Ollama), else `message` or `detail`."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        return error.get("message")
    if isinstance(error, str):
        return error
    return body.get("message", body.get("detail"))


def _out_of_quota(body: Any) -> bool:
    """Return whether a 429's body says the account is out of quota, not just busy."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return False
    said = [error.get("code"), error.get("type")]
    return any(isinstance(v, str) and v in _QUOTA_WORDS for v in said)
